package model

import (
	"fmt"
	"slices"

	"github.com/serl-go/serl/kernels"
)

// Activations is the training arena: every activation the backward pass needs, for up to MaxTokens
// packed tokens in up to MaxSeqs sequences, carved from one allocation per dtype sized up front (under
// bf16: the activations in bf16, norm statistics, log-sum-exps and log-probs in float32). Nothing is
// allocated per step.
type Activations struct {
	MaxTokens, MaxSeqs int

	bufs []kernels.Tensor // one allocation per dtype

	// inputs of the current batch (device) and their host staging (reused, so a step allocates nothing)
	ids, targets, pos, cu kernels.Tensor
	coef                  kernels.Tensor
	hostIDs, hostTargets  []int32
	hostPos, hostCu       []int32

	xs     []kernels.Tensor // L+1 residual streams [T, H]
	layers []layerActs

	xf, rstdf kernels.Tensor // final norm [T, H], [T]
	logits    kernels.Tensor // [C, V], one chunk of the head (head.go); backward overwrites it with dlogits
	// logitsHeld: the buffer holds the logits of the last chunk the latest Forward computed; headDone:
	// the latest forward was a Grad's, which did the head's backward too (head.go)
	logitsHeld, headDone bool
	lseLogits            kernels.Tensor // [T]
	logp                 kernels.Tensor // [T] log p(target) per position; 0 where there is no target

	// backward scratch, shared by all layers
	dx, dln, tmp     kernels.Tensor // [T, H]
	dq, dattn        kernels.Tensor // [T, Hq, D]
	dk, dv           kernels.Tensor // [T, KVH, D]
	dgate, dup, dact kernels.Tensor // [T, I]

	// LoRA (nil without adapters): u = x·Aᵀ per layer and target group [T, n·R], du scratch for the
	// widest group, and the sink of the frozen RMSNorm weights' gradients [H]
	lu       [][loraNumGroups]kernels.Tensor
	ldu      kernels.Tensor
	normSink kernels.Tensor
	frozen   tensors // the base's gradient tensors under LoRA: only the norms', all at normSink

	// the current batch; maxLen: its longest sequence (attention's launch bound)
	tokens, seqs, maxLen int

	// The head's rows (head.go): every token of the batch (segs nil, hr = tokens), or after ForwardFrom
	// or GradFrom only the rows predicting the wanted tokens, hr of them in order: segs says where each
	// sequence's run of them lies in the batch and in that order. Their xf rows are copied into rows
	// [0, hr) of tmp, and their ∂L/∂xf written to rows [0, hr) of dx, both free between the layers'
	// forward and backward.
	hr       int
	segs     []headSeg
	hostSegs []headSeg // segs' backing array, reused
}

// headSeg is one sequence's run of head rows: n rows from row `from` of the batch, at head row `to`.
type headSeg struct{ from, to, n int }

// layerActs is what one layer's forward keeps for its backward.
//
// Not kept, as llm.c recomputes GeLU: the normed inputs ln1 = rmsnorm(x)·w and ln2 = rmsnorm(xmid)·w
// [T, H], and act = silu(gate)·up [T, I], the down projection's input. The forward writes them into
// shared scratch that is free until the backward (ln1 and ln2 into dln, act into dact); the backward
// recomputes each from what is kept, with the same op on the same inputs — the same bits, as
// AddRMSNormFwd's y is RMSNormFwd's of its sum (the conformance suite's add_rmsnorm) — into scratch
// that is free at that point (the norms into tmp, act into dgate). Three elementwise ops per layer spare
// about a third of a Qwen2.5 layer's activations.
type layerActs struct {
	rstd1, rstd2 kernels.Tensor // [T]
	q, attn      kernels.Tensor // [T, Hq, D] (q after RoPE)
	k, v         kernels.Tensor // [T, KVH, D] (k after RoPE)
	lse          kernels.Tensor // [T, Hq]
	xmid         kernels.Tensor // residual after attention [T, H]
	gate, up     kernels.Tensor // [T, I]
}

// arenaSlot is one tensor of an arena plan.
type arenaSlot struct {
	dst  *kernels.Tensor
	dt   kernels.DType
	dims []int
}

// arenaSlots lists the training arena's tensors: activations in act, statistics in float32.
func (c Config) arenaSlots(a *Activations, T, S int, act kernels.DType) []arenaSlot {
	h, q, kv, in, v := c.Hidden, c.Heads, c.KVHeads, c.Intermediate, c.Vocab
	d := c.HeadDim
	var slots []arenaSlot
	f := func(dst *kernels.Tensor, dims ...int) { slots = append(slots, arenaSlot{dst, act, dims}) }
	st := func(dst *kernels.Tensor, dims ...int) { slots = append(slots, arenaSlot{dst, kernels.F32, dims}) }
	a.xs = make([]kernels.Tensor, c.Layers+1)
	a.layers = make([]layerActs, c.Layers)
	for i := range a.xs {
		f(&a.xs[i], T, h)
	}
	for i := range a.layers {
		l := &a.layers[i]
		st(&l.rstd1, T)
		f(&l.q, T, q, d)
		f(&l.k, T, kv, d)
		f(&l.v, T, kv, d)
		f(&l.attn, T, q, d)
		st(&l.lse, T, q)
		f(&l.xmid, T, h)
		st(&l.rstd2, T)
		f(&l.gate, T, in)
		f(&l.up, T, in)
	}
	f(&a.xf, T, h)
	st(&a.rstdf, T)
	f(&a.logits, c.headChunk(T, act), v)
	st(&a.lseLogits, T)
	st(&a.logp, T)
	st(&a.coef, T)
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
	i := func(dst *kernels.Tensor, dims ...int) { slots = append(slots, arenaSlot{dst, kernels.I32, dims}) }
	i(&a.ids, T)
	i(&a.targets, T)
	i(&a.pos, T)
	i(&a.cu, S+1)
	return slots
}

