package kernels

import "math"

// Attention is the causal self-attention forward over S packed sequences of T tokens in all.
//
//	Q:         [T, H, D]
//	K, V:      [T, KVH, D]   (H % KVH == 0; query head h uses kv head h / (H/KVH))
//	Out:       [T, H, D]
//	LSE:       [T, H]        logsumexp of the scaled scores, for the backward; may be a zero Tensor
//	CuSeqlens: I32 [S+1]     sequence s is tokens [CuSeqlens[s], CuSeqlens[s+1])
//
// Scale multiplies q·k, usually 1/√D. Tokens attend to themselves and earlier tokens of their own
// sequence only. Q, K, V and Out are each F32 or BF16 (scores, softmax and sums are float32); LSE is F32.
//
// MaxLen is at least the longest sequence's length (≥ 1 when T > 0; a larger bound is allowed), as the
// caller that packed the batch knows it (ref.MaxLen computes it): it sizes a GPU's launch, so that
// CuSeqlens is never read back to the host and the op can be captured in a graph. A sequence longer than
// MaxLen, like any other bad CuSeqlens, is an error: at the call on the CPU, at the next synchronisation
// (Sync, a download) on a GPU.
type Attention struct {
	Q, K, V, Out, LSE, CuSeqlens Tensor
	Scale                        float32
	MaxLen                       int
}

// AttentionGrad is the backward of Attention: DQ, DK, DV (shaped as Q, K, V) accumulate (+=) the
// gradients of ⟨DOut, Out⟩, from the forward's Out and LSE (both required). Every tensor but LSE (F32)
// is F32 or BF16; a BF16 gradient is accumulated in float32 and rounded once per call.
type AttentionGrad struct {
	Q, K, V, Out, LSE, DOut, DQ, DK, DV, CuSeqlens Tensor
	Scale                                          float32
	MaxLen                                         int // as Attention's
}

// KVCache is one layer's paged cache: K and V are each [n_blocks, block_size, KVH, D], both F32 or both
// BF16 (half the bytes; appends round to nearest even). Token slot b·block_size + o is offset o of block b.
type KVCache struct {
	K, V Tensor
}

// attnDims derives T, H, KVH, D from q [T, H, D] and k [T, KVH, D].
func attnDims(op string, q, k Tensor) (t, h, kvh, dim int, err error) {
	if q.Rank() != 3 || k.Rank() != 3 {
		return 0, 0, 0, 0, opErr(op, "q %s and k %s must be rank 3: [T, H, D] and [T, KVH, D]", q, k)
	}
	t, h, dim, kvh = q.Dim(0), q.Dim(1), q.Dim(2), k.Dim(1)
	if k.Dim(0) != t || k.Dim(2) != dim {
		return 0, 0, 0, 0, opErr(op, "k %s does not match q %s", k, q)
	}
	if h == 0 || kvh == 0 || dim == 0 || h%kvh != 0 {
		return 0, 0, 0, 0, opErr(op, "heads %d are not a multiple of kv heads %d (head_dim %d)", h, kvh, dim)
	}
	return t, h, kvh, dim, nil
}

// checkMaxLen: MaxLen crosses the ABI as an int32 (the library checks the rest, with the same message on
// every device).
func checkMaxLen(op string, maxLen int) error {
	if maxLen > math.MaxInt32 {
		return opErr(op, "max_len %d does not fit int32", maxLen)
	}
	return nil
}

// attnPairs is the number of (query, key) pairs per head of the causal triangle: Σ_s L(L+1)/2, read
// from CuSeqlens when the memory is host visible (the profiler's FLOP count only).
func (d *Device) attnPairs(cu Tensor, t int) float64 {
	if !d.hostVisible {
		return float64(t) * float64(t+1) / 2
	}
	c := cu.I32()
	var p float64
	for s := 0; s+1 < len(c); s++ {
		l := float64(c[s+1] - c[s])
		p += l * (l + 1) / 2
	}
	return p
}

