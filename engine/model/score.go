package model

import "fmt"

// batches packs sequences, in order, into batches of at most maxTokens tokens; a sequence longer than
// maxTokens is an error naming it.
func batches(seqs [][]int32, maxTokens int, fn func(lo, hi, tokens int) error) error {
	lo, tokens := 0, 0
	for i, s := range seqs {
		if len(s) == 0 {
			return fmt.Errorf("model: sequence %d is empty", i)
		}
		if len(s) > maxTokens {
			return fmt.Errorf("model: sequence %d has %d tokens, more than the batch budget of %d", i, len(s), maxTokens)
		}
		if tokens+len(s) > maxTokens {
			if err := fn(lo, i, tokens); err != nil {
				return err
			}
			lo, tokens = i, 0
		}
		tokens += len(s)
	}
	if lo < len(seqs) {
		return fn(lo, len(seqs), tokens)
	}
	return nil
}

func packInto(ids []int32, lens []int, seqs [][]int32) ([]int32, []int) {
	ids, lens = ids[:0], lens[:0]
	for _, s := range seqs {
		ids = append(ids, s...)
		lens = append(lens, len(s))
	}
	return ids, lens
}

// eachBatch packs sequences into the arena's batches (at most MaxTokens tokens, MaxSeqs sequences),
// runs run on each (a Forward, or a Grad) and calls fn with the batch's first sequence index, lengths
// and log-probabilities (fn must not keep them).
func (m *Model) eachBatch(a *Activations, seqs [][]int32, run func(ids []int32, lens []int) error,
	fn func(lo int, lens []int, logp []float32) error) error {
	ids := make([]int32, 0, a.MaxTokens)
	lens := make([]int, 0, a.MaxSeqs)
	logp := make([]float32, a.MaxTokens)
	return batches(seqs, a.MaxTokens, func(lo, hi, tokens int) error {
		for lo < hi {
			n := min(hi-lo, a.MaxSeqs)
			ids, lens = packInto(ids, lens, seqs[lo:lo+n])
			if err := run(ids, lens); err != nil {
				return err
			}
			if err := a.LogProbs(logp[:len(ids)]); err != nil {
				return err
			}
			if err := fn(lo, lens, logp[:len(ids)]); err != nil {
				return err
			}
			lo += n
		}
		return nil
	})
}

// Score computes log p(ids[i] | ids[:i]) for i = 1..n−1 of every sequence, packing them into batches of
// at most a.MaxTokens tokens. fn receives each sequence's n−1 values in order (the slice is reused).
func (m *Model) Score(a *Activations, seqs [][]int32, fn func(i int, logp []float32) error) error {
	forward := func(ids []int32, lens []int) error { return m.Forward(a, ids, lens) }
	return m.eachBatch(a, seqs, forward, func(lo int, lens []int, logp []float32) error {
		off := 0
		for j, l := range lens {
			if err := fn(lo+j, logp[off:off+l-1]); err != nil {
				return err
			}
			off += l
		}
		return nil
	})
}

// GradNLL accumulates into g the gradient of the mean negative log-likelihood over every predicted
// token of every sequence (each sequence's tokens after its first), and returns that loss.
func (m *Model) GradNLL(a *Activations, g *Blob, seqs [][]int32) (float64, error) {
	total := 0
	for _, s := range seqs {
		total += max(len(s)-1, 0)
	}
	if total == 0 {
		return 0, fmt.Errorf("model: no predicted tokens (every sequence has at most one token)")
	}
	// Every coefficient is known before the forward, so the head's backward runs in it (Grad).
	coef := make([]float32, a.MaxTokens)
	grad := func(ids []int32, lens []int) error {
		off := 0
		for _, l := range lens {
			for i := 0; i < l; i++ {
				coef[off+i] = 0
				if i+1 < l {
					coef[off+i] = -1 / float32(total)
				}
			}
			off += l
		}
		return m.GradHost(a, g, ids, lens, coef[:len(ids)])
	}
	var loss float64
	err := m.eachBatch(a, seqs, grad, func(_ int, lens []int, logp []float32) error {
		off := 0
		for _, l := range lens {
			for i := 0; i+1 < l; i++ {
				loss -= float64(logp[off+i])
			}
			off += l
		}
		return nil
	})
	return loss / float64(total), err
}
