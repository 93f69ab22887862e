package rl

import (
	"fmt"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// Workspace holds one training step on the device: the training arena, and the step's action-packed
// per-token buffers (policy and reference log-probs, advantages) of the samples Score scored, in that
// order. Reshape, Score, Advantages and BackwardShare reuse it from call to call; it grows to the
// largest step it has seen, after which they allocate nothing on the Go heap (budget_test.go pins it).
//
// What crosses between host and device (budget_test.go pins the counts): each packed batch's token ids,
// and once per Score or BackwardShare the batches' index arrays (sequence positions and action
// offsets); the rewards in and out of
// group_baseline, the step's reshaped rewards and action offsets, the whitening statistics and KL sums
// out and the combined statistics back in, and per optimizer step the per-sequence loss sums out.
type Workspace struct {
	dev  *kernels.Device
	acts *model.Activations

	ids     []int32
	lens    []int
	first   []int   // each sequence's first action: the head computes log-probs from there on
	hIdx    []int32 // every batch's pos [S] then actCu [S+1], staged for upload
	batches []batch // the arena batches of the latest pack

	// the step: the samples Score scored, and their action offsets (actCu[i]..actCu[i+1]); noRef: it
	// scored no reference (logp_ref is logp_old), so the step reports no KL
	step  []*Sample
	actCu []int32
	noRef bool

	// device buffers, each grown to twice its need:
	//   dOld, dRef, dAdv: action-packed F32 [actions]; dOnes: the whitening mask (all ones)
	//   dR: the rewards in group order [all samples] (Reshape)
	//   dSeq: per step sequence F32: reshaped rewards [n] | stats [3] | KL sums [n] | loss sums [3n]
	//   dCu: the step's action offsets I32 [n+1]; dIdx: the batches' pos and actCu I32 [Σ 2S+1 ≤ 3n]
	dOld, dRef, dAdv, dOnes kernels.Tensor
	dR, dSeq, dCu, dIdx     kernels.Tensor
	hSeq                    []float32 // host staging of dSeq's parts

	reshapes uint64      // Reshape calls so far: a sample's reshaped says which one set its reward
	groupAt  map[int]int // group id → index into members
	members  [][]int     // sample indices per group, in first-seen order
}

// NewWorkspace wraps the training arena a of device d (it stays the caller's to free).
func NewWorkspace(d *kernels.Device, a *model.Activations) *Workspace {
	return &Workspace{dev: d, acts: a, ids: make([]int32, 0, a.MaxTokens), lens: make([]int, 0, a.MaxSeqs),
		first: make([]int, 0, a.MaxSeqs), groupAt: map[int]int{}}
}

// Activations is the arena the workspace packs batches into.
func (w *Workspace) Activations() *model.Activations { return w.acts }

// Free releases the workspace's device buffers (not the arena).
func (w *Workspace) Free() {
	for _, t := range []*kernels.Tensor{&w.dOld, &w.dRef, &w.dAdv, &w.dOnes, &w.dR, &w.dSeq, &w.dCu, &w.dIdx} {
		w.dev.Free(*t)
		*t = kernels.Tensor{}
	}
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

// setStep makes samples the step (checked and fitting) and sizes its action-packed buffers.
func (w *Workspace) setStep(samples []*Sample) error {
	for i, s := range samples {
		if err := s.checkShape(); err != nil {
			return fmt.Errorf("rl: sample %d: %w", i, err)
		}
	}
	if err := w.checkFits(samples); err != nil {
		return err
	}
	w.step = append(w.step[:0], samples...)
	w.actCu = append(w.actCu[:0], 0)
	for _, s := range samples {
		w.actCu = append(w.actCu, w.actCu[len(w.actCu)-1]+int32(s.Actions()))
	}
	A := int(w.actCu[len(samples)])
	if A == 0 { // a rank with no share of the step
		return nil
	}
	for _, t := range []*kernels.Tensor{&w.dOld, &w.dRef, &w.dAdv} {
		if _, err := w.grow(t, kernels.F32, A); err != nil {
			return err
		}
	}
	return nil
}

// Actions is the action count of the step Score last set.
func (w *Workspace) Actions() int {
	if len(w.actCu) == 0 {
		return 0
	}
	return int(w.actCu[len(w.actCu)-1])
}

// batch is one arena batch of the step: samples [lo, hi), whose index arrays (pos [S] then actCu
// [S+1]) start at element idx of dIdx.
type batch struct{ lo, hi, idx int }

// pack splits w.step[lo:end] into arena batches, in order, as many samples per batch as fit (MaxTokens
// tokens, MaxSeqs sequences; every sample fits alone, see checkFits), and uploads every batch's index
// arrays for the device's RL ops in one copy: pos (the head row predicting each sequence's first
// action: the forward's head runs on the actions' rows alone, model.ForwardFrom, so a batch's head rows
// are its actions in order) and actCu (its action offsets in the step's buffers).
func (w *Workspace) pack(lo, end int) error {
	w.batches, w.hIdx = w.batches[:0], w.hIdx[:0]
	for b := lo; b < end; {
		hi, tokens := b, 0
		for ; hi < end; hi++ {
			n := len(w.step[hi].IDs)
			if hi > b && (tokens+n > w.acts.MaxTokens || hi-b == w.acts.MaxSeqs) {
				break
			}
			tokens += n
		}
		w.batches = append(w.batches, batch{b, hi, len(w.hIdx)})
		for i := b; i < hi; i++ {
			w.hIdx = append(w.hIdx, w.actCu[i]-w.actCu[b])
		}
		w.hIdx = append(w.hIdx, w.actCu[b:hi+1]...)
		b = hi
	}
	if _, err := w.grow(&w.dIdx, kernels.I32, len(w.hIdx)); err != nil {
		return err
	}
	return kernels.Upload(w.dIdx.MustSlice(0, len(w.hIdx)), w.hIdx)
}

// batch packs batch k of the latest pack into w.ids, w.lens and w.first and returns its index arrays.
func (w *Workspace) batch(k int) (pos, actCu kernels.Tensor) {
	b := w.batches[k]
	w.ids, w.lens, w.first = w.ids[:0], w.lens[:0], w.first[:0]
	for _, s := range w.step[b.lo:b.hi] {
		w.ids = append(w.ids, s.IDs...)
		w.lens = append(w.lens, len(s.IDs))
		w.first = append(w.first, s.PromptLen)
	}
	S := b.hi - b.lo
	return w.dIdx.MustSlice(b.idx, b.idx+S), w.dIdx.MustSlice(b.idx+S, b.idx+2*S+1)
}

// grow makes t a tensor of dtype dt of at least n elements, reallocating (to twice the need) when it
// is smaller; fresh reports a reallocation, whose contents are undefined.
func (w *Workspace) grow(t *kernels.Tensor, dt kernels.DType, n int) (fresh bool, err error) {
	if t.Valid() && t.Len() >= n {
		return false, nil
	}
	w.dev.Free(*t)
	*t = kernels.Tensor{}
	nt, err := w.dev.Alloc(dt, 2*n)
	if err != nil {
		return false, fmt.Errorf("rl: step buffers: %w", err)
	}
	*t = nt
	return true, nil
}

// MaxDeviceBytes bounds the device memory of a Workspace's step buffers for steps of up to samples
// samples with up to actions action tokens in all (a memory plan counts it before anything is
// allocated), each buffer grown to twice its need: four action-packed F32 buffers (policy and
// reference log-probs, advantages, whitening mask), the rewards [samples], the per-sequence F32 buffer
// [5·samples+3], the step's action offsets [samples+1] and the batches' index arrays [Σ (2S+1) ≤
// 3·samples]. F32 and I32 are both 4 bytes.
func MaxDeviceBytes(samples, actions int) int64 {
	n, a := int64(samples), int64(actions)
	return 2 * int64(kernels.F32.Size()) * (4*a + n + (5*n + 3) + (n + 1) + 3*n)
}