// AttentionFwd computes p.Out (and p.LSE when given) from p.Q, p.K, p.V.
func (d *Device) AttentionFwd(p Attention) error {
	const op = "attention_fwd"
	t, h, kvh, dim, err := attnDims(op, p.Q, p.K)
	if err != nil {
		return err
	}
	if err := firstErr(d.checkFloat(op, "q", p.Q, 0), d.checkFloat(op, "k", p.K, 0), d.checkFloat(op, "v", p.V, t*kvh*dim),
		d.checkFloat(op, "out", p.Out, t*h*dim), d.checkOpt(op, "lse", p.LSE, F32, t*h),
		d.check(op, "cu_seqlens", p.CuSeqlens, I32, 1), checkMaxLen(op, p.MaxLen)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[attentionFwdArgs](d)
	a.maxLen = int32(p.MaxLen)
	a.nTokens, a.nSeqs, a.nHeads, a.nKVHeads, a.headDim = int32(t), int32(p.CuSeqlens.Len()-1), int32(h), int32(kvh), int32(dim)
	a.scale = p.Scale
	a.cuSeqlens, a.q, a.k, a.v, a.out, a.lse = p.CuSeqlens.addr(), p.Q.addr(), p.K.addr(), p.V.addr(), p.Out.addr(), p.LSE.addr()
	a.qDT, a.kDT, a.vDT, a.outDT = p.Q.dtype, p.K.dtype, p.V.dtype, p.Out.dtype
	pairs := d.attnPairs(p.CuSeqlens, t)
	by := (p.Q.dtype.Size()+p.Out.dtype.Size())*h*dim + (p.K.dtype.Size()+p.V.dtype.Size())*kvh*dim + 4*h
	return d.run(opAttentionFwd, 4*pairs*float64(h*dim), float64(t)*float64(by))
}

// AttentionBwd accumulates p.DQ, p.DK, p.DV from p.DOut.
func (d *Device) AttentionBwd(p AttentionGrad) error {
	const op = "attention_bwd"
	t, h, kvh, dim, err := attnDims(op, p.Q, p.K)
	if err != nil {
		return err
	}
	nq, nk := t*h*dim, t*kvh*dim
	if err := firstErr(d.checkFloat(op, "q", p.Q, 0), d.checkFloat(op, "k", p.K, 0), d.checkFloat(op, "v", p.V, nk),
		d.checkFloat(op, "out", p.Out, nq), d.check(op, "lse", p.LSE, F32, t*h), d.checkFloat(op, "dout", p.DOut, nq),
		d.checkFloat(op, "dq", p.DQ, nq), d.checkFloat(op, "dk", p.DK, nk), d.checkFloat(op, "dv", p.DV, nk),
		d.check(op, "cu_seqlens", p.CuSeqlens, I32, 1), checkMaxLen(op, p.MaxLen)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[attentionBwdArgs](d)
	a.maxLen = int32(p.MaxLen)
	a.nTokens, a.nSeqs, a.nHeads, a.nKVHeads, a.headDim = int32(t), int32(p.CuSeqlens.Len()-1), int32(h), int32(kvh), int32(dim)
	a.scale = p.Scale
	a.cuSeqlens, a.q, a.k, a.v, a.out, a.lse, a.dout = p.CuSeqlens.addr(), p.Q.addr(), p.K.addr(), p.V.addr(), p.Out.addr(), p.LSE.addr(), p.DOut.addr()
	a.dq, a.dk, a.dv = p.DQ.addr(), p.DK.addr(), p.DV.addr()
	a.qDT, a.kDT, a.vDT, a.outDT, a.doutDT = p.Q.dtype, p.K.dtype, p.V.dtype, p.Out.dtype, p.DOut.dtype
	a.dqDT, a.dkDT, a.dvDT = p.DQ.dtype, p.DK.dtype, p.DV.dtype
	pairs := d.attnPairs(p.CuSeqlens, t)
	// five products of 2·D FLOPs per pair and head (S, dP, dV, dK, dQ)
	return d.run(opAttentionBwd, 10*pairs*float64(h*dim), 4*float64(t)*float64(5*h*dim+4*kvh*dim+h))
}

// cacheDims derives n_blocks, block_size, KVH, D from the cache.
func cacheDims(op string, c KVCache) (nBlocks, blockSize, kvh, dim int, err error) {
	if c.K.Rank() != 4 || c.V.Rank() != 4 {
		return 0, 0, 0, 0, opErr(op, "cache K %s and V %s must be rank 4: [n_blocks, block_size, KVH, D]", c.K, c.V)
	}
	for i := 0; i < 4; i++ {
		if c.K.Dim(i) != c.V.Dim(i) {
			return 0, 0, 0, 0, opErr(op, "cache K %s and V %s differ", c.K, c.V)
		}
	}
	if c.K.dtype != c.V.dtype {
		return 0, 0, 0, 0, opErr(op, "cache K %s and V %s differ in dtype", c.K, c.V)
	}
	return c.K.Dim(0), c.K.Dim(1), c.K.Dim(2), c.K.Dim(3), nil
}

// KVAppend writes each token's keys and values into the cache at its slot.
//
//	k, v:  [T, KVH, D], both F32 or both BF16 (converted to the cache's dtype)
//	slots: I32 [T], slot = block·block_size + offset; a negative slot skips the token
func (d *Device) KVAppend(c KVCache, k, v, slots Tensor) error {
	const op = "kv_append"
	nb, bs, kvh, dim, err := cacheDims(op, c)
	if err != nil {
		return err
	}
	t := slots.Len()
	if err := firstErr(d.checkFloat(op, "cache K", c.K, 1), d.checkFloat(op, "cache V", c.V, 1),
		d.check(op, "slots", slots, I32, 0), d.checkFloat(op, "k", k, t*kvh*dim), d.check(op, "v", v, k.dtype, t*kvh*dim)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[kvAppendArgs](d)
	a.nTokens, a.nKVHeads, a.headDim, a.blockSize, a.nBlocks = int32(t), int32(kvh), int32(dim), int32(bs), int32(nb)
	a.slots, a.k, a.v, a.kCache, a.vCache = slots.addr(), k.addr(), v.addr(), c.K.addr(), c.V.addr()
	a.kvDT, a.cacheDT = k.dtype, c.K.dtype
	return d.run(opKVAppend, 0, 2*float64((k.dtype.Size()+c.K.dtype.Size())*t*kvh*dim)+4*float64(t))
}

// RoPEAppend is a generation step's attention inputs in one op: the biases added (all three or none),
// q and k rotated in place (RoPE forward, as RoPE with rotDim), then k and v appended to the cache at
// their slots (as KVAppend; a negative slot skips the token). The bits are those of BiasAdd, RoPE and
// KVAppend in that order; q, k and v hold their results too (prefill attends over them). On a GPU it is
// one kernel where the six ops were six launches.
type RoPEAppend struct {
	Q          Tensor // [T, H, D], F32 or BF16
	K, V       Tensor // [T, KVH, D], F32 or BF16 (both the same)
	BQ, BK, BV Tensor // optional [H·D], [KVH·D], [KVH·D], one dtype
	Pos        Tensor // I32 [T]
	InvFreq    Tensor // F32 [RotDim/2]
	RotDim     int
	Cache      KVCache
	Slots      Tensor // I32 [T]
}

// RoPEAppend runs a RoPEAppend; see the type.
func (d *Device) RoPEAppend(p RoPEAppend) error {
	const op = "rope_append"
	nb, bs, kvh, dim, err := cacheDims(op, p.Cache)
	if err != nil {
		return err
	}
	if p.Q.Rank() != 3 || p.Q.Dim(2) != dim {
		return opErr(op, "q %s must be [T, H, %d]", p.Q, dim)
	}
	t, h := p.Q.Dim(0), p.Q.Dim(1)
	if p.RotDim <= 0 || p.RotDim%2 != 0 || p.RotDim > dim {
		return opErr(op, "RotDim = %d must be even and in [2, head_dim = %d]", p.RotDim, dim)
	}
	if err := firstErr(d.checkFloat(op, "cache K", p.Cache.K, 1), d.checkFloat(op, "cache V", p.Cache.V, 1),
		d.checkFloat(op, "k", p.K, t*kvh*dim), d.check(op, "v", p.V, p.K.dtype, t*kvh*dim),
		d.check(op, "pos", p.Pos, I32, t), d.check(op, "slots", p.Slots, I32, t),
		d.check(op, "invFreq", p.InvFreq, F32, p.RotDim/2)); err != nil {
		return err
	}
	if (h+kvh)*dim > maxI32 {
		return opErr(op, "q %s and k %s: (H + KVH)·D exceeds the int32 range", p.Q, p.K)
	}
	biased := p.BQ.Valid()
	if biased != p.BK.Valid() || biased != p.BV.Valid() {
		return opErr(op, "biases BQ %s, BK %s and BV %s: all three or none", p.BQ, p.BK, p.BV)
	}
	if biased {
		if err := firstErr(d.checkFloat(op, "BQ", p.BQ, h*dim), d.check(op, "BK", p.BK, p.BQ.dtype, kvh*dim),
			d.check(op, "BV", p.BV, p.BQ.dtype, kvh*dim)); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ropeAppendArgs](d)
	a.nTokens, a.nHeads, a.nKVHeads, a.headDim, a.rotDim = int32(t), int32(h), int32(kvh), int32(dim), int32(p.RotDim)
	a.blockSize, a.nBlocks = int32(bs), int32(nb)
	a.qDT, a.kvDT, a.biasDT, a.cacheDT = p.Q.dtype, p.K.dtype, p.BQ.dtype, p.Cache.K.dtype
	a.pos, a.invFreq, a.slots = p.Pos.addr(), p.InvFreq.addr(), p.Slots.addr()
	a.q, a.k, a.v, a.bq, a.bk, a.bv = p.Q.addr(), p.K.addr(), p.V.addr(), p.BQ.addr(), p.BK.addr(), p.BV.addr()
	a.kCache, a.vCache = p.Cache.K.addr(), p.Cache.V.addr()
	qe, kve := float64(t*h*dim), float64(t*kvh*dim)
	bytes := 2*float64(p.Q.dtype.Size())*qe + 4*float64(p.K.dtype.Size())*kve + 2*float64(p.Cache.K.dtype.Size())*kve + 8*float64(t)
	if biased {
		bytes += float64(p.BQ.dtype.Size()) * float64((h+2*kvh)*dim)
	}
	return d.run(opRoPEAppend, 3*(qe+kve)+qe+2*kve, bytes)
}

// DecodeAttention attends one query token per sequence to its cached tokens (the token's own K/V
// already appended).
//
//	out, q:     [S, H, D] (F32 or BF16 each)
//	blockTable: I32 [S, max_blocks], block ids of sequence s in order
//	seqLens:    I32 [S], cached tokens of sequence s, 1..max_blocks·block_size
func (d *Device) DecodeAttention(out, q Tensor, c KVCache, blockTable, seqLens Tensor, scale float32) error {
	const op = "decode_attention"
	nb, bs, kvh, dim, err := cacheDims(op, c)
	if err != nil {
		return err
	}
	if q.Rank() != 3 || q.Dim(2) != dim {
		return opErr(op, "q %s must be [S, H, %d]", q, dim)
	}
	s, h := q.Dim(0), q.Dim(1)
	if blockTable.Rank() != 2 || blockTable.Dim(0) != s {
		return opErr(op, "block table %s must be [%d, max_blocks]", blockTable, s)
	}
	if err := firstErr(d.checkFloat(op, "cache K", c.K, 1), d.checkFloat(op, "cache V", c.V, 1), d.checkFloat(op, "q", q, 0),
		d.checkFloat(op, "out", out, s*h*dim), d.check(op, "block table", blockTable, I32, 0),
		d.check(op, "seq_lens", seqLens, I32, s)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[decodeAttentionArgs](d)
	a.nSeqs, a.nHeads, a.nKVHeads, a.headDim = int32(s), int32(h), int32(kvh), int32(dim)
	a.blockSize, a.nBlocks, a.maxBlks, a.scale = int32(bs), int32(nb), int32(blockTable.Dim(1)), scale
	a.blockTable, a.seqLens, a.q, a.kCache, a.vCache, a.out = blockTable.addr(), seqLens.addr(), q.addr(), c.K.addr(), c.V.addr(), out.addr()
	a.qDT, a.cacheDT, a.outDT = q.dtype, c.K.dtype, out.dtype
	var toks float64
	if d.hostVisible {
		for _, l := range seqLens.I32()[:s] {
			toks += float64(l)
		}
	} else {
		toks = float64(s * bs * blockTable.Dim(1))
	}
	return d.run(opDecodeAttention, 4*toks*float64(h*dim), 2*float64(c.K.dtype.Size())*toks*float64(kvh*dim)+
		float64(q.dtype.Size()+out.dtype.Size())*float64(s*h*dim))
}
