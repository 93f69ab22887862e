package model

import (
	"fmt"

	"github.com/serl-go/serl/kernels"
)

// KVCache is the paged key/value cache of generation: for each layer one pool of fixed-size blocks,
// [NumBlocks, BlockSize, KVHeads, HeadDim] for keys and the same for values, carved from one
// allocation in the model's activation dtype. Which block holds which sequence's tokens is the
// caller's business (engine/generate).
type KVCache struct {
	NumBlocks, BlockSize int
	data                 kernels.Tensor
	layers               []kernels.KVCache
}

// KVCacheBytes is the size of a cache of numBlocks blocks of blockSize tokens for configuration c at
// precision p.
func (c Config) KVCacheBytes(numBlocks, blockSize int, p Precision) int64 {
	return int64(p.Act().Size()) * 2 * int64(c.Layers) * int64(numBlocks) * int64(blockSize) * int64(c.KVHeads) * int64(c.HeadDim)
}

// NewKVCache allocates a cache of numBlocks blocks of blockSize tokens.
func (m *Model) NewKVCache(numBlocks, blockSize int) (*KVCache, error) {
	if numBlocks < 1 || blockSize < 1 {
		return nil, fmt.Errorf("model: KV cache of %d blocks of %d tokens", numBlocks, blockSize)
	}
	c := m.Config
	per := numBlocks * blockSize * c.KVHeads * c.HeadDim
	data, err := m.dev.Alloc(m.opts.Precision.Act(), 2*c.Layers*per)
	if err != nil {
		return nil, fmt.Errorf("model: KV cache (%d bytes): %w", c.KVCacheBytes(numBlocks, blockSize, m.opts.Precision), err)
	}
	kv := &KVCache{NumBlocks: numBlocks, BlockSize: blockSize, data: data, layers: make([]kernels.KVCache, c.Layers)}
	for l := range kv.layers {
		k := data.MustSlice(2*l*per, (2*l+1)*per).MustReshape(numBlocks, blockSize, c.KVHeads, c.HeadDim)
		v := data.MustSlice((2*l+1)*per, (2*l+2)*per).MustReshape(numBlocks, blockSize, c.KVHeads, c.HeadDim)
		kv.layers[l] = kernels.KVCache{K: k, V: v}
	}
	return kv, nil
}

// Free releases the cache.
func (kv *KVCache) Free() {
	if kv != nil && kv.data.Valid() {
		kv.data.Device().Free(kv.data)
	}
}

