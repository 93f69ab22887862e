package rl

import (
	"fmt"
	"math"

	"github.com/serl-go/serl/engine/model"
)

// PPOCoefficients fills coef with ∂L/∂logp_t of this sample's share of an optimizer step's loss (docs/SERL.md
// §5.4, D15): L = (1/nSeqs)·(1/T)·Σ_t [ℓ_t + β·k3(logp_t − logp_ref,t) for grpo], with the PPO-clip term
// ℓ_t = −min(ρ_t·A_t, clip(ρ_t, 1−ε, 1+ε)·A_t), ρ_t = exp(logp_t − logp_old,t), T = len(logp). logp must come
// from the forward pass that the backward follows. It returns the sample's loss (already divided by nSeqs),
// the number of tokens whose gradient the clip removed, and Σ_t KL for logging: k3(logp − logp_ref) for grpo
// (the loss term), k1 otherwise. Slices of different lengths or nSeqs < 1 are a programming error and panic.
//
// Gradient and ties, as PyTorch's autograd through OpenRLHF's -torch.min(surr1, surr2): torch.minimum
// gives half the gradient to each argument when they are equal, and clamp passes the gradient on the
// closed range [1−ε, 1+ε]. Inside that range (boundaries included) surr1 = surr2 and both halves carry
// ρA, so ∂ℓ/∂logp = −ρA. Outside it the unclipped term is the minimum (gradient −ρA) when ρ > 1+ε with A < 0
// or ρ < 1−ε with A > 0; otherwise the constant clipped term is (gradient 0, counted as clipped). A = 0
// gives gradient 0 either way and is never counted as clipped.
func PPOCoefficients(c Config, logp, logpOld, logpRef, adv []float32, nSeqs int, coef []float32) (loss float64, clipped int, kl float64) {
	T := len(logp)
	if len(logpOld) != T || len(logpRef) != T || len(adv) != T || len(coef) != T || T == 0 || nSeqs < 1 {
		panic(fmt.Sprintf("rl: PPOCoefficients: lengths logp %d, old %d, ref %d, adv %d, coef %d, nSeqs %d",
			T, len(logpOld), len(logpRef), len(adv), len(coef), nSeqs))
	}
	w := 1 / (float64(T) * float64(nSeqs)) // per-sequence token mean, then mean over the step's sequences
	lo, hi := 1-c.ClipEps, 1+c.ClipEps
	grpo := c.Algorithm == GRPO
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
			k := K3(d)
			kl += k
			loss += c.KLCoef * k
			g += c.KLCoef * (1 - math.Exp(-d)) // d/dd k3(d)
		} else {
			kl += K1(d)
		}
		coef[t] = float32(g * w)
	}
	return loss * w, clipped, kl
}

// StepStats sums one optimizer step's Backward.
type StepStats struct {
	Loss     float64 // the step's loss: mean over its sequences of the per-sequence token mean
	ClipFrac float64 // share of action tokens whose gradient the clip removed
	KL       float64 // mean over action tokens of k3(logp − logp_ref) for grpo, k1 otherwise
	Tokens   int     // action tokens
}

// ShareSums is one rank's unnormalised share of an optimizer step's statistics; summed over the
// ranks in rank order they give the step's StepStats (Stats).
type ShareSums struct {
	Loss    float64 // already divided by the step's nSeqs
	KL      float64 // Σ over action tokens
	Tokens  int
	Clipped int
}

// Add sums another share into s.
func (s *ShareSums) Add(o ShareSums) {
	s.Loss += o.Loss
	s.KL += o.KL
	s.Tokens += o.Tokens
	s.Clipped += o.Clipped
}

// Stats normalises the sums of a whole step.
func (s ShareSums) Stats() StepStats {
	st := StepStats{Loss: s.Loss, Tokens: s.Tokens}
	if s.Tokens > 0 {
		st.ClipFrac = float64(s.Clipped) / float64(s.Tokens)
		st.KL = s.KL / float64(s.Tokens)
	}
	return st
}

// Backward accumulates into g the gradient of the PPO loss of samples (one optimizer step's worth,
// nSeqs = len(samples)), running m.Forward/Backward over packed batches of the workspace's arena. Each
// batch's coefficients use the log-probs of its own forward pass (the current policy), and are zero on
// prompt tokens and on each sequence's last token (it predicts nothing). Samples need LogPOld, LogPRef
// and Adv.
func (w *Workspace) Backward(c Config, m *model.Model, g *model.Blob, samples []*Sample) (StepStats, error) {
	s, err := w.BackwardShare(c, m, g, samples, len(samples))
	if err != nil {
		return StepStats{}, err
	}
	return s.Stats(), nil
}

// BackwardShare is Backward of one process's share of a data-parallel optimizer step of nSeqs
// sequences in all: each sequence's loss is divided by nSeqs, so the gradients summed over the ranks
// are the whole step's.
func (w *Workspace) BackwardShare(c Config, m *model.Model, g *model.Blob, samples []*Sample, nSeqs int) (ShareSums, error) {
	var st ShareSums
	if err := c.Validate(); err != nil {
		return st, err
	}
	if len(samples) == 0 {
		return st, fmt.Errorf("rl: backward of no samples")
	}
	if nSeqs < len(samples) {
		return st, fmt.Errorf("rl: backward of %d samples as a share of %d", len(samples), nSeqs)
	}
	for i, s := range samples {
		if err := s.checkLogProbs(true); err != nil {
			return st, fmt.Errorf("rl: sample %d: %w", i, err)
		}
	}
	if err := w.checkFits(samples); err != nil {
		return st, err
	}
	n := len(samples)
	for lo := 0; lo < n; {
		hi, logp, err := w.forward(m, samples, lo)
		if err != nil {
			return st, err
		}
		coef := w.coef[:len(logp)]
		clear(coef)
		off := 0
		for _, s := range samples[lo:hi] {
			at, T := off+s.PromptLen-1, s.Actions()
			l, cl, kl := PPOCoefficients(c, logp[at:at+T], s.LogPOld, s.LogPRef, s.Adv, nSeqs, coef[at:at+T])
			st.Loss += l
			st.KL += kl
			st.Tokens += T
			st.Clipped += cl
			off += len(s.IDs)
		}
		if err := m.Backward(w.acts, g, coef); err != nil {
			return st, err
		}
		lo = hi
	}
	return st, nil
}
