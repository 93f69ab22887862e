package rl

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
)

// Test access to a Workspace's step: per-action values in host slices, uploaded into or downloaded
// from the step's device buffers (the engine itself never brings them to the host).

// load makes samples the workspace's step with the given per-action log-probs and advantages (adv nil:
// left for Advantages to write).
func load(t *testing.T, w *Workspace, samples []*Sample, old, ref, adv [][]float32) {
	t.Helper()
	require.NoError(t, w.setStep(samples))
	for b, vals := range map[*kernels.Tensor][][]float32{&w.dOld: old, &w.dRef: ref, &w.dAdv: adv} {
		if vals == nil {
			continue
		}
		require.Len(t, vals, len(samples))
		for i, v := range vals {
			require.Len(t, v, samples[i].Actions(), "sample %d", i)
			require.NoError(t, kernels.Upload(b.MustSlice(int(w.actCu[i]), int(w.actCu[i+1])), v))
		}
	}
}

// perSample downloads one of the step's action-packed buffers, split by sample.
func perSample(t *testing.T, w *Workspace, b kernels.Tensor) [][]float32 {
	t.Helper()
	out := make([][]float32, len(w.step))
	for i := range w.step {
		out[i] = make([]float32, w.actCu[i+1]-w.actCu[i])
		require.NoError(t, kernels.Download(out[i], b.MustSlice(int(w.actCu[i]), int(w.actCu[i+1]))))
	}
	return out
}

// stepAdv, stepOld and stepRef are the step's advantages and log-probs, per sample.
func stepAdv(t *testing.T, w *Workspace) [][]float32 { return perSample(t, w, w.dAdv) }
func stepOld(t *testing.T, w *Workspace) [][]float32 { return perSample(t, w, w.dOld) }
func stepRef(t *testing.T, w *Workspace) [][]float32 { return perSample(t, w, w.dRef) }
