package rl

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// synthetic holds the per-action log-probs and (after advantages) the advantages of the samples built
// by sample, as a test sees them on the host.
type synthetic struct{ old, ref, adv []float32 }

var synth = map[*Sample]*synthetic{}

// sample builds a one-token-prompt sample whose per-action k1 = logp_old − logp_ref is k1.
func sample(group int, reward float64, k1 ...float64) *Sample {
	s := &Sample{Group: group, Reward: reward, PromptLen: 1, IDs: make([]int32, 1+len(k1))}
	h := &synthetic{}
	for t, k := range k1 {
		ref := -1 - 0.25*float64(t)
		h.ref = append(h.ref, float32(ref))
		h.old = append(h.old, float32(ref+k))
	}
	synth[s] = h
	return s
}

// requireAdv checks advantages against hand-computed float64 values. The device whitens float32
// returns (accumulating in double) with statistics rounded to float32 once: the worst error measured
// over these tests is 9.5e-8.
func requireAdv(t *testing.T, want [][]float64, samples []*Sample) {
	t.Helper()
	require.Len(t, samples, len(want))
	for i, s := range samples {
		adv := synth[s].adv
		require.Len(t, adv, len(want[i]), "sample %d", i)
		for j, w := range want[i] {
			require.InDelta(t, w, float64(adv[j]), 3e-7, "sample %d action %d: %v", i, j, adv)
		}
	}
}

// reinforceBatch is two groups of two samples, lengths 2, 1, 3, 2.
func reinforceBatch() []*Sample {
	return []*Sample{
		sample(0, 1, 0.2, -0.1),
		sample(0, 0, 0.5),
		sample(1, 1, 0, 0.1, 0.3),
		sample(1, 0, -0.2, 0),
	}
}

func TestAdvantagesReinforcePP(t *testing.T) {
	c := DefaultConfig(ReinforcePP)
	c.KLCoef = 0.1
	samples := reinforceBatch()
	st, err := advantages(t, c, samples)
	require.NoError(t, err)
	// s_t = −0.1·k1_t + r·[last]; G_t = Σ_{u≥t} s_u:
	//   A: s = [−0.02, 0.01+1]     G = [0.99, 1.01]
	//   B: s = [−0.05]             G = [−0.05]
	//   C: s = [0, −0.01, −0.03+1] G = [0.96, 0.96, 0.97]
	//   D: s = [0.02, 0]           G = [0.02, 0]
	// 8 tokens, Σ G = 4.86, μ = 0.6075; deviations 0.3825 0.4025 −0.6575 0.3525 0.3525 0.3625 −0.5875
	// −0.6075; Σ dev² = 1.83475, σ² = 0.22934375.
	mu, sigma := 4.86/8, math.Sqrt(1.83475/8)
	w := func(g ...float64) []float64 {
		for i := range g {
			g[i] = (g[i] - mu) / sigma
		}
		return g
	}
	requireAdv(t, [][]float64{w(0.99, 1.01), w(-0.05), w(0.96, 0.96, 0.97), w(0.02, 0)}, samples)
	// mean k1 = (0.2 − 0.1 + 0.5 + 0 + 0.1 + 0.3 − 0.2 + 0)/8 = 0.1
	require.InDelta(t, 0.1, st.KLMean, 1e-6)
	// measured on float32 advantages: |AdvMean| 7.5e-9, |AdvStd − 1| 7.7e-9
	require.InDelta(t, 0, st.AdvMean, 3e-8)
	require.InDelta(t, 1, st.AdvStd, 3e-8)

	// docs/SERL.md D4: whitening covers exactly the samples given. Group 0 alone: G = 0.99, 1.01, −0.05,
	// μ = 1.95/3 = 0.65, deviations 0.34 0.36 −0.70, σ² = (0.1156 + 0.1296 + 0.49)/3 = 0.7352/3.
	alone := reinforceBatch()[:2]
	_, err = advantages(t, c, alone)
	require.NoError(t, err)
	s := math.Sqrt(0.7352 / 3)
	requireAdv(t, [][]float64{{0.34 / s, 0.36 / s}, {-0.70 / s}}, alone)
	require.NotEqual(t, synth[samples[0]].adv, synth[alone[0]].adv)
}

func TestAdvantagesRLOO(t *testing.T) {
	c := DefaultConfig(RLOO)
	c.KLCoef = 0 // isolate the leave-one-out reshaping
	// group 0, rewards [1,0,0,0]: r' = r − (Σ − r)/3 = [1, −1/3, −1/3, −1/3]; one action each, so G = r'.
	// Whitening: μ = 0, σ² = (1 + 3/9)/4 = 1/3 ⇒ A = r'·√3 = [√3, −1/√3, −1/√3, −1/√3].
	samples := []*Sample{sample(0, 1, 0.3), sample(0, 0, 0.1), sample(0, 0, -0.2), sample(0, 0, 0)}
	_, err := advantages(t, c, samples)
	require.NoError(t, err)
	r3 := math.Sqrt(3)
	requireAdv(t, [][]float64{{r3}, {-1 / r3}, {-1 / r3}, {-1 / r3}}, samples)

	// Groups of different sizes: group 1 rewards [1,1,0] ⇒ r' = [1 − 1/2, 1 − 1/2, 0 − 1] = [.5, .5, −1].
	// Together: tokens [1, −⅓, −⅓, −⅓, .5, .5, −1], Σ = 0 ⇒ μ = 0; Σ r'² = 1 + ⅓ + .25 + .25 + 1 = 17/6,
	// σ² = 17/42.
	samples = append(samples, sample(1, 1, 0.5), sample(1, 1, 0), sample(1, 0, 0))
	_, err = advantages(t, c, samples)
	require.NoError(t, err)
	s := math.Sqrt(17.0 / 42)
	requireAdv(t, [][]float64{{1 / s}, {-1 / 3.0 / s}, {-1 / 3.0 / s}, {-1 / 3.0 / s}, {.5 / s}, {.5 / s}, {-1 / s}}, samples)
}

