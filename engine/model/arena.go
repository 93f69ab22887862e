package model

import (
	"fmt"

	"github.com/serl-go/serl/kernels"
)

// Activations is the training arena: every activation the backward pass needs, for up to MaxTokens
// packed tokens in up to MaxSeqs sequences, carved from one float32 and one int32 allocation sized up
// front. Nothing is allocated per step.
type Activations struct {
	MaxTokens, MaxSeqs int

	f32, i32 kernels.Tensor

	// inputs of the current batch (device) and their host staging (reused, so a step allocates nothing)
	ids, targets, pos, cu kernels.Tensor
	coef                  kernels.Tensor
	hostIDs, hostTargets  []int32
	hostPos, hostCu       []int32

	xs     []kernels.Tensor // L+1 residual streams [T, H]
	layers []layerActs

	xf, rstdf kernels.Tensor // final norm [T, H], [T]
	logits    kernels.Tensor // [T, V]; the backward pass overwrites it with dlogits
	lseLogits kernels.Tensor // [T]
	logp      kernels.Tensor // [T] log p(target) per position; 0 where there is no target

	// backward scratch, shared by all layers
	dx, dln, tmp     kernels.Tensor // [T, H]
	dq, dattn        kernels.Tensor // [T, Hq, D]
	dk, dv           kernels.Tensor // [T, KVH, D]
	dgate, dup, dact kernels.Tensor // [T, I]

	// the current batch
	tokens, seqs int
}

// layerActs is what one layer's forward keeps for its backward.
type layerActs struct {
	ln1, ln2     kernels.Tensor // normed inputs [T, H]
	rstd1, rstd2 kernels.Tensor // [T]
	q, attn      kernels.Tensor // [T, Hq, D] (q after RoPE)
	k, v         kernels.Tensor // [T, KVH, D] (k after RoPE)
	lse          kernels.Tensor // [T, Hq]
	xmid         kernels.Tensor // residual after attention [T, H]
	gate, up     kernels.Tensor // [T, I]
	act          kernels.Tensor // silu(gate)·up [T, I]
}

// arenaSlot is one tensor of the arena plan.
type arenaSlot struct {
	dst  *kernels.Tensor
	dims []int
}

func (c Config) arenaSlots(a *Activations, T, S int) (f32, i32 []arenaSlot) {
	h, q, kv, in, v := c.Hidden, c.Heads, c.KVHeads, c.Intermediate, c.Vocab
	d := c.HeadDim
	f := func(dst *kernels.Tensor, dims ...int) { f32 = append(f32, arenaSlot{dst, dims}) }
	a.xs = make([]kernels.Tensor, c.Layers+1)
	a.layers = make([]layerActs, c.Layers)
	for i := range a.xs {
		f(&a.xs[i], T, h)
	}
	for i := range a.layers {
		l := &a.layers[i]
		f(&l.ln1, T, h)
		f(&l.rstd1, T)
		f(&l.q, T, q, d)
		f(&l.k, T, kv, d)
		f(&l.v, T, kv, d)
		f(&l.attn, T, q, d)
		f(&l.lse, T, q)
		f(&l.xmid, T, h)
		f(&l.ln2, T, h)
		f(&l.rstd2, T)
		f(&l.gate, T, in)
		f(&l.up, T, in)
		f(&l.act, T, in)
	}
	f(&a.xf, T, h)
	f(&a.rstdf, T)
	f(&a.logits, T, v)
	f(&a.lseLogits, T)
	f(&a.logp, T)
	f(&a.coef, T)
	f(&a.dx, T, h)
	f(&a.dln, T, h)
	f(&a.tmp, T, h)
	f(&a.dq, T, q, d)
	f(&a.dattn, T, q, d)
	f(&a.dk, T, kv, d)
	f(&a.dv, T, kv, d)
	f(&a.dgate, T, in)
	f(&a.dup, T, in)
	f(&a.dact, T, in)
	i := func(dst *kernels.Tensor, dims ...int) { i32 = append(i32, arenaSlot{dst, dims}) }
	i(&a.ids, T)
	i(&a.targets, T)
	i(&a.pos, T)
	i(&a.cu, S+1)
	return f32, i32
}

func slotsLen(s []arenaSlot) int {
	n := 0
	for _, x := range s {
		m := 1
		for _, d := range x.dims {
			m *= d
		}
		n += (m + 15) &^ 15
	}
	return n
}

// carve points each slot at its region of base, in order, every region starting 16-element aligned.
func carve(base kernels.Tensor, slots []arenaSlot) {
	off := 0
	for _, s := range slots {
		n := 1
		for _, d := range s.dims {
			n *= d
		}
		*s.dst = base.MustSlice(off, off+n).MustReshape(s.dims...)
		off += (n + 15) &^ 15
	}
}

// ActivationBytes is the size of the training arena for maxTokens tokens in maxSeqs sequences.
func (c Config) ActivationBytes(maxTokens, maxSeqs int) int64 {
	var a Activations
	f, i := c.arenaSlots(&a, maxTokens, maxSeqs)
	return 4 * int64(slotsLen(f)+slotsLen(i))
}

// NewActivations allocates the arena for batches of up to maxTokens tokens in up to maxSeqs sequences.
func (m *Model) NewActivations(maxTokens, maxSeqs int) (*Activations, error) {
	if maxTokens < 1 || maxSeqs < 1 || maxSeqs > maxTokens {
		return nil, fmt.Errorf("model: activations for %d tokens in %d sequences: want 1 ≤ sequences ≤ tokens", maxTokens, maxSeqs)
	}
	a := &Activations{MaxTokens: maxTokens, MaxSeqs: maxSeqs}
	fs, is := m.Config.arenaSlots(a, maxTokens, maxSeqs)
	var err error
	if a.f32, err = m.dev.Alloc(kernels.F32, slotsLen(fs)); err != nil {
		return nil, fmt.Errorf("model: activation arena: %w", err)
	}
	if a.i32, err = m.dev.Alloc(kernels.I32, slotsLen(is)); err != nil {
		m.dev.Free(a.f32)
		return nil, fmt.Errorf("model: activation arena: %w", err)
	}
	carve(a.f32, fs)
	carve(a.i32, is)
	a.hostIDs = make([]int32, maxTokens)
	a.hostTargets = make([]int32, maxTokens)
	a.hostPos = make([]int32, maxTokens)
	a.hostCu = make([]int32, maxSeqs+1)
	return a, nil
}

// Free releases the arena.
func (a *Activations) Free() {
	if a == nil || !a.f32.Valid() {
		return
	}
	d := a.f32.Device()
	d.Free(a.f32)
	d.Free(a.i32)
}

// Tokens is the number of tokens of the current batch.
func (a *Activations) Tokens() int { return a.tokens }

// rows is the first T rows of an arena tensor: the current batch's view.
func rows(t kernels.Tensor, T int) kernels.Tensor { return t.MustSlice(0, T) }

// flat2 views [T, A, B] as [T, A·B], for matrix products over heads.
func flat2(t kernels.Tensor) kernels.Tensor {
	return t.MustReshape(t.Dim(0), t.Len()/max(t.Dim(0), 1))
}
