package rl

import (
	"fmt"
	"math"

	"github.com/serl-go/serl/kernels"
)

// AdvStats summarises one Advantages call for logging.
type AdvStats struct {
	RewardMean float64 // mean raw reward over the samples
	AdvMean    float64 // token-weighted mean of the final advantages
	AdvStd     float64 // token-weighted (biased) standard deviation of the final advantages
	KLMean     float64 // mean k1(logp_old − logp_ref) over action tokens
}

// Advantages fills every sample's Adv for the samples of ONE training batch (docs/SERL.md §5.2).
// Whitening runs over exactly these samples (D4: after the difficulty filter, unlike the official code),
// so removing a group changes every other group's advantages.
//
//   - reshape per group (groups by Sample.Group, sizes may differ): reinforce++ r' = r; rloo
//     r' = r − (Σ_g r − r)/(G−1); grpo r' = (r − mean)/(std_bessel + 1e-9); rloo and grpo need G ≥ 2;
//   - clip r' to ±RewardClip;
//   - shaped reward s_t = −β·k1(logp_old − logp_ref)_t + r'·[t = last action] (no β-term for grpo, whose KL
//     is a loss term);
//   - return G_t = Σ_{u≥t} s_u (γ = 1);
//   - reinforce++ and rloo: A = (G − μ)/sqrt(max(σ², 1e-8)) with μ, σ² the token-weighted mean and biased
//     variance over all action tokens; grpo: A = G.
//
// The group reshaping (group_baseline) and the whitening (whiten) run on the device: rewards go up in
// group order and come back reshaped; the returns go up and come back whitened with their statistics,
// one upload and one download each. The returns themselves are summed on the host in float64 from the
// log-probs ScoreActions brought back.
func (w *Workspace) Advantages(c Config, samples []*Sample) (AdvStats, error) {
	var st AdvStats
	if err := c.Validate(); err != nil {
		return st, err
	}
	if len(samples) == 0 {
		return st, fmt.Errorf("rl: advantages of an empty batch")
	}
	clear(w.groupAt)
	w.members = w.members[:0]
	tokens := 0
	for i, s := range samples {
		if err := s.checkLogProbs(false); err != nil {
			return st, fmt.Errorf("rl: sample %d: %w", i, err)
		}
		if math.IsNaN(s.Reward) || math.IsInf(s.Reward, 0) {
			return st, fmt.Errorf("rl: sample %d: reward %v", i, s.Reward)
		}
		k, ok := w.groupAt[s.Group]
		if !ok {
			k = len(w.members)
			w.groupAt[s.Group] = k
			if k < cap(w.members) {
				w.members = w.members[:k+1]
				w.members[k] = w.members[k][:0]
			} else {
				w.members = append(w.members, nil)
			}
		}
		w.members[k] = append(w.members[k], i)
		st.RewardMean += s.Reward
		tokens += s.Actions()
	}
	st.RewardMean /= float64(len(samples))
	if err := w.reshapeRewards(c, samples); err != nil {
		return st, err
	}

	// Returns G_t = Σ_{u≥t} s_u with s_u = −β·k1_u + r'·[u = last], in float64 until the store; they
	// sit after the two statistics slots of hX.
	beta := c.KLCoef
	if c.Algorithm == GRPO {
		beta = 0
	}
	w.hX = grown(w.hX, 2+tokens)
	ret := w.hX[2:]
	klSum, off := 0.0, 0
	for i, s := range samples {
		T := s.Actions()
		acc := 0.0
		for t := T - 1; t >= 0; t-- {
			k := K1(float64(s.LogPOld[t]) - float64(s.LogPRef[t]))
			klSum += k
			acc += -beta * k
			if t == T-1 {
				acc += w.shaped[i]
			}
			ret[off+t] = float32(acc)
		}
		off += T
	}
	st.KLMean = klSum / float64(tokens)
	if c.Algorithm != GRPO {
		if err := w.whiten(tokens); err != nil {
			return st, err
		}
	}
	st.AdvMean, st.AdvStd = meanStd(ret)

	off = 0
	for _, s := range samples {
		T := s.Actions()
		if cap(s.Adv) < T {
			s.Adv = make([]float32, T)
		}
		s.Adv = append(s.Adv[:0], ret[off:off+T]...)
		off += T
	}
	return st, nil
}

