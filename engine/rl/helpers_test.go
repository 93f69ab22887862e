package rl

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
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

// randomStepValues are step values around the samples' own log-probs under m (scored in arena a):
// logp_old and logp_ref within ±0.5 of them, so that many ratios leave the clip range, and advantages
// in [−1, 1), drawn from seed.
func randomStepValues(t *testing.T, m *model.Model, a *model.Activations, samples []*Sample, seed uint64) stepValues {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	v := newStepValues(len(samples))
	for i, lp := range scored(t, m, a, samples) {
		v.old[i], v.ref[i], v.adv[i] = make([]float32, len(lp)), make([]float32, len(lp)), make([]float32, len(lp))
		for j := range lp {
			v.old[i][j] = lp[j] + float32(rng.Float64()-0.5)
			v.ref[i][j] = lp[j] + float32(rng.Float64()-0.5)
			v.adv[i][j] = float32(rng.Float64()*2 - 1)
		}
	}
	return v
}
