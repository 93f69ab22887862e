// Package reward computes SeRL's rewards from answers: the majority-vote
// self-reward (docs/SERL.md §3.1), the ground-truth rule reward (§3.4), the
// difficulty share and filter (§4) and maj@k (§6, D21).
package reward

import "github.com/serl-go/serl/engine/mathans"

// Default difficulty bounds (--reward_difficulty_bounds 0.2 0.8).
const (
	DefaultLo = 0.2
	DefaultHi = 0.8
)

// Majority is the majority-vote reward of one group: E[i][i] = true,
// E[i][j] = Same(a_i, a_j) (symmetric, so computed once per pair),
// count[i] = Σ_j E[i][j], the representative is the argmax of count with
// ties to the lowest index, and r_j = 1 iff E[rep][j]. An empty group gives
// no rewards and rep = -1.
//
// The pairs are compared sequentially: Same works on precomputed values, so
// the 120 pairs of a 16-answer group take about 16 µs in all (~130 ns a pair,
// BenchmarkMajority16Compare), the same order as starting and joining the
// goroutines that would share them; extraction (~17 µs a response) dominates
// a vote, and callers can run groups in parallel instead.
func Majority(answers []mathans.Answer) (rewards []float64, rep int) {
	n := len(answers)
	if n == 0 {
		return nil, -1
	}
	eq := make([]bool, n*n)
	count := make([]int, n)
	for i := 0; i < n; i++ {
		eq[i*n+i] = true
		count[i]++
		for j := i + 1; j < n; j++ {
			if mathans.Same(answers[i], answers[j]) {
				eq[i*n+j], eq[j*n+i] = true, true
				count[i]++
				count[j]++
			}
		}
	}
	rep = 0
	for i := 1; i < n; i++ {
		if count[i] > count[rep] {
			rep = i
		}
	}
	rewards = make([]float64, n)
	for j := 0; j < n; j++ {
		if eq[rep*n+j] {
			rewards[j] = 1
		}
	}
	return rewards, rep
}

// ExtractAll extracts the answer of every response once.
func ExtractAll(responses []string) []mathans.Answer {
	out := make([]mathans.Answer, len(responses))
	for i, r := range responses {
		out[i] = mathans.Extract(r)
	}
	return out
}

// MajorityResponses is Majority over response texts, extracting each
// response's answer once (from the response only, docs/SERL.md D7).
func MajorityResponses(responses []string) (rewards []float64, rep int) {
	return Majority(ExtractAll(responses))
}

// GroundTruth is the rule-based reward: 1 if the response's answer equals
// the gold label's value, else 0 (docs/SERL.md §3.4; bare labels are parsed as LaTeX,
// D10; the answer comes from the response only, D7).
func GroundTruth(label, response string) float64 {
	if mathans.Equivalent(label, response) {
		return 1
	}
	return 0
}

// Share is the difficulty share of a group: the mean reward, which for the
// majority reward is the fraction agreeing with the representative (docs/SERL.md §4).
func Share(rewards []float64) float64 {
	if len(rewards) == 0 {
		return 0
	}
	s := 0.0
	for _, r := range rewards {
		s += r
	}
	return s / float64(len(rewards))
}

// KeepDifficulty reports whether a group with this share survives the
// difficulty filter: lo ≤ share ≤ hi, both inclusive.
func KeepDifficulty(share, lo, hi float64) bool { return lo <= share && share <= hi }

// MajAtK returns the index of the maj@k answer among the first k answers:
// the same representative rule as the training reward (docs/SERL.md D21). It
// returns -1 when there are no answers; k beyond len(answers) is clamped.
func MajAtK(answers []mathans.Answer, k int) (rep int) {
	if k > len(answers) {
		k = len(answers)
	}
	if k <= 0 {
		return -1
	}
	_, rep = Majority(answers[:k])
	return rep
}

// MajAtKCorrect scores maj@k against a gold label: the representative of the
// first k answers must equal the gold. No answers or an invalid
// representative count as wrong (docs/SERL.md D20).
func MajAtKCorrect(gold mathans.Answer, answers []mathans.Answer, k int) bool {
	rep := MajAtK(answers, k)
	return rep >= 0 && mathans.Same(gold, answers[rep])
}

// MajAtKAccuracy is the mean maj@k correctness over problems; golds[i] is
// ParseGold of problem i's label and samples[i] its extracted answers.
func MajAtKAccuracy(golds []mathans.Answer, samples [][]mathans.Answer, k int) float64 {
	if len(golds) == 0 {
		return 0
	}
	ok := 0
	for i, g := range golds {
		if i < len(samples) && MajAtKCorrect(g, samples[i], k) {
			ok++
		}
	}
	return float64(ok) / float64(len(golds))
}
