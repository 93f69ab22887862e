package rl

import (
	"fmt"
	"math"

	"github.com/serl-go/serl/kernels"
)

// AdvStats summarises one Advantages call for logging, over the whole step (every rank's samples).
type AdvStats struct {
	AdvMean float64 // token-weighted mean of the final advantages
	AdvStd  float64 // token-weighted (biased) standard deviation of the final advantages
	KLMean  float64 // mean k1(logp_old − logp_ref) over action tokens
}

// Moments are the statistics of a step's returns that ranks combine: the token count, the mean and
// biased variance of the returns, and Σ k1(logp_old − logp_ref) over the tokens.
type Moments struct {
	N, Mean, Var, KL float64
}

// CombineMoments merges the moments of disjoint parts, in order, by Chan et al.'s pairwise formula
// (parts with N = 0 contribute nothing).
func CombineMoments(parts []Moments) Moments {
	var m Moments
	for _, p := range parts {
		m.KL += p.KL
		if p.N == 0 {
			continue
		}
		n := m.N + p.N
		d := p.Mean - m.Mean
		m.Var = (m.Var*m.N + p.Var*p.N + d*d*m.N*p.N/n) / n
		m.Mean += d * p.N / n
		m.N = n
	}
	return m
}

// Reducer turns one rank's Moments into the whole step's (a data-parallel run gathers every rank's
// and combines them with CombineMoments); nil means the step is this process's alone.
type Reducer func(local Moments) (Moments, error)