// arenaDTypes are the dtypes of an arena's slots, in order of first use: one allocation each.
func arenaDTypes(slots []arenaSlot) []kernels.DType {
	var dts []kernels.DType
	for _, s := range slots {
		if !slices.Contains(dts, s.dt) {
			dts = append(dts, s.dt)
		}
	}
	return dts
}

// arenaLen is the elements of dtype dt an arena needs, every region starting 16-element aligned.
func arenaLen(slots []arenaSlot, dt kernels.DType) int {
	n := 0
	for _, x := range slots {
		if x.dt != dt {
			continue
		}
		m := 1
		for _, d := range x.dims {
			m *= d
		}
		n += (m + 15) &^ 15
	}
	return n
}

// arenaBytes is an arena's bytes per dtype, and their sum.
func arenaBytes(slots []arenaSlot) (map[kernels.DType]int64, int64) {
	by := map[kernels.DType]int64{}
	var total int64
	for _, dt := range arenaDTypes(slots) {
		b := int64(arenaLen(slots, dt)) * int64(dt.Size())
		by[dt] = b
		total += b
	}
	return by, total
}

// allocArena allocates one buffer per dtype and points each slot at its region, in order.
func allocArena(d *kernels.Device, slots []arenaSlot) ([]kernels.Tensor, error) {
	var bufs []kernels.Tensor
	for _, dt := range arenaDTypes(slots) {
		buf, err := d.Alloc(dt, max(arenaLen(slots, dt), 1))
		if err != nil {
			for _, b := range bufs {
				d.Free(b)
			}
			return nil, err
		}
		bufs = append(bufs, buf)
		off := 0
		for _, s := range slots {
			if s.dt != dt {
				continue
			}
			n := 1
			for _, x := range s.dims {
				n *= x
			}
			*s.dst = buf.MustSlice(off, off+n).MustReshape(s.dims...)
			off += (n + 15) &^ 15
		}
	}
	return bufs, nil
}

// ActivationBytes is the size of the training arena for maxTokens tokens in maxSeqs sequences at
// precision p.
func (c Config) ActivationBytes(maxTokens, maxSeqs int, p Precision) int64 {
	return c.LoRAActivationBytes(maxTokens, maxSeqs, p, nil)
}

// LoRAActivationBytes is ActivationBytes with the adapter activations of lc (none when nil).
func (c Config) LoRAActivationBytes(maxTokens, maxSeqs int, p Precision, lc *LoRAConfig) int64 {
	var a Activations
	_, total := arenaBytes(c.activationSlots(&a, maxTokens, maxSeqs, p.Act(), lc))
	return total
}

func (c Config) activationSlots(a *Activations, T, S int, act kernels.DType, lc *LoRAConfig) []arenaSlot {
	return append(c.arenaSlots(a, T, S, act), c.loraSlots(a, lc, T, act)...)
}

// NewActivations allocates the arena for batches of up to maxTokens tokens in up to maxSeqs sequences,
// in the model's precision.
func (m *Model) NewActivations(maxTokens, maxSeqs int) (*Activations, error) {
	if maxTokens < 1 || maxSeqs < 1 || maxSeqs > maxTokens {
		return nil, fmt.Errorf("model: activations for %d tokens in %d sequences: want 1 ≤ sequences ≤ tokens", maxTokens, maxSeqs)
	}
	a := &Activations{MaxTokens: maxTokens, MaxSeqs: maxSeqs}
	var err error
	var lc *LoRAConfig
	if m.lora != nil {
		lc = &m.lora.Config
	}
	if a.bufs, err = allocArena(m.dev, m.Config.activationSlots(a, maxTokens, maxSeqs, m.opts.Precision.Act(), lc)); err != nil {
		return nil, fmt.Errorf("model: activation arena: %w", err)
	}
	if lc != nil {
		a.frozen = frozenGrads(m.Config, a.normSink) // resolved once: a backward pass allocates nothing
	}
	a.hostIDs = make([]int32, maxTokens)
	a.hostTargets = make([]int32, maxTokens)
	a.hostPos = make([]int32, maxTokens)
	a.hostCu = make([]int32, maxSeqs+1)
	return a, nil
}

// Free releases the arena.
func (a *Activations) Free() {
	if a == nil {
		return
	}
	for _, b := range a.bufs {
		b.Device().Free(b)
	}
	a.bufs = nil
}

// Tokens is the number of tokens of the current batch.
func (a *Activations) Tokens() int { return a.tokens }

// rows is the first T rows of an arena tensor: the current batch's view.
func rows(t kernels.Tensor, T int) kernels.Tensor { return t.MustSlice(0, T) }

// flat2 views [T, A, B] as [T, A·B], for matrix products over heads.
func flat2(t kernels.Tensor) kernels.Tensor {
	return t.MustReshape(t.Dim(0), t.Len()/max(t.Dim(0), 1))
}

// flatAll views t as one dimension.
func flatAll(t kernels.Tensor) kernels.Tensor { return t.MustReshape(t.Len()) }
