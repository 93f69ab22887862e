package rl

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
)

// packer runs samples through the model in consecutive runs that fit the arena together, reusing its
// host buffers across batches.
type packer struct {
	a    *model.Activations
	ids  []int32
	lens []int
	logp []float32
}

func newPacker(a *model.Activations) *packer {
	return &packer{a: a, ids: make([]int32, 0, a.MaxTokens), lens: make([]int, 0, a.MaxSeqs), logp: make([]float32, a.MaxTokens)}
}

// run calls fn after the forward pass of each batch samples[lo:hi] with the batch's packed per-token
// log-probs (the action at response position j of a sequence starting at packed offset o is logp[o+PromptLen−1+j]).
func (p *packer) run(m *model.Model, samples []*Sample, fn func(lo, hi int, logp []float32) error) error {
	flush := func(lo, hi int) error {
		p.ids, p.lens = p.ids[:0], p.lens[:0]
		for _, s := range samples[lo:hi] {
			p.ids = append(p.ids, s.IDs...)
			p.lens = append(p.lens, len(s.IDs))
		}
		if err := m.Forward(p.a, p.ids, p.lens); err != nil {
			return err
		}
		logp := p.logp[:len(p.ids)]
		if err := p.a.LogProbs(logp); err != nil {
			return err
		}
		return fn(lo, hi, logp)
	}
	lo, tokens := 0, 0
	for i, s := range samples {
		n := len(s.IDs)
		if n > p.a.MaxTokens {
			return fmt.Errorf("rl: sample %d has %d tokens, more than the arena's %d", i, n, p.a.MaxTokens)
		}
		if i > lo && (tokens+n > p.a.MaxTokens || i-lo == p.a.MaxSeqs) {
			if err := flush(lo, i); err != nil {
				return err
			}
			lo, tokens = i, 0
		}
		tokens += n
	}
	if lo < len(samples) {
		return flush(lo, len(samples))
	}
	return nil
}

// ScoreActions sets dst[i] to the per-action log-probs of samples[i] under m (policy or reference),
// packing samples into batches of the arena a. dst[i] is reused when its capacity suffices, else
// allocated, so a caller can pass nil entries and keep the slices (e.g. as LogPOld).
func ScoreActions(m *model.Model, a *model.Activations, samples []*Sample, dst [][]float32) error {
	if len(dst) != len(samples) {
		return fmt.Errorf("rl: %d destinations for %d samples", len(dst), len(samples))
	}
	for i, s := range samples {
		if err := s.checkShape(); err != nil {
			return fmt.Errorf("rl: sample %d: %w", i, err)
		}
	}
	return newPacker(a).run(m, samples, func(lo, hi int, logp []float32) error {
		off := 0
		for i := lo; i < hi; i++ {
			s := samples[i]
			at, T := off+s.PromptLen-1, s.Actions()
			if cap(dst[i]) < T {
				dst[i] = make([]float32, T)
			}
			dst[i] = append(dst[i][:0], logp[at:at+T]...)
			off += len(s.IDs)
		}
		return nil
	})
}
