package rl

import (
	"fmt"
	"math"
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
func Advantages(c Config, samples []*Sample) (AdvStats, error) {
	var st AdvStats
	if err := c.Validate(); err != nil {
		return st, err
	}
	if len(samples) == 0 {
		return st, fmt.Errorf("rl: advantages of an empty batch")
	}
	groups := map[int][]int{}
	var order []int // group ids in first-seen order, so the computation does not depend on map order
	for i, s := range samples {
		if err := s.checkLogProbs(false); err != nil {
			return st, fmt.Errorf("rl: sample %d: %w", i, err)
		}
		if math.IsNaN(s.Reward) || math.IsInf(s.Reward, 0) {
			return st, fmt.Errorf("rl: sample %d: reward %v", i, s.Reward)
		}
		if _, ok := groups[s.Group]; !ok {
			order = append(order, s.Group)
		}
		groups[s.Group] = append(groups[s.Group], i)
		st.RewardMean += s.Reward
	}
	st.RewardMean /= float64(len(samples))

	shaped := make([]float64, len(samples))
	for _, gid := range order {
		idx := groups[gid]
		G := float64(len(idx))
		if c.Algorithm != ReinforcePP && len(idx) < 2 {
			return st, fmt.Errorf("rl: group %d has %d sample(s); %s needs at least 2 per group", gid, len(idx), c.Algorithm)
		}
		sum := 0.0
		for _, i := range idx {
			sum += samples[i].Reward
		}
		mean := sum / G
		std := 0.0
		if c.Algorithm == GRPO {
			for _, i := range idx {
				d := samples[i].Reward - mean
				std += d * d
			}
			std = math.Sqrt(std / (G - 1)) // Bessel, as torch.std
		}
		for _, i := range idx {
			r := samples[i].Reward
			switch c.Algorithm {
			case RLOO:
				r -= (sum - r) / (G - 1)
			case GRPO:
				r = (r - mean) / (std + 1e-9)
			}
			shaped[i] = math.Max(-c.RewardClip, math.Min(c.RewardClip, r))
		}
	}

	// Returns, in float64 until the final store.
	beta := c.KLCoef
	if c.Algorithm == GRPO {
		beta = 0
	}
	tokens := 0
	for _, s := range samples {
		tokens += s.Actions()
	}
	ret := make([]float64, 0, tokens)
	klSum := 0.0
	for i, s := range samples {
		T := s.Actions()
		base := len(ret)
		ret = ret[:base+T]
		acc := 0.0
		for t := T - 1; t >= 0; t-- {
			k := K1(float64(s.LogPOld[t]) - float64(s.LogPRef[t]))
			klSum += k
			acc += -beta * k
			if t == T-1 {
				acc += shaped[i]
			}
			ret[base+t] = acc
		}
	}
	st.KLMean = klSum / float64(tokens)

	mu, sigma := meanStd(ret)
	if c.Algorithm != GRPO {
		inv := 1 / math.Sqrt(math.Max(sigma*sigma, 1e-8))
		for j, v := range ret {
			ret[j] = (v - mu) * inv
		}
		mu, sigma = meanStd(ret)
	}
	st.AdvMean, st.AdvStd = mu, sigma

	off := 0
	for _, s := range samples {
		T := s.Actions()
		if cap(s.Adv) < T {
			s.Adv = make([]float32, T)
		}
		s.Adv = s.Adv[:T]
		for t := range s.Adv {
			s.Adv[t] = float32(ret[off+t])
		}
		off += T
	}
	return st, nil
}

// meanStd is the mean and biased standard deviation of v (len ≥ 1).
func meanStd(v []float64) (mean, std float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}