func TestAdvantagesRLOOKeepsKL(t *testing.T) {
	c := DefaultConfig(RLOO)
	c.KLCoef = 0.1
	// r = [1, 0] ⇒ r' = [1, −1]. A: k1 = [0.5, 0] ⇒ s = [−0.05, 1], G = [0.95, 1]; B: k1 = [−0.5] ⇒
	// s = [0.05 − 1], G = [−0.95]. μ = 1/3; whitened by the biased σ of these three values.
	samples := []*Sample{sample(0, 1, 0.5, 0), sample(0, 0, -0.5)}
	_, err := advantages(t, c, samples)
	require.NoError(t, err)
	mu := 1.0 / 3
	s := math.Sqrt((math.Pow(0.95-mu, 2) + math.Pow(1-mu, 2) + math.Pow(-0.95-mu, 2)) / 3)
	requireAdv(t, [][]float64{{(0.95 - mu) / s, (1 - mu) / s}, {(-0.95 - mu) / s}}, samples)
}

func TestAdvantagesGRPO(t *testing.T) {
	c := DefaultConfig(GRPO)
	c.KLCoef = 0.5 // large, to show it stays out of the advantages
	// Group 0 rewards [1,0,0,1]: mean .5, Bessel std = sqrt(4·.25/3) = 1/√3, z = ±.5·√3 = ±0.8660254.
	// Group 1 rewards [1,1]: std 0 ⇒ z = 0/(0 + 1e-9) = 0. Every action gets its sample's z; no whitening.
	samples := []*Sample{
		sample(0, 1, 0.3, -0.2, 0.1), sample(0, 0, 0.4), sample(0, 0, -0.1, 0.2), sample(0, 1, 0.7),
		sample(1, 1, 0.2, 0.2), sample(1, 1, -0.3),
	}
	st, err := advantages(t, c, samples)
	require.NoError(t, err)
	z := 0.8660254038
	requireAdv(t, [][]float64{{z, z, z}, {-z}, {-z, -z}, {z}, {0, 0}, {0}}, samples)
	// mean k1 over the 10 tokens: (0.3 − 0.2 + 0.1 + 0.4 − 0.1 + 0.2 + 0.7 + 0.2 + 0.2 − 0.3)/10 = 0.15
	require.InDelta(t, 0.15, st.KLMean, 1e-6)
	// token-weighted: 4 tokens at z, 3 at −z, 3 at 0 ⇒ mean z/10
	require.InDelta(t, z/10, st.AdvMean, 1e-6)

	// The reward clip bounds the reshaped reward: ±0.866 → ±0.5.
	c.RewardClip = 0.5
	_, err = advantages(t, c, samples[:4])
	require.NoError(t, err)
	requireAdv(t, [][]float64{{.5, .5, .5}, {-.5}, {-.5, -.5}, {.5}}, samples[:4])
}

func TestAdvantagesErrors(t *testing.T) {
	// A group of one is fine for reinforce++ (no group baseline) but not for rloo or grpo.
	lonely := func() []*Sample { return []*Sample{sample(0, 1, 0.1), sample(0, 0, 0.1), sample(7, 1, 0.2)} }
	_, err := advantages(t, DefaultConfig(ReinforcePP), lonely())
	require.NoError(t, err)
	for _, a := range []Algorithm{RLOO, GRPO} {
		_, err := advantages(t, DefaultConfig(a), lonely())
		require.ErrorContains(t, err, "group 7 has 1 sample(s)", a)
	}

	c := DefaultConfig(ReinforcePP)
	_, err = advantages(t, c, nil)
	require.ErrorContains(t, err, "empty batch")
	_, err = advantages(t, Config{Algorithm: "ppo"}, lonely())
	require.ErrorContains(t, err, "unknown algorithm")

	bad := func(edit func(s *Sample)) error {
		ss := lonely()
		edit(ss[1])
		_, err := advantages(t, c, ss)
		return err
	}
	require.ErrorContains(t, bad(func(s *Sample) { s.PromptLen = 2 }), "sample 1: 2 tokens with a prompt of 2: no action")
	require.ErrorContains(t, bad(func(s *Sample) { s.PromptLen = 0 }), "sample 1: prompt of 0 tokens")
	require.ErrorContains(t, bad(func(s *Sample) { s.Reward = math.NaN() }), "sample 1: reward NaN")
}

// advantages reshapes the rewards of samples, loads their synthetic log-probs as a step and runs
// Advantages on a workspace of its own; the advantages come back into synth.
func advantages(t *testing.T, c Config, samples []*Sample) (AdvStats, error) {
	w := wsOf(t, arena(t, fixtureModel(t), 8, 1))
	if err := w.Reshape(c, samples); err != nil {
		return AdvStats{}, err
	}
	if err := w.setStep(samples); err != nil {
		return AdvStats{}, err
	}
	old, ref := make([][]float32, len(samples)), make([][]float32, len(samples))
	for i, s := range samples {
		old[i], ref[i] = synth[s].old, synth[s].ref
	}
	load(t, w, samples, old, ref, nil)
	st, err := w.Advantages(c, nil)
	if err != nil {
		return st, err
	}
	for i, a := range stepAdv(t, w) {
		synth[samples[i]].adv = a
	}
	return st, nil
}