// reshapeRewards sets w.shaped[i] to sample i's reshaped reward clipped to ±RewardClip: the raw reward
// for reinforce++, the group baseline of rloo and grpo computed on the device over the groups of
// w.members (one group_baseline call per run of groups of equal size).
func (w *Workspace) reshapeRewards(c Config, samples []*Sample) error {
	w.shaped = grown(w.shaped, len(samples))
	clip := func(r float64) float64 { return math.Max(-c.RewardClip, math.Min(c.RewardClip, r)) }
	if c.Algorithm == ReinforcePP {
		for i, s := range samples {
			w.shaped[i] = clip(s.Reward)
		}
		return nil
	}
	mode := kernels.GroupRLOO
	if c.Algorithm == GRPO {
		mode = kernels.GroupZScore
	}
	w.hR = w.hR[:0]
	for _, idx := range w.members {
		if len(idx) < 2 {
			return fmt.Errorf("rl: group %d has %d sample(s); %s needs at least 2 per group", samples[idx[0]].Group, len(idx), c.Algorithm)
		}
		for _, i := range idx {
			w.hR = append(w.hR, float32(samples[i].Reward))
		}
	}
	n := len(w.hR)
	if _, err := w.grow(&w.dR, n); err != nil {
		return err
	}
	r := w.dR.MustSlice(0, n)
	if err := kernels.Upload(r, w.hR); err != nil {
		return err
	}
	for lo, g := 0, 0; g < len(w.members); {
		size, k := len(w.members[g]), g
		for k < len(w.members) && len(w.members[k]) == size {
			k++
		}
		run := r.MustSlice(lo, lo+(k-g)*size)
		// eps 1e-9: a group of identical rewards gets 0/(0 + 1e-9) = 0, as OpenRLHF's (std + 1e-9).
		if err := w.dev.GroupBaseline(run, run, mode, size, 1e-9); err != nil {
			return err
		}
		lo += (k - g) * size
		g = k
	}
	if err := kernels.Download(w.hR, r); err != nil {
		return err
	}
	at := 0
	for _, idx := range w.members {
		for _, i := range idx {
			w.shaped[i] = clip(float64(w.hR[at]))
			at++
		}
	}
	return nil
}

// whiten replaces the returns in w.hX[2:2+n] by (G − μ)/sqrt(max(σ², 1e-8)), μ and σ² their mean and
// biased variance, on the device; the statistics come back in w.hX[0:2].
func (w *Workspace) whiten(n int) error {
	if _, err := w.grow(&w.dX, 2+n); err != nil {
		return err
	}
	fresh, err := w.grow(&w.dOnes, n)
	if err != nil {
		return err
	}
	if fresh {
		ones := make([]float32, w.dOnes.Len())
		for i := range ones {
			ones[i] = 1
		}
		if err := kernels.Upload(w.dOnes, ones); err != nil {
			return err
		}
	}
	x := w.dX.MustSlice(0, 2+n)
	ret, stats := x.MustSlice(2, 2+n), x.MustSlice(0, 2)
	if err := kernels.Upload(ret, w.hX[2:2+n]); err != nil {
		return err
	}
	if err := w.dev.Whiten(ret, stats, ret, w.dOnes.MustSlice(0, n), true, 1e-8); err != nil {
		return err
	}
	return kernels.Download(w.hX[:2+n], x)
}

// grown is s resized to n, reallocated only when its capacity is short.
func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, 2*n)
	}
	return s[:n]
}

// meanStd is the mean and biased standard deviation of v (len ≥ 1), in float64.
func meanStd(v []float32) (mean, std float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}