// Reshape sets the reshaped, clipped reward of every sample of ONE training batch (docs/SERL.md §5.2),
// grouped by Sample.Group (sizes may differ): reinforce++ r' = r; rloo r' = r − (Σ_g r − r)/(G−1);
// grpo r' = (r − mean)/(std_bessel + 1e-9); rloo and grpo need G ≥ 2; then r' is clipped to ±RewardClip.
// The group baselines run on the device (group_baseline): the rewards go up in group order and come
// back reshaped. Every rank of a data-parallel step reshapes all the step's samples (rewards are host
// scalars every rank has) and scores and trains its own.
func (w *Workspace) Reshape(c Config, samples []*Sample) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if len(samples) == 0 {
		return fmt.Errorf("rl: advantages of an empty batch")
	}
	w.reshapes++
	clear(w.groupAt)
	w.members = w.members[:0]
	for i, s := range samples {
		if s == nil {
			return fmt.Errorf("rl: sample %d: nil sample", i)
		}
		if math.IsNaN(s.Reward) || math.IsInf(s.Reward, 0) {
			return fmt.Errorf("rl: sample %d: reward %v", i, s.Reward)
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
	}
	clip := func(r float64) float64 { return math.Max(-c.RewardClip, math.Min(c.RewardClip, r)) }
	if c.Algorithm == ReinforcePP {
		for _, s := range samples {
			s.shaped, s.reshaped = clip(s.Reward), w.reshapes
		}
		return nil
	}
	mode := kernels.GroupRLOO
	if c.Algorithm == GRPO {
		mode = kernels.GroupZScore
	}
	w.hSeq = w.hSeq[:0]
	for _, idx := range w.members {
		if len(idx) < 2 {
			return fmt.Errorf("rl: group %d has %d sample(s); %s needs at least 2 per group", samples[idx[0]].Group, len(idx), c.Algorithm)
		}
		for _, i := range idx {
			w.hSeq = append(w.hSeq, float32(samples[i].Reward))
		}
	}
	n := len(w.hSeq)
	if _, err := w.grow(&w.dR, kernels.F32, n); err != nil {
		return err
	}
	r := w.dR.MustSlice(0, n)
	if err := kernels.Upload(r, w.hSeq); err != nil {
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
	if err := kernels.Download(w.hSeq, r); err != nil {
		return err
	}
	at := 0
	for _, idx := range w.members {
		for _, i := range idx {
			samples[i].shaped, samples[i].reshaped = clip(float64(w.hSeq[at])), w.reshapes
			at++
		}
	}
	return nil
}

// Advantages computes the advantages of the step Score scored into the workspace's device buffer
// (docs/SERL.md §5.2), from the rewards the latest Reshape set:
//
//   - shaped reward s_t = −β·k1(logp_old − logp_ref)_t + r'·[t = last action] (no β-term for grpo, whose
//     KL is a loss term), return G_t = Σ_{u≥t} s_u (γ = 1) — kernels.KLReturns;
//   - reinforce++ and rloo: A = (G − μ)/sqrt(max(σ², 1e-8)) with μ, σ² the token-weighted mean and
//     biased variance over all the step's action tokens (every rank's: reduce combines them); grpo: A = G.
//
// Whitening runs over exactly the step's samples (D4: after the difficulty filter, unlike the official
// code), so removing a group changes every other group's advantages. The reshaped rewards and the
// action offsets go up; the return statistics and per-sequence KL sums come back in one download; with
// whitening, the combined statistics go back up.
func (w *Workspace) Advantages(c Config, reduce Reducer) (AdvStats, error) {
	var st AdvStats
	if err := c.Validate(); err != nil {
		return st, err
	}
	n, A := len(w.step), w.Actions()
	var local Moments
	if n > 0 {
		var err error
		if local, err = w.returns(c); err != nil {
			return st, err
		}
	}
	global := local
	if reduce != nil {
		var err error
		if global, err = reduce(local); err != nil {
			return st, err
		}
	}
	if !(global.N > 0) {
		return st, fmt.Errorf("rl: advantages of an empty step")
	}
	st.KLMean = global.KL / global.N
	if c.Algorithm == GRPO {
		st.AdvMean, st.AdvStd = global.Mean, math.Sqrt(global.Var)
		return st, nil
	}
	// (G − μ)/sqrt(max(σ², eps)) has mean 0 and standard deviation sqrt(σ²/max(σ², eps)).
	st.AdvStd = math.Sqrt(global.Var / math.Max(global.Var, whitenEps))
	if n == 0 {
		return st, nil
	}
	stats := w.dSeq.MustSlice(n, n+2)
	w.hSeq = append(w.hSeq[:0], float32(global.Mean), float32(global.Var))
	if err := kernels.Upload(stats, w.hSeq); err != nil {
		return st, err
	}
	adv := w.dAdv.MustSlice(0, A)
	return st, w.dev.WhitenApply(adv, stats, adv, w.dOnes.MustSlice(0, A), true, whitenEps)
}

const whitenEps = 1e-8

// returns writes the step's returns into dAdv and reports their local moments.
func (w *Workspace) returns(c Config) (Moments, error) {
	n, A := len(w.step), w.Actions()
	beta := c.KLCoef
	if c.Algorithm == GRPO {
		beta = 0
	}
	w.hSeq = w.hSeq[:0]
	for i, s := range w.step {
		if s.reshaped != w.reshapes || w.reshapes == 0 {
			return Moments{}, fmt.Errorf("rl: sample %d of the step was not in the latest Reshape", i)
		}
		w.hSeq = append(w.hSeq, float32(s.shaped))
	}
	if _, err := w.grow(&w.dSeq, kernels.F32, 5*n+3); err != nil {
		return Moments{}, err
	}
	if _, err := w.grow(&w.dCu, kernels.I32, n+1); err != nil {
		return Moments{}, err
	}
	fresh, err := w.grow(&w.dOnes, kernels.F32, A)
	if err != nil {
		return Moments{}, err
	}
	if fresh { // the whitening mask: uploaded once per growth
		ones := make([]float32, w.dOnes.Len())
		for i := range ones {
			ones[i] = 1
		}
		if err := kernels.Upload(w.dOnes, ones); err != nil {
			return Moments{}, err
		}
	}
	reward, tail := w.dSeq.MustSlice(0, n), w.dSeq.MustSlice(n, 2*n+3) // tail: stats [3] | KL sums [n]
	cu := w.dCu.MustSlice(0, n+1)
	if err := kernels.Upload(reward, w.hSeq); err != nil {
		return Moments{}, err
	}
	if err := kernels.Upload(cu, w.actCu); err != nil {
		return Moments{}, err
	}
	ret, ones := w.dAdv.MustSlice(0, A), w.dOnes.MustSlice(0, A)
	if err := w.dev.KLReturns(ret, tail.MustSlice(3, 3+n), w.dOld.MustSlice(0, A), w.dRef.MustSlice(0, A), reward, cu, n, float32(beta)); err != nil {
		return Moments{}, err
	}
	if err := w.dev.WhitenStats(tail.MustSlice(0, 3), ret, ones); err != nil {
		return Moments{}, err
	}
	w.hSeq = grown(w.hSeq, n+3)
	if err := kernels.Download(w.hSeq, tail); err != nil {
		return Moments{}, err
	}
	m := Moments{N: float64(A), Mean: float64(w.hSeq[0]), Var: float64(w.hSeq[1])}
	for _, k := range w.hSeq[3:] {
		m.KL += float64(k)
	}
	return m, nil
}

// grown is s resized to n, reallocated only when its capacity is short.
func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, 2*n)
	}
	return s[:n]
}
