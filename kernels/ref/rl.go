package ref

import "math"

// The RL step's per-token formulas (serl.h, "RL step"; docs/SERL.md §5.2–5.4): the one statement of
// them in Go, against which the native ops are checked and which the engine's tests use as the formula.

// GatherActions: dst[actCu[i]+j] = src[pos[i]+j] for j < actCu[i+1] − actCu[i].
func GatherActions(dst, src []float32, pos, actCu []int32) {
	for i := range pos {
		lo, hi := actCu[i], actCu[i+1]
		copy(dst[lo:hi], src[pos[i]:int(pos[i])+int(hi-lo)])
	}
}

// KLReturns: per sequence i of actions [actCu[i], actCu[i+1]), ret_t = Σ_{u≥t} s_u with
// s_u = −beta·(logpOld − logpRef)_u + reward[i]·[u last], summed in float64 from the last action back;
// kl[i] = Σ_u (logpOld − logpRef)_u.
func KLReturns(ret, kl, logpOld, logpRef, reward []float32, actCu []int32, beta float64) {
	for i := range len(actCu) - 1 {
		lo, T := int(actCu[i]), int(actCu[i+1]-actCu[i])
		acc, k1 := 0.0, 0.0
		for t := T - 1; t >= 0; t-- {
			k := float64(logpOld[lo+t]) - float64(logpRef[lo+t])
			k1 += k
			acc += -beta * k
			if t == T-1 {
				acc += float64(reward[i])
			}
			ret[lo+t] = float32(acc)
		}
		kl[i] = float32(k1)
	}
}

// PPOSequence fills coef with ∂L/∂logp_t of one sequence's share of an optimizer step's loss
// (docs/SERL.md §5.4, D15): L = (1/stepSeqs)·(1/T)·Σ_t [ℓ_t + β·k3(logp_t − logp_ref,t) for grpo], with the
// PPO-clip term ℓ_t = −min(ρ_t·A_t, clip(ρ_t, 1−ε, 1+ε)·A_t), ρ_t = exp(logp_t − logp_old,t), T = len(logp).
// It returns the sequence's loss (already divided by T·stepSeqs), the number of tokens whose gradient the
// clip removed, and Σ_t KL: k3(logp − logp_ref) for grpo (the loss term), k1 otherwise.
//
// Gradient and ties, as PyTorch's autograd through OpenRLHF's -torch.min(surr1, surr2): torch.minimum
// gives half the gradient to each argument when they are equal, and clamp passes the gradient on the
// closed range [1−ε, 1+ε]. Inside that range (boundaries included) surr1 = surr2 and both halves carry
// ρA, so ∂ℓ/∂logp = −ρA. Outside it the unclipped term is the minimum (gradient −ρA) when ρ > 1+ε with A < 0
// or ρ < 1−ε with A > 0; otherwise the constant clipped term is (gradient 0, counted as clipped). A = 0
// gives gradient 0 either way and is never counted as clipped.
func PPOSequence(coef, logp, logpOld, logpRef, adv []float32, stepSeqs int, clipEps, klCoef float64, grpo bool) (loss float64, clipped int, kl float64) {
	T := len(logp)
	if T == 0 {
		return 0, 0, 0
	}
	w := 1 / (float64(T) * float64(stepSeqs)) // per-sequence token mean, then mean over the step's sequences
	lo, hi := 1-clipEps, 1+clipEps
	for t := range logp {
		lp, A := float64(logp[t]), float64(adv[t])
		rho := math.Exp(lp - float64(logpOld[t]))
		surr1 := rho * A
		surr2 := math.Max(lo, math.Min(hi, rho)) * A
		loss -= math.Min(surr1, surr2)
		g := -rho * A
		if (rho > hi && A > 0) || (rho < lo && A < 0) {
			g = 0
			clipped++
		}
		d := lp - float64(logpRef[t])
		if grpo {
			k := math.Exp(-d) - 1 + d
			kl += k
			loss += klCoef * k
			g += klCoef * (1 - math.Exp(-d)) // d/dd k3(d)
		} else {
			kl += d
		}
		coef[t] = float32(g * w)
	}
	return loss * w, clipped, kl
}

// PPOCoef is serl_ppo_coef: PPOSequence for each sequence of a packed batch (logp and coef packed, at
// pos[i]+t; logpOld, logpRef, adv action-packed). coef[t0:t1] gets those packed positions'
// coefficients (0 off the actions); the rest of coef is left alone. sums, when not nil, gets
// sums[3i..3i+2] = (loss, clipped, KL) of the whole sequence i, each rounded to float32 once.
func PPOCoef(coef, sums, logp, logpOld, logpRef, adv []float32, pos, actCu []int32, stepSeqs, t0, t1 int, clipEps, klCoef float64, grpo bool) {
	clear(coef[t0:t1])
	seq := make([]float32, 0, len(logp))
	for i := range pos {
		lo, hi, p := int(actCu[i]), int(actCu[i+1]), int(pos[i])
		T := hi - lo
		seq = seq[:T]
		l, c, k := PPOSequence(seq, logp[p:p+T], logpOld[lo:hi], logpRef[lo:hi], adv[lo:hi], stepSeqs, clipEps, klCoef, grpo)
		for t, g := range seq {
			if p+t >= t0 && p+t < t1 {
				coef[p+t] = g
			}
		}
		if sums != nil {
			sums[3*i], sums[3*i+1], sums[3*i+2] = float32(l), float32(c), float32(k)
		}
	}
}
