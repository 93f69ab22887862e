package train

import "fmt"

// AccumulateMaskedNLL is AccumulateNLL with a loss mask per sequence: in sequence s only the tokens at
// positions ≥ lossFrom[s] are predicted targets (supervised fine-tuning trains on the response, not on
// the prompt). The loss is the mean NLL over those targets in the micro-batch, scaled by weight, and
// predicted is their number. Position 0 is never a target; lossFrom[s] ≥ seqLens[s] masks a sequence
// out entirely, which is allowed as long as the micro-batch keeps at least one target.
func (t *Trainer) AccumulateMaskedNLL(ids []int32, seqLens []int, lossFrom []int, weight float64) (loss float64, predicted int, err error) {
	if len(lossFrom) != len(seqLens) {
		return 0, 0, fmt.Errorf("train: %d loss starts for %d sequences", len(lossFrom), len(seqLens))
	}
	return t.accumulateNLL(ids, seqLens, lossFrom, weight)
}

// accumulateNLL is the shared body of AccumulateNLL (lossFrom nil: every token after the first is a
// target) and AccumulateMaskedNLL.
func (t *Trainer) accumulateNLL(ids []int32, seqLens []int, lossFrom []int, weight float64) (loss float64, predicted int, err error) {
	first := func(s int) int {
		if lossFrom == nil {
			return 1
		}
		return max(lossFrom[s], 1)
	}
	// The coefficients do not depend on the log-probs, so the head's backward runs in the forward
	// (model.Grad). They are filled first, so the batch's shape is checked first.
	T, total, empty := len(ids), 0, -1
	for s, n := range seqLens {
		predicted += max(0, n-first(s))
		total += n
		if n < 1 && empty < 0 {
			empty = s
		}
	}
	if predicted == 0 {
		return 0, 0, fmt.Errorf("train: batch has no target tokens")
	}
	if empty >= 0 {
		return 0, 0, fmt.Errorf("train: sequence %d has %d tokens", empty, seqLens[empty])
	}
	if T > len(t.coef) || total != T {
		return 0, 0, fmt.Errorf("train: batch of %d tokens in sequences of %d (arena holds %d)", T, total, len(t.coef))
	}
	c := float32(-weight / float64(predicted))
	if lossFrom != nil {
		// The head runs on the targets' rows alone (model.GradHostFrom): a prompt's rows skip it.
		t.first = t.first[:0]
		for s, n := range seqLens {
			t.first = append(t.first, min(first(s), n))
		}
		for i := range predicted {
			t.coef[i] = c
		}
		if err := t.Model.GradHostFrom(t.Acts, t.Grads, ids, seqLens, t.first, t.coef[:predicted]); err != nil {
			return 0, 0, err
		}
		if err := t.Acts.LogProbs(t.logp[:predicted]); err != nil {
			return 0, 0, err
		}
		for _, lp := range t.logp[:predicted] {
			loss -= float64(lp)
		}
		return loss / float64(predicted), predicted, nil
	}
	// Target i+1 of sequence s (at index start+i, weighting log p(token i+1 | ≤ i)) is predicted when it
	// exists.
	target := func(s, i, n int) bool { return i+1 < n && i+1 >= first(s) }
	start := 0
	for s, n := range seqLens {
		for i := 0; i < n; i++ {
			t.coef[start+i] = 0
			if target(s, i, n) {
				t.coef[start+i] = c
			}
		}
		start += n
	}
	if err := t.Model.GradHost(t.Acts, t.Grads, ids, seqLens, t.coef[:T]); err != nil {
		return 0, 0, err
	}
	if err := t.Acts.LogProbs(t.logp[:T]); err != nil {
		return 0, 0, err
	}
	start = 0
	for s, n := range seqLens {
		for i := 0; i < n; i++ {
			if target(s, i, n) {
				loss -= float64(t.logp[start+i])
			}
		}
		start += n
	}
	return loss / float64(predicted), predicted, nil
}
