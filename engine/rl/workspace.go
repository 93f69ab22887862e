package rl

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// Workspace is what ScoreActions, Advantages and Backward reuse from call to call: the training arena,
// the host staging of token ids, log-probs and loss coefficients, and the device buffers of the
// advantage ops. It grows to the largest batch it has seen; after that ScoreActions, Backward and
// Advantages allocate nothing on the Go heap (budget_test.go pins it).
type Workspace struct {
	dev  *kernels.Device
	acts *model.Activations

	ids  []int32
	lens []int
	logp []float32
	coef []float32

	// Advantages: rewards in group order (dR), and [μ, σ², returns…] in one buffer (dX) so that the
	// whitened advantages and their statistics come back in one download; dOnes is the whitening mask.
	dR, dX, dOnes kernels.Tensor
	hR, hX        []float32
	groupAt       map[int]int // group id → index into members
	members       [][]int     // sample indices per group, in first-seen order
	shaped        []float64   // per sample: the reshaped, clipped reward
}

// NewWorkspace wraps the training arena a of device d (it stays the caller's to free).
func NewWorkspace(d *kernels.Device, a *model.Activations) *Workspace {
	return &Workspace{dev: d, acts: a, ids: make([]int32, 0, a.MaxTokens), lens: make([]int, 0, a.MaxSeqs),
		logp: make([]float32, a.MaxTokens), coef: make([]float32, a.MaxTokens), groupAt: map[int]int{}}
}

// Activations is the arena the workspace packs batches into.
func (w *Workspace) Activations() *model.Activations { return w.acts }

// Free releases the workspace's device buffers (not the arena).
func (w *Workspace) Free() {
	for _, t := range []kernels.Tensor{w.dR, w.dX, w.dOnes} {
		w.dev.Free(t)
	}
	w.dR, w.dX, w.dOnes = kernels.Tensor{}, kernels.Tensor{}, kernels.Tensor{}
}

// checkFits reports the first sample the arena cannot hold, before any work is done.
func (w *Workspace) checkFits(samples []*Sample) error {
	for i, s := range samples {
		if n := len(s.IDs); n > w.acts.MaxTokens {
			return fmt.Errorf("rl: sample %d has %d tokens, more than the arena's %d", i, n, w.acts.MaxTokens)
		}
	}
	return nil
}

// forward packs samples[lo:] into the arena, as many as fit (MaxTokens tokens, MaxSeqs sequences; every
// sample fits alone, see checkFits), runs m's forward pass on them and downloads the batch's packed
// per-token log-probs: the action at response position j of a sequence starting at packed offset o is
// logp[o+PromptLen−1+j]. hi ends the batch.
func (w *Workspace) forward(m *model.Model, samples []*Sample, lo int) (hi int, logp []float32, err error) {
	w.ids, w.lens = w.ids[:0], w.lens[:0]
	for hi = lo; hi < len(samples); hi++ {
		n := len(samples[hi].IDs)
		if hi > lo && (len(w.ids)+n > w.acts.MaxTokens || hi-lo == w.acts.MaxSeqs) {
			break
		}
		w.ids = append(w.ids, samples[hi].IDs...)
		w.lens = append(w.lens, n)
	}
	if err := m.Forward(w.acts, w.ids, w.lens); err != nil {
		return hi, nil, err
	}
	logp = w.logp[:len(w.ids)]
	return hi, logp, w.acts.LogProbs(logp)
}

// grow makes t an F32 tensor of at least n elements, reallocating (to twice the need) when it is
// smaller; fresh reports a reallocation, whose contents are undefined.
func (w *Workspace) grow(t *kernels.Tensor, n int) (fresh bool, err error) {
	if t.Valid() && t.Len() >= n {
		return false, nil
	}
	w.dev.Free(*t)
	*t = kernels.Tensor{}
	nt, err := w.dev.Alloc(kernels.F32, 2*n)
	if err != nil {
		return false, fmt.Errorf("rl: advantage buffers: %w", err)
	}
	*t = nt
	return true, nil
}

// MaxDeviceBytes bounds the device memory of the advantage buffers for batches of up to samples
// samples with up to actions action tokens in all (a memory plan counts it before anything is
// allocated): rewards, [μ, σ², returns…] and the whitening mask, each grown to twice its need.
func MaxDeviceBytes(samples, actions int) int64 {
	return 2 * int64(kernels.F32.Size()) * (int64(samples) + int64(2+actions) + int64(actions))
}
