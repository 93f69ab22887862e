package rl

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

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

// Backward accumulates into g the gradient of the PPO loss of the step's samples [lo, hi) (one
// optimizer step's worth, nSeqs = hi − lo).
func (w *Workspace) Backward(c Config, m *model.Model, g *model.Blob, lo, hi int) (StepStats, error) {
	s, err := w.BackwardShare(c, m, g, lo, hi, hi-lo)
	if err != nil {
		return StepStats{}, err
	}
	return s.Stats(), nil
}

// BackwardShare accumulates into g the gradient of the PPO-clip loss (docs/SERL.md §5.4, D15) of the
// step's samples [lo, hi) as one process's share of a data-parallel optimizer step of nSeqs sequences
// in all: each sequence's loss is divided by nSeqs, so the gradients summed over the ranks are the whole
// step's. It runs m.GradFrom over packed batches of the arena (the head on the actions' rows alone);
// each batch's coefficients come from kernels.PPOCoef on the device, a head chunk at a time, from the
// log-probs of its own forward pass (the current policy) and the step's logp_old, logp_ref and
// advantages (Score, Advantages). Only the token ids and, once, the batches' index arrays go up; the
// per-sequence loss, clip and KL sums come back in one download.
func (w *Workspace) BackwardShare(c Config, m *model.Model, g *model.Blob, lo, hi, nSeqs int) (ShareSums, error) {
	var st ShareSums
	if err := c.Validate(); err != nil {
		return st, err
	}
	if lo < 0 || hi > len(w.step) || lo >= hi {
		return st, fmt.Errorf("rl: backward of samples [%d, %d) of a step of %d", lo, hi, len(w.step))
	}
	if nSeqs < hi-lo {
		return st, fmt.Errorf("rl: backward of %d samples as a share of %d", hi-lo, nSeqs)
	}
	n := len(w.step)
	if _, err := w.grow(&w.dSeq, kernels.F32, 5*n+3); err != nil {
		return st, err
	}
	sums := w.dSeq.MustSlice(2*n+3, 2*n+3+3*(hi-lo))
	p := kernels.PPO{ClipEps: float32(c.ClipEps), KLCoef: float32(c.KLCoef), GRPO: c.Algorithm == GRPO}
	A := w.Actions()
	old, ref, adv := w.dOld.MustSlice(0, A), w.dRef.MustSlice(0, A), w.dAdv.MustSlice(0, A)
	if err := w.pack(lo, hi); err != nil {
		return st, err
	}
	for k, b := range w.batches {
		pos, actCu := w.batch(k)
		// Each chunk of the head asks for its tokens' coefficients while its logits are in the
		// buffer (model.Grad); the sequences' sums follow, from the whole batch's logp.
		coef := func(t0, t1 int) error {
			return w.dev.PPOCoef(w.acts.Coef(), kernels.Tensor{}, w.acts.LogProbTensor(), old, ref, adv, pos, actCu,
				b.hi-b.lo, nSeqs, t0, t1, p)
		}
		if err := m.GradFrom(w.acts, g, w.ids, w.lens, w.first, coef); err != nil {
			return st, fmt.Errorf("rl: %w", err)
		}
		if err := w.dev.PPOCoef(w.acts.Coef(), sums.MustSlice(3*(b.lo-lo), 3*(b.hi-lo)), w.acts.LogProbTensor(), old, ref, adv,
			pos, actCu, b.hi-b.lo, nSeqs, 0, 0, p); err != nil {
			return st, fmt.Errorf("rl: loss sums: %w", err)
		}
	}
	w.hSeq = grown(w.hSeq, 3*(hi-lo))
	if err := kernels.Download(w.hSeq, sums); err != nil {
		return st, err
	}
	for i, s := range w.step[lo:hi] {
		st.Loss += float64(w.hSeq[3*i])
		st.Clipped += int(w.hSeq[3*i+1])
		st.KL += float64(w.hSeq[3*i+2])
		st.Tokens += s.Actions()
	}
	if w.noRef { // the sums' KL is to logp_old there: the policy's drift within the step, not to a reference
		st.KL = 0
	}
	return st, nil
}
