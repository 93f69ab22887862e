package rl

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
)

// ScoreActions sets dst[i] to the per-action log-probs of samples[i] under m (policy or reference),
// packing samples into batches of the workspace's arena. dst[i] is reused when its capacity suffices,
// else allocated, so a caller can pass nil entries and keep the slices (e.g. as LogPOld).
func (w *Workspace) ScoreActions(m *model.Model, samples []*Sample, dst [][]float32) error {
	if len(dst) != len(samples) {
		return fmt.Errorf("rl: %d destinations for %d samples", len(dst), len(samples))
	}
	for i, s := range samples {
		if err := s.checkShape(); err != nil {
			return fmt.Errorf("rl: sample %d: %w", i, err)
		}
	}
	if err := w.checkFits(samples); err != nil {
		return err
	}
	for lo := 0; lo < len(samples); {
		hi, logp, err := w.forward(m, samples, lo)
		if err != nil {
			return err
		}
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
		lo = hi
	}
	return nil
}
