package rl

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
)

// Score makes samples the workspace's step and scores their actions under the policy and the
// reference model into the step's device buffers (logp_old, logp_ref), packing them into batches of
// the arena in order. Each batch is staged once and run through the policy and then the reference, the
// head on the actions' rows alone (model.ForwardFrom), and each forward's action log-probs are gathered
// on the device: only the token ids (with the actions' targets, positions and offsets) and, once, the
// batches' index arrays go up.
// policy and ref may be the same model. ref nil scores no reference: logp_ref is logp_old, so every KL
// term is 0, as a run with β = 0 (--kl 0) has them anyway, and the step reports a KL of 0 (BackwardShare);
// its forward pass, about a fifth of the training step's work (two forwards to score, a forward and a
// backward to update), is spared.
func (w *Workspace) Score(policy, ref *model.Model, samples []*Sample) error {
	if err := w.setStep(samples); err != nil {
		return err
	}
	w.noRef = ref == nil
	if err := w.pack(0, len(samples)); err != nil {
		return err
	}
	for k, b := range w.batches {
		pos, actCu := w.batch(k)
		if err := policy.ForwardFrom(w.acts, w.ids, w.lens, w.first); err != nil {
			return err
		}
		if err := w.dev.GatherActions(w.dOld, w.acts.LogProbTensor(), pos, actCu, b.hi-b.lo); err != nil {
			return fmt.Errorf("rl: policy log-probs: %w", err)
		}
		if ref == nil {
			continue
		}
		if err := ref.ForwardAgain(w.acts); err != nil { // the same batch: nothing goes up
			return err
		}
		if err := w.dev.GatherActions(w.dRef, w.acts.LogProbTensor(), pos, actCu, b.hi-b.lo); err != nil {
			return fmt.Errorf("rl: reference log-probs: %w", err)
		}
	}
	if ref == nil && w.Actions() > 0 {
		A := w.Actions()
		if err := w.dev.Copy(w.dRef.MustSlice(0, A), w.dOld.MustSlice(0, A)); err != nil {
			return fmt.Errorf("rl: reference log-probs: %w", err)
		}
	}
	return nil
}