// CopyBlock copies block src to block dst in every layer (copy-on-write of a shared, partly filled
// block when sequences that share a prompt diverge).
func (kv *KVCache) CopyBlock(dst, src int) error {
	if dst < 0 || src < 0 || dst >= kv.NumBlocks || src >= kv.NumBlocks {
		return fmt.Errorf("model: copy KV block %d to %d of %d", src, dst, kv.NumBlocks)
	}
	d := kv.data.Device()
	for _, l := range kv.layers {
		for _, t := range []kernels.Tensor{l.K, l.V} {
			if err := d.Copy(t.MustSlice(dst, dst+1), t.MustSlice(src, src+1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Workspace holds the buffers of generation: prefill of up to MaxTokens packed prompt tokens and
// decode of up to MaxSeqs sequences, each with a block table of MaxBlocks entries. Activations are in
// the model's activation dtype; the logits, which the sampler reads, are float32.
type Workspace struct {
	MaxTokens, MaxSeqs, MaxBlocks int

	bufs []kernels.Tensor // one allocation per dtype

	x, ln, tmp                kernels.Tensor // [T, H]
	q, attn                   kernels.Tensor // [T, Hq, D]
	kvPair                    kernels.Tensor // [2, T, KVH, D]: k then v, one batched product's output
	k, v                      kernels.Tensor // [T, KVH, D], kvPair's halves
	guPair                    kernels.Tensor // [2, T, I]: gate then up, likewise
	gate, up                  kernels.Tensor // [T, I], guPair's halves
	last                      kernels.Tensor // [S, H] last hidden state of each sequence
	logits                    kernels.Tensor // F32 [S, V]
	ids, pos                  kernels.Tensor // I32 [T]
	slots                     kernels.Tensor // I32 [T]
	cu, lastIdx               kernels.Tensor // I32 [S+1], [S]
	blockTable                kernels.Tensor // I32 [S, MaxBlocks]
	seqLens                   kernels.Tensor // I32 [S]
	lu                        kernels.Tensor // [T, R] LoRA scratch x·Aᵀ (invalid without adapters)
	hostCu, hostLast, hostPos []int32
	maxLen                    int // the current prefill's longest prompt (attention's launch bound)
}

// WorkspaceBytes is the size of a generation workspace at precision p.
func (c Config) WorkspaceBytes(maxTokens, maxSeqs, maxBlocks int, p Precision) int64 {
	var ws Workspace
	_, total := arenaBytes(c.workspaceSlots(&ws, maxTokens, maxSeqs, maxBlocks, p.Act()))
	return total
}

func (c Config) workspaceSlots(ws *Workspace, T, S, B int, act kernels.DType) []arenaSlot {
	var slots []arenaSlot
	f := func(dst *kernels.Tensor, dims ...int) { slots = append(slots, arenaSlot{dst, act, dims}) }
	i := func(dst *kernels.Tensor, dims ...int) { slots = append(slots, arenaSlot{dst, kernels.I32, dims}) }
	f(&ws.x, T, c.Hidden)
	f(&ws.ln, T, c.Hidden)
	f(&ws.tmp, T, c.Hidden)
	f(&ws.q, T, c.Heads, c.HeadDim)
	f(&ws.attn, T, c.Heads, c.HeadDim)
	f(&ws.kvPair, 2, T, c.KVHeads, c.HeadDim)
	f(&ws.guPair, 2, T, c.Intermediate)
	f(&ws.last, S, c.Hidden)
	slots = append(slots, arenaSlot{&ws.logits, kernels.F32, []int{S, c.Vocab}})
	i(&ws.ids, T)
	i(&ws.pos, T)
	i(&ws.slots, T)
	i(&ws.cu, S+1)
	i(&ws.lastIdx, S)
	i(&ws.blockTable, S, B)
	i(&ws.seqLens, S)
	return slots
}

// NewWorkspace allocates generation buffers. maxTokens bounds a prefill batch and must be at least
// maxSeqs (a decode step is a batch of maxSeqs single tokens).
func (m *Model) NewWorkspace(maxTokens, maxSeqs, maxBlocks int) (*Workspace, error) {
	if maxSeqs < 1 || maxTokens < maxSeqs || maxBlocks < 1 {
		return nil, fmt.Errorf("model: workspace for %d tokens, %d sequences, %d blocks each", maxTokens, maxSeqs, maxBlocks)
	}
	ws := &Workspace{MaxTokens: maxTokens, MaxSeqs: maxSeqs, MaxBlocks: maxBlocks}
	var err error
	slots := m.Config.workspaceSlots(ws, maxTokens, maxSeqs, maxBlocks, m.opts.Precision.Act())
	if m.lora != nil {
		slots = append(slots, arenaSlot{&ws.lu, m.opts.Precision.Act(), []int{maxTokens, m.lora.Config.scratchCols()}})
	}
	if ws.bufs, err = allocArena(m.dev, slots); err != nil {
		return nil, fmt.Errorf("model: generation workspace: %w", err)
	}
	half := func(t kernels.Tensor, i int) kernels.Tensor { return t.MustSlice(i, i+1).MustReshape(t.Shape()[1:]...) }
	ws.k, ws.v, ws.gate, ws.up = half(ws.kvPair, 0), half(ws.kvPair, 1), half(ws.guPair, 0), half(ws.guPair, 1)
	ws.hostCu = make([]int32, maxSeqs+1)
	ws.hostLast = make([]int32, maxSeqs)
	ws.hostPos = make([]int32, maxTokens)
	return ws, nil
}

// Free releases the workspace.
func (ws *Workspace) Free() {
	if ws == nil {
		return
	}
	for _, b := range ws.bufs {
		b.Device().Free(b)
	}
	ws.bufs = nil
}

// Logits is the [S, V] logits of the last Prefill or Decode, one row per sequence.
func (ws *Workspace) Logits(S int) kernels.Tensor { return ws.logits.MustSlice(0, S) }

// Prefill runs packed prompts (sequence s is ids[cu[s]:cu[s+1]], positions from 0), writes their keys
// and values to the cache at slots (one per token; −1 skips), and leaves each prompt's last-token
// logits in ws.Logits(len(seqLens)).
func (m *Model) Prefill(ws *Workspace, kv *KVCache, ids []int32, seqLens []int, slots []int32) error {
	T, S := len(ids), len(seqLens)
	if T == 0 || T > ws.MaxTokens || S == 0 || S > ws.MaxSeqs || len(slots) != T {
		return fmt.Errorf("model: prefill of %d tokens in %d sequences with %d slots (workspace: %d tokens, %d sequences)",
			T, S, len(slots), ws.MaxTokens, ws.MaxSeqs)
	}
	// positions restart in each prompt; the last token's index picks the row whose logits we need
	pos := ws.hostPos[:T]
	t := 0
	ws.hostCu[0], ws.maxLen = 0, 0
	for s, n := range seqLens {
		if n < 1 || t+n > T {
			return fmt.Errorf("model: prefill sequence %d of length %d does not fit %d tokens", s, n, T)
		}
		for i := 0; i < n; i++ {
			pos[i+t] = int32(i)
		}
		t += n
		ws.maxLen = max(ws.maxLen, n)
		ws.hostCu[s+1] = int32(t)
		ws.hostLast[s] = int32(t - 1)
	}
	if t != T {
		return fmt.Errorf("model: prefill sequence lengths add up to %d, not %d", t, T)
	}
	if err := uploadI32(i32Upload{ws.ids, ids}, i32Upload{ws.pos, pos}, i32Upload{ws.slots, slots},
		i32Upload{ws.cu, ws.hostCu[:S+1]}, i32Upload{ws.lastIdx, ws.hostLast[:S]}); err != nil {
		return err
	}
	return m.inferPass(ws, kv, T, S, true)
}

// Decode runs one new token per sequence: ids[s] at position pos[s], its key and value written at
// slots[s]; sequence s then attends to its seqLens[s] cached tokens (including the new one) through
// blockTable[s·MaxBlocks …]. Leaves the logits in ws.Logits(S).
func (m *Model) Decode(ws *Workspace, kv *KVCache, ids, pos, slots, blockTable, seqLens []int32) error {
	S := len(ids)
	if S == 0 || S > ws.MaxSeqs || len(pos) != S || len(slots) != S || len(seqLens) != S || len(blockTable) != S*ws.MaxBlocks {
		return fmt.Errorf("model: decode of %d sequences: inconsistent inputs (workspace: %d sequences, %d blocks each)", S, ws.MaxSeqs, ws.MaxBlocks)
	}
	if err := uploadI32(i32Upload{ws.ids, ids}, i32Upload{ws.pos, pos}, i32Upload{ws.slots, slots},
		i32Upload{ws.blockTable, blockTable}, i32Upload{ws.seqLens, seqLens}); err != nil {
		return err
	}
	return m.inferPass(ws, kv, S, S, false)
}

// DecodeInputs are the device tensors a decode step of S sequences reads, each I32: IDs, Pos, Slots,
// SeqLens [S] and BlockTable [S, MaxBlocks], as Decode describes them. A caller that keeps them on the
// device between steps (engine/generate advances them with kernels.DecodeAdvance) fills them itself and
// runs DecodeResident; a Prefill overwrites them.
type DecodeInputs struct {
	IDs, Pos, Slots, SeqLens, BlockTable kernels.Tensor
}

// DecodeInputs returns the workspace's decode inputs for S ≤ MaxSeqs sequences.
func (ws *Workspace) DecodeInputs(S int) DecodeInputs {
	return DecodeInputs{IDs: ws.ids.MustSlice(0, S), Pos: ws.pos.MustSlice(0, S), Slots: ws.slots.MustSlice(0, S),
		SeqLens: ws.seqLens.MustSlice(0, S), BlockTable: ws.blockTable.MustSlice(0, S)}
}

// DecodeResident is Decode with its inputs already in ws.DecodeInputs(S): it copies nothing between
// host and device.
func (m *Model) DecodeResident(ws *Workspace, kv *KVCache, S int) error {
	if S < 1 || S > ws.MaxSeqs {
		return fmt.Errorf("model: decode of %d sequences (workspace: %d sequences)", S, ws.MaxSeqs)
	}
	return m.inferPass(ws, kv, S, S, false)
}

// i32Upload is host values for the leading elements of a tensor.
type i32Upload struct {
	dst kernels.Tensor
	src []int32
}

// uploadI32 stages a step's integer inputs; typed, so a decode step allocates nothing.
func uploadI32(us ...i32Upload) error {
	for _, u := range us {
		if len(u.src) == 0 { // a batch without head rows (ForwardFrom) has no targets
			continue
		}
		flat := u.dst.MustReshape(u.dst.Len())
		if err := kernels.Upload(flat.MustSlice(0, len(u.src)), u.src); err != nil {
			return err
		}
	}
	return nil
}

// inferPass runs T tokens through every layer: prefill attends causally within the packed prompts,
// decode attends to the cache; both append their keys and values to the cache.
func (m *Model) inferPass(ws *Workspace, kv *KVCache, T, S int, prefill bool) error {
	c := m.Config
	p := pass{d: m.dev}
	x, ln, tmp := ws.x.MustSlice(0, T), ws.ln.MustSlice(0, T), ws.tmp.MustSlice(0, T)
	q, k, v, attn := ws.q.MustSlice(0, T), ws.k.MustSlice(0, T), ws.v.MustSlice(0, T), ws.attn.MustSlice(0, T)
	gate, up := ws.gate.MustSlice(0, T), ws.up.MustSlice(0, T)
	pos, slots := ws.pos.MustSlice(0, T), ws.slots.MustSlice(0, T)
	eps, kvw := float32(c.RMSNormEps), c.KVHeads*c.HeadDim
	if p.err == nil {
		p.err = m.dev.EmbeddingFwd(x, m.w.embed, ws.ids.MustSlice(0, T))
	}
	var u [loraNumGroups]kernels.Tensor // LoRA's x·Aᵀ per target group, one scratch for all
	if m.lora != nil {
		if !ws.lu.Valid() {
			return fmt.Errorf("model: generation workspace allocated before the adapters were attached")
		}
		for g, w := range m.lora.width {
			u[g] = leading(ws.lu, T, w)
		}
	}
	// A layer's residual adds are fused into the norms after them (the MLP's into the next layer's, the
	// last layer's into the final norm), its q/k/v biases, RoPE and cache append are one op, and k and v,
	// gate and up are one batched product each: 10 launches a layer where there were 19, the same bits.
	for l := range m.w.layers {
		w, cache := &m.w.layers[l], kv.layers[l]
		if l == 0 {
			p.rmsnorm(ln, kernels.Tensor{}, x, w.ln1, eps)
		} else {
			p.addRMSNorm(x, ln, kernels.Tensor{}, x, tmp, w.ln1, eps) // x += the last layer's MLP output
		}
		// With LoRA adapters the biases go on right after the products, before the adapters' terms, in
		// the training forward's order; otherwise rope_append adds them.
		rb, pb := [3]kernels.Tensor{w.bq, w.bk, w.bv}, [3]kernels.Tensor{} // rope_append's biases, the products'
		if m.lora != nil {
			rb, pb = pb, rb
		}
		m.loraDown(&p, l, qkvGroup, ln, u[qkvGroup])
		p.linear(flat2(q), ln, w.wq, pb[0])
		m.loraUp(&p, l, 0, flat2(q), u[qkvGroup])
		p.linearPair(flatAll(ws.kvPair), ws.k.Len(), ln, w.kv, kvw)
		p.biasAdd(flat2(k), pb[1])
		m.loraUp(&p, l, 1, flat2(k), u[qkvGroup])
		p.biasAdd(flat2(v), pb[2])
		m.loraUp(&p, l, 2, flat2(v), u[qkvGroup])
		if p.err == nil {
			p.err = m.dev.RoPEAppend(kernels.RoPEAppend{Q: q, K: k, V: v, BQ: rb[0], BK: rb[1], BV: rb[2], Pos: pos, InvFreq: m.invFreq,
				RotDim: c.HeadDim, Cache: cache, Slots: slots})
		}
		if p.err == nil {
			if prefill {
				p.err = m.dev.AttentionFwd(kernels.Attention{Q: q, K: k, V: v, Out: attn, CuSeqlens: ws.cu.MustSlice(0, S+1),
					MaxLen: ws.maxLen, Scale: m.scale})
			} else {
				p.err = m.dev.DecodeAttention(attn, q, cache, ws.blockTable.MustSlice(0, S), ws.seqLens.MustSlice(0, S), m.scale)
			}
		}
		m.loraDown(&p, l, oGroup, flat2(attn), u[oGroup])
		p.linear(tmp, flat2(attn), w.wo, w.bo)
		m.loraUp(&p, l, 3, tmp, u[oGroup])
		p.addRMSNorm(x, ln, kernels.Tensor{}, x, tmp, w.ln2, eps)
		m.loraDown(&p, l, gateUpGroup, ln, u[gateUpGroup])
		p.linearPair(flatAll(ws.guPair), ws.gate.Len(), ln, w.gu, c.Intermediate)
		p.biasAdd(gate, w.bg)
		m.loraUp(&p, l, 4, gate, u[gateUpGroup])
		p.biasAdd(up, w.bu)
		m.loraUp(&p, l, 5, up, u[gateUpGroup])
		p.swiglu(gate, gate, up)
		m.loraDown(&p, l, downGroup, gate, u[downGroup])
		p.linear(tmp, gate, w.wd, w.bd)
		m.loraUp(&p, l, 6, tmp, u[downGroup])
	}
	lnS := ws.ln.MustSlice(0, S)
	if prefill {
		p.add(x, x, tmp)
		// The embedding op is a row gather: pick each prompt's last hidden state.
		last := ws.last.MustSlice(0, S)
		if p.err == nil {
			p.err = m.dev.EmbeddingFwd(last, x, ws.lastIdx.MustSlice(0, S))
		}
		p.rmsnorm(lnS, kernels.Tensor{}, last, m.w.norm, eps)
	} else {
		p.addRMSNorm(x, lnS, kernels.Tensor{}, x, tmp, m.w.norm, eps) // one token a sequence: S rows
	}
	p.matmul(kernels.MatMul{A: lnS, B: m.w.head, C: ws.logits.MustSlice(0, S), TransB: true, Alpha: 1})
	return p.err
}
