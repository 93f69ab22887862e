package kernels

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("attention", testAttention)
	register("attention_many_seqs", testAttentionManySeqs)
	register("attention_fd", testAttentionFD)
	register("attention_errors", testAttentionErrors)
	register("kv_decode", testKVDecode)
	register("kv_decode_errors", testKVDecodeErrors)
}

// packings are sequence lengths packed into one batch: one sequence, mixed lengths around the block
// sizes, empty sequences (first, middle, last), and one spanning several key blocks of 64.
var packings = [][]int{{37}, {1, 5, 17, 64, 3}, {0, 4, 0, 9, 0}, {150, 2}}

var headConfigs = [][2]int{{4, 4}, {4, 2}, {6, 1}, {1, 1}}

func cuSeqlens(lens []int) []int32 {
	cu := make([]int32, len(lens)+1)
	for i, l := range lens {
		cu[i+1] = cu[i] + int32(l)
	}
	return cu
}

// attnProblem is one random attention instance and its tensors' host data.
type attnProblem struct {
	cu             []int32
	t, h, kvh, dim int
	scale          float64
	q, k, v, dout  []float32
}

func newAttnProblem(h *harness, lens []int, nh, kvh, dim int, mag float64) attnProblem {
	cu := cuSeqlens(lens)
	t := int(cu[len(lens)])
	return attnProblem{cu: cu, t: t, h: nh, kvh: kvh, dim: dim, scale: 1 / math.Sqrt(float64(dim)),
		q: h.randn(t*nh*dim, mag), k: h.randn(t*kvh*dim, mag), v: h.randn(t*kvh*dim, 1), dout: h.randn(t*nh*dim, 1)}
}

func testAttention(t *testing.T, h *harness) {
	for _, lens := range packings {
		for _, hc := range headConfigs {
			// 128: Llama's and Qwen's larger models; 256: the widest head the CUDA kernels take
			for _, dim := range []int{1, 8, 17, 64, 128, 256} {
				name := fmt.Sprintf("lens=%v H=%d KVH=%d D=%d", lens, hc[0], hc[1], dim)
				// magnitude 2 gives scores of several units: exercises the running max and rescaling
				p := newAttnProblem(h, lens, hc[0], hc[1], dim, 2)
				T, nh, nkv := p.t, p.h, p.kvh
				q, k, v := h.f32(p.q, T, nh, dim), h.f32(p.k, T, nkv, dim), h.f32(p.v, T, nkv, dim)
				cu := h.i32(p.cu)
				out, lse := h.poisoned(T, nh, dim), h.poisoned(T, nh)
				require.NoError(t, h.d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}), name)
				wantOut, wantLSE := make([]float32, T*nh*dim), make([]float32, T*nh)
				ref.AttentionFwd(wantOut, wantLSE, p.q, p.k, p.v, p.cu, nh, nkv, dim, p.scale)
				gotOut := h.get(out)
				requireClose(t, name+" out", gotOut, wantOut, 1e-5)
				requireClose(t, name+" lse", h.get(lse), wantLSE, 1e-5)

				// without lse (inference), and with a max_len larger than needed: same output
				out2 := h.poisoned(T, nh, dim)
				require.NoError(t, h.d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out2, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu) + 37,
					Scale: float32(p.scale)}))
				require.Equal(t, gotOut, h.get(out2), name+" out without lse")

				// backward accumulates onto random prefills
				dq0, dk0, dv0 := h.randn(T*nh*dim, 1), h.randn(T*nkv*dim, 1), h.randn(T*nkv*dim, 1)
				dq, dk, dv := h.f32(dq0, T, nh, dim), h.f32(dk0, T, nkv, dim), h.f32(dv0, T, nkv, dim)
				require.NoError(t, h.d.AttentionBwd(AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: h.f32(p.dout, T, nh, dim),
					DQ: dq, DK: dk, DV: dv, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}), name)
				wq, wk, wv := append([]float32(nil), dq0...), append([]float32(nil), dk0...), append([]float32(nil), dv0...)
				ref.AttentionBwd(wq, wk, wv, p.q, p.k, p.v, p.dout, p.cu, nh, nkv, dim, p.scale)
				requireClose(t, name+" dq", h.get(dq), wq, 1e-5)
				requireClose(t, name+" dk", h.get(dk), wk, 1e-5)
				requireClose(t, name+" dv", h.get(dv), wv, 1e-5)
			}
		}
	}
}

// testAttentionManySeqs packs more sequences than a CUDA grid's y or z dimension holds (65535), short
// and empty ones, forward and backward against the reference.
func testAttentionManySeqs(t *testing.T, h *harness) {
	const nh, nkv, dim = 2, 1, 8
	lens := make([]int, 66000)
	for i := range lens {
		lens[i] = []int{1, 0, 2, 1}[i%4]
	}
	lens[1000], lens[50001], lens[len(lens)-1] = 3, 5, 40
	p := newAttnProblem(h, lens, nh, nkv, dim, 2)
	T := p.t
	q, k, v := h.f32(p.q, T, nh, dim), h.f32(p.k, T, nkv, dim), h.f32(p.v, T, nkv, dim)
	cu := h.i32(p.cu)
	out, lse := h.poisoned(T, nh, dim), h.poisoned(T, nh)
	require.NoError(t, h.d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}))
	wantOut, wantLSE := make([]float32, T*nh*dim), make([]float32, T*nh)
	ref.AttentionFwd(wantOut, wantLSE, p.q, p.k, p.v, p.cu, nh, nkv, dim, p.scale)
	requireClose(t, "out", h.get(out), wantOut, 1e-5)
	requireClose(t, "lse", h.get(lse), wantLSE, 1e-5)
	dq, dk, dv := h.f32(make([]float32, T*nh*dim), T, nh, dim), h.f32(make([]float32, T*nkv*dim), T, nkv, dim), h.f32(make([]float32, T*nkv*dim), T, nkv, dim)
	require.NoError(t, h.d.AttentionBwd(AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: h.f32(p.dout, T, nh, dim),
		DQ: dq, DK: dk, DV: dv, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}))
	wq, wk, wv := make([]float32, T*nh*dim), make([]float32, T*nkv*dim), make([]float32, T*nkv*dim)
	ref.AttentionBwd(wq, wk, wv, p.q, p.k, p.v, p.dout, p.cu, nh, nkv, dim, p.scale)
	requireClose(t, "dq", h.get(dq), wq, 1e-5)
	requireClose(t, "dk", h.get(dk), wk, 1e-5)
	requireClose(t, "dv", h.get(dv), wv, 1e-5)

	// too small a max_len: the first sequence longer than it is named (on a GPU, whichever of the check's
	// threads finds which)
	err := requireOpError(t, "max_len 2", h.d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: 2,
		Scale: float32(p.scale)}))
	require.ErrorContains(t, err, "attention_fwd: sequence 1000 has 3 tokens, more than max_len = 2")
}

// testAttentionFD checks the backward against central differences of the float64 reference forward,
// on zeroed accumulators, for q, k and v.
func testAttentionFD(t *testing.T, h *harness) {
	for _, c := range []struct {
		lens         []int
		nh, kvh, dim int
	}{{[]int{1, 5, 17, 3}, 4, 2, 8}, {[]int{9, 0, 6}, 6, 1, 17}, {[]int{70}, 1, 1, 3}} {
		p := newAttnProblem(h, c.lens, c.nh, c.kvh, c.dim, 1)
		T := p.t
		q, k, v := h.f32(p.q, T, c.nh, c.dim), h.f32(p.k, T, c.kvh, c.dim), h.f32(p.v, T, c.kvh, c.dim)
		cu := h.i32(p.cu)
		out, lse := h.poisoned(T, c.nh, c.dim), h.poisoned(T, c.nh)
		require.NoError(t, h.d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}))
		dq, dk, dv := h.f32(make([]float32, len(p.q)), T, c.nh, c.dim), h.f32(make([]float32, len(p.k)), T, c.kvh, c.dim),
			h.f32(make([]float32, len(p.v)), T, c.kvh, c.dim)
		require.NoError(t, h.d.AttentionBwd(AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: h.f32(p.dout, T, c.nh, c.dim),
			DQ: dq, DK: dk, DV: dv, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}))

		q64, k64, v64, d64 := f64(p.q), f64(p.k), f64(p.v), f64(p.dout)
		y := make([]float64, len(p.q))
		loss := func(q, k, v []float64) float64 {
			ref.AttentionFwd(y, nil, q, k, v, p.cu, c.nh, c.kvh, c.dim, p.scale)
			return dot(d64, y)
		}
		name := fmt.Sprintf("lens=%v H=%d KVH=%d D=%d", c.lens, c.nh, c.kvh, c.dim)
		h.fdCheck(name+" dq", func(x []float64) float64 { return loss(x, k64, v64) }, q64, h.get(dq), 40, 1e-3)
		h.fdCheck(name+" dk", func(x []float64) float64 { return loss(q64, x, v64) }, k64, h.get(dk), 40, 1e-3)
		h.fdCheck(name+" dv", func(x []float64) float64 { return loss(q64, k64, x) }, v64, h.get(dv), 40, 1e-3)
	}
}

func testAttentionErrors(t *testing.T, h *harness) {
	const T, nh, kvh, dim = 6, 4, 2, 8
	q, k, v := h.f32(h.randn(T*nh*dim, 1), T, nh, dim), h.f32(h.randn(T*kvh*dim, 1), T, kvh, dim), h.f32(h.randn(T*kvh*dim, 1), T, kvh, dim)
	out, lse, cu := h.poisoned(T, nh, dim), h.poisoned(T, nh), h.i32([]int32{0, 2, 6})
	fwd := func(mod func(p *Attention)) error {
		p := Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: 4, Scale: 0.3}
		mod(&p)
		return h.d.AttentionFwd(p)
	}
	require.NoError(t, fwd(func(*Attention) {}))
	require.NoError(t, fwd(func(p *Attention) { p.MaxLen = 1 << 30 }), "a max_len larger than needed")
	// bad cu_seqlens: on a GPU checked on the device and reported at the next synchronisation, with the
	// CPU's message; the first violation in sequence order wins
	for _, c := range []struct {
		name string
		cu   []int32
		want string
	}{
		{"first not 0", []int32{1, 2, 6}, "attention_fwd: cu_seqlens[0] = 1, want 0"},
		{"decreasing", []int32{0, 4, 3, 6}, "attention_fwd: cu_seqlens decreases at 1 (4 > 3)"},
		{"last not T", []int32{0, 2, 5}, "attention_fwd: cu_seqlens[2] = 5, want n_tokens = 6"},
		{"past T", []int32{0, 2, 7}, "attention_fwd: cu_seqlens[2] = 7, want n_tokens = 6"},
		{"longer than max_len", []int32{0, 1, 6}, "attention_fwd: sequence 1 has 5 tokens, more than max_len = 4"},
		{"longer, then decreasing", []int32{0, 5, 3, 6}, "attention_fwd: sequence 0 has 5 tokens, more than max_len = 4"},
		{"decreasing, then longer", []int32{0, 2, 1, 6}, "attention_fwd: cu_seqlens decreases at 1 (2 > 1)"},
		{"no sequence", []int32{0}, "attention_fwd: cu_seqlens[0] = 0, want n_tokens = 6"},
	} {
		err := requireOpError(t, "cu_seqlens "+c.name, fwd(func(p *Attention) { p.CuSeqlens = h.i32(c.cu) }))
		require.ErrorContains(t, err, c.want, c.name)
	}
	require.ErrorContains(t, requireOpError(t, "max_len too small", fwd(func(p *Attention) { p.MaxLen = 3 })),
		"attention_fwd: sequence 1 has 4 tokens, more than max_len = 3")
	require.ErrorContains(t, requireOpError(t, "max_len 0", fwd(func(p *Attention) { p.MaxLen = 0 })),
		"attention_fwd: max_len = 0 with n_tokens = 6")
	require.ErrorContains(t, requireOpError(t, "negative max_len", fwd(func(p *Attention) { p.MaxLen = -1 })), "max_len = -1")
	require.ErrorContains(t, requireOpError(t, "max_len past int32", fwd(func(p *Attention) { p.MaxLen = 1 << 31 })), "max_len")
	require.NoError(t, fwd(func(*Attention) {}), "the device works after the errors")

	// no tokens: nothing to compute, but cu_seqlens is still checked (max_len 0 is then allowed)
	e := h.alloc(F32, 0, nh, dim)
	empty := func(cu []int32) error {
		return h.d.AttentionFwd(Attention{Q: e, K: e.MustReshape(0, kvh, dim), V: e.MustReshape(0, kvh, dim), Out: e,
			CuSeqlens: h.i32(cu), Scale: 0.3})
	}
	require.NoError(t, empty([]int32{0, 0, 0}))
	require.NoError(t, h.d.Sync())
	require.ErrorContains(t, requireOpError(t, "no tokens, decreasing", empty([]int32{0, 1, 0})),
		"attention_fwd: sequence 0 has 1 tokens, more than max_len = 0")
	requireOpError(t, "H % KVH", fwd(func(p *Attention) {
		p.K, p.V = h.f32(make([]float32, T*3*dim), T, 3, dim), h.f32(make([]float32, T*3*dim), T, 3, dim)
	}))
	requireOpError(t, "nil q", fwd(func(p *Attention) { p.Q = Tensor{} }))
	requireOpError(t, "nil out", fwd(func(p *Attention) { p.Out = Tensor{} }))
	requireOpError(t, "short out", fwd(func(p *Attention) { p.Out = h.poisoned(T, nh, dim-1) }))
	requireOpError(t, "short lse", fwd(func(p *Attention) { p.LSE = h.poisoned(T) }))
	requireOpError(t, "short v", fwd(func(p *Attention) { p.V = h.poisoned(T, kvh) }))
	requireOpError(t, "k of other T", fwd(func(p *Attention) { p.K = h.poisoned(T+1, kvh, dim) }))
	requireOpError(t, "rank-2 q", fwd(func(p *Attention) { p.Q = q.MustReshape(T, nh*dim) }))
	requireOpError(t, "f32 cu_seqlens", fwd(func(p *Attention) { p.CuSeqlens = h.f32([]float32{0, 6}) }))

	bwd := func(mod func(p *AttentionGrad)) error {
		p := AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: h.f32(h.randn(T*nh*dim, 1), T, nh, dim),
			DQ: h.poisoned(T, nh, dim), DK: h.poisoned(T, kvh, dim), DV: h.poisoned(T, kvh, dim), CuSeqlens: cu, MaxLen: 4, Scale: 0.3}
		mod(&p)
		return h.d.AttentionBwd(p)
	}
	require.ErrorContains(t, requireOpError(t, "bwd cu_seqlens", bwd(func(p *AttentionGrad) { p.CuSeqlens = h.i32([]int32{0, 3, 2, 6}) })),
		"attention_bwd: cu_seqlens decreases at 1 (3 > 2)")
	require.ErrorContains(t, requireOpError(t, "bwd max_len too small", bwd(func(p *AttentionGrad) { p.MaxLen = 3 })),
		"attention_bwd: sequence 1 has 4 tokens, more than max_len = 3")
	require.ErrorContains(t, requireOpError(t, "bwd max_len 0", bwd(func(p *AttentionGrad) { p.MaxLen = 0 })),
		"attention_bwd: max_len = 0 with n_tokens = 6")
	requireOpError(t, "bwd nil lse", bwd(func(p *AttentionGrad) { p.LSE = Tensor{} }))
	requireOpError(t, "bwd short dk", bwd(func(p *AttentionGrad) { p.DK = h.poisoned(T, kvh, 2) }))
	requireOpError(t, "bwd i32 dout", bwd(func(p *AttentionGrad) { p.DOut = h.i32(make([]int32, T*nh*dim)) }))
}

// testKVDecode appends the tokens of several sequences to a NaN-poisoned paged cache through a
// scrambled block table, then checks decode attention of each sequence's last token against the last
// row of full causal attention over the same tokens: any wrong slot or block reads NaN.
func testKVDecode(t *testing.T, h *harness) {
	// 300: past the CUDA kernel's 128-key tile twice, so its online softmax rescales across tiles
	lens := []int{1, 7, 16, 33, 100, 300}
	// and 9 query heads per kv head: past the 8 that the CUDA kernel scores in one pass over a key
	for _, hc := range append(slices.Clone(headConfigs), [2]int{9, 1}) {
		for _, dim := range []int{1, 8, 17, 64, 128, 256} {
			for _, bs := range []int{1, 8, 16} {
				name := fmt.Sprintf("H=%d KVH=%d D=%d block=%d", hc[0], hc[1], dim, bs)
				p := newAttnProblem(h, lens, hc[0], hc[1], dim, 2)
				nh, nkv, S := p.h, p.kvh, len(lens)
				maxBlocks := (slices.Max(lens) + bs - 1) / bs
				nBlocks := S*maxBlocks + 3
				perm := h.rng.Perm(nBlocks)
				table := make([]int32, S*maxBlocks)
				for i := range table {
					table[i] = int32(perm[i])
				}
				slots := make([]int32, 0, p.t+1)
				for s, l := range lens {
					for j := 0; j < l; j++ {
						slots = append(slots, table[s*maxBlocks+j/bs]*int32(bs)+int32(j%bs))
					}
				}
				// one extra token with slot −1 must be skipped
				slots = append(slots, -1)
				kx, vx := append(append([]float32(nil), p.k...), h.randn(nkv*dim, 1)...), append(append([]float32(nil), p.v...), h.randn(nkv*dim, 1)...)

				kc, vc := h.poisoned(nBlocks, bs, nkv, dim), h.poisoned(nBlocks, bs, nkv, dim)
				cache := KVCache{K: kc, V: vc}
				require.NoError(t, h.d.KVAppend(cache, h.f32(kx, p.t+1, nkv, dim), h.f32(vx, p.t+1, nkv, dim), h.i32(slots)), name)
				// NaN where nothing was written, as the poisoned cache
				wantK, wantV := make([]float32, kc.Len()), make([]float32, vc.Len())
				for i := range wantK {
					wantK[i], wantV[i] = float32(math.NaN()), float32(math.NaN())
				}
				ref.KVAppend(wantK, wantV, kx, vx, slots, nkv, dim)
				requireSameBits(t, name+" k cache", h.get(kc), wantK)
				requireSameBits(t, name+" v cache", h.get(vc), wantV)

				// the query of each sequence is its last token's
				qd := make([]float32, S*nh*dim)
				seqLens := make([]int32, S)
				for s := range lens {
					last := int(p.cu[s+1]) - 1
					copy(qd[s*nh*dim:(s+1)*nh*dim], p.q[last*nh*dim:(last+1)*nh*dim])
					seqLens[s] = int32(lens[s])
				}
				out := h.poisoned(S, nh, dim)
				require.NoError(t, h.d.DecodeAttention(out, h.f32(qd, S, nh, dim), cache, h.i32(table, S, maxBlocks), h.i32(seqLens), float32(p.scale)), name)
				got := h.get(out)

				full := make([]float32, p.t*nh*dim)
				ref.AttentionFwd(full, nil, p.q, p.k, p.v, p.cu, nh, nkv, dim, p.scale)
				want := make([]float32, S*nh*dim)
				for s := range lens {
					last := int(p.cu[s+1]) - 1
					copy(want[s*nh*dim:(s+1)*nh*dim], full[last*nh*dim:(last+1)*nh*dim])
				}
				requireClose(t, name+" decode vs last causal row", got, want, 1e-5)
				ref.DecodeAttention(want, qd, wantK, wantV, table, seqLens, maxBlocks, bs, nh, nkv, dim, p.scale)
				requireClose(t, name+" decode vs reference", got, want, 1e-5)
			}
		}
	}
}

// requireSameBits compares element for element, NaN equal to NaN.
func requireSameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	require.Equal(t, len(want), len(got), what)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))) {
			t.Fatalf("%s: element %d is %g, want %g", what, i, got[i], want[i])
		}
	}
}

func testKVDecodeErrors(t *testing.T, h *harness) {
	const nb, bs, kvh, dim, nh = 4, 8, 2, 16, 4
	cache := KVCache{K: h.poisoned(nb, bs, kvh, dim), V: h.poisoned(nb, bs, kvh, dim)}
	k, v := h.f32(h.randn(3*kvh*dim, 1), 3, kvh, dim), h.f32(h.randn(3*kvh*dim, 1), 3, kvh, dim)
	require.NoError(t, h.d.KVAppend(cache, k, v, h.i32([]int32{0, 31, -5})))
	requireOpError(t, "slot out of range", h.d.KVAppend(cache, k, v, h.i32([]int32{0, 32, 1})))
	requireOpError(t, "nil cache", h.d.KVAppend(KVCache{K: cache.K}, k, v, h.i32([]int32{0, 1, 2})))
	requireOpError(t, "rank-3 cache", h.d.KVAppend(KVCache{K: cache.K.MustReshape(nb*bs, kvh, dim), V: cache.V.MustReshape(nb*bs, kvh, dim)}, k, v, h.i32([]int32{0, 1, 2})))
	requireOpError(t, "short k", h.d.KVAppend(cache, h.poisoned(2, kvh, dim), v, h.i32([]int32{0, 1, 2})))
	requireOpError(t, "f32 slots", h.d.KVAppend(cache, k, v, h.f32([]float32{0, 1, 2})))

	q := h.f32(h.randn(2*nh*dim, 1), 2, nh, dim)
	out := h.poisoned(2, nh, dim)
	dec := func(table, lens []int32) error {
		return h.d.DecodeAttention(out, q, cache, h.i32(table, 2, 2), h.i32(lens), 0.25)
	}
	require.NoError(t, dec([]int32{0, -1, 3, 2}, []int32{8, 16}))
	requireOpError(t, "block id = n_blocks", dec([]int32{0, -1, 3, nb}, []int32{8, 16}))
	requireOpError(t, "negative block id", dec([]int32{-1, 0, 3, 2}, []int32{8, 16}))
	requireOpError(t, "seq_len 0", dec([]int32{0, 1, 3, 2}, []int32{0, 16}))
	requireOpError(t, "seq_len past the table", dec([]int32{0, 1, 3, 2}, []int32{8, 17}))
	requireOpError(t, "short seq_lens", h.d.DecodeAttention(out, q, cache, h.i32([]int32{0, 1, 3, 2}, 2, 2), h.i32([]int32{8}), 0.25))
	requireOpError(t, "short out", h.d.DecodeAttention(h.poisoned(2, nh, dim-1), q, cache, h.i32([]int32{0, 1, 3, 2}, 2, 2), h.i32([]int32{8, 8}), 0.25))
	requireOpError(t, "q of other D", h.d.DecodeAttention(out, h.poisoned(2, nh, dim+1), cache, h.i32([]int32{0, 1, 3, 2}, 2, 2), h.i32([]int32{8, 8}), 0.25))
	requireOpError(t, "H % KVH", h.d.DecodeAttention(h.poisoned(2, 3, dim), h.poisoned(2, 3, dim), cache, h.i32([]int32{0, 1, 3, 2}, 2, 2), h.i32([]int32{8, 8}), 0.25))
	requireOpError(t, "nil q", h.d.DecodeAttention(out, Tensor{}, cache, h.i32([]int32{0, 1, 3, 2}, 2, 2), h.i32([]int32{8, 8}), 0.25))
}

// ------------------------------------------------------------------------- benchmarks

type attnBenchConfig struct {
	name         string
	seqs, seqLen int
	nh, kvh, dim int
}

var attnBenchConfigs = []attnBenchConfig{{"S", 8, 256, 4, 2, 64}, {"M", 4, 512, 12, 4, 64}}

type attnBenchTensors struct {
	p     AttentionGrad
	pairs float64
}

func newAttnBench(b *testing.B, d *Device, c attnBenchConfig) (attnBenchTensors, func()) {
	T := c.seqs * c.seqLen
	var all []Tensor
	alloc := func(dims ...int) Tensor {
		x := d.MustAlloc(F32, dims...)
		all = append(all, x)
		return x
	}
	fill := func(x Tensor, scale float32) {
		f := x.F32()
		for i := range f {
			f[i] = scale * float32(math.Sin(float64(i)*0.7311))
		}
	}
	p := AttentionGrad{Q: alloc(T, c.nh, c.dim), K: alloc(T, c.kvh, c.dim), V: alloc(T, c.kvh, c.dim), Out: alloc(T, c.nh, c.dim),
		LSE: alloc(T, c.nh), DOut: alloc(T, c.nh, c.dim), DQ: alloc(T, c.nh, c.dim), DK: alloc(T, c.kvh, c.dim), DV: alloc(T, c.kvh, c.dim),
		Scale: float32(1 / math.Sqrt(float64(c.dim)))}
	for _, x := range []Tensor{p.Q, p.K, p.V, p.DOut} {
		fill(x, 1)
	}
	lens := make([]int, c.seqs)
	for i := range lens {
		lens[i] = c.seqLen
	}
	cu := d.MustAlloc(I32, c.seqs+1)
	all = append(all, cu)
	copy(cu.I32(), cuSeqlens(lens))
	p.CuSeqlens, p.MaxLen = cu, c.seqLen
	pairs := float64(c.seqs) * float64(c.seqLen) * float64(c.seqLen+1) / 2 * float64(c.nh)
	return attnBenchTensors{p, pairs}, func() {
		for _, x := range all {
			d.Free(x)
		}
	}
}

func BenchmarkAttentionFwd(b *testing.B) {
	d := cpuDevice(b)
	for _, c := range attnBenchConfigs {
		b.Run(c.name, func(b *testing.B) {
			bt, free := newAttnBench(b, d, c)
			defer free()
			p := bt.p
			fp := Attention{Q: p.Q, K: p.K, V: p.V, Out: p.Out, LSE: p.LSE, CuSeqlens: p.CuSeqlens, MaxLen: p.MaxLen, Scale: p.Scale}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.AttentionFwd(fp); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(4*bt.pairs*float64(c.dim)/sec/1e9, "GFLOP/s")
			b.ReportMetric(float64(c.seqs*c.seqLen)/sec, "tokens/s")
		})
	}
}

func BenchmarkAttentionBwd(b *testing.B) {
	d := cpuDevice(b)
	for _, c := range attnBenchConfigs {
		b.Run(c.name, func(b *testing.B) {
			bt, free := newAttnBench(b, d, c)
			defer free()
			p := bt.p
			if err := d.AttentionFwd(Attention{Q: p.Q, K: p.K, V: p.V, Out: p.Out, LSE: p.LSE, CuSeqlens: p.CuSeqlens, MaxLen: p.MaxLen, Scale: p.Scale}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.AttentionBwd(p); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(10*bt.pairs*float64(c.dim)/sec/1e9, "GFLOP/s")
			b.ReportMetric(float64(c.seqs*c.seqLen)/sec, "tokens/s")
		})
	}
}

// BenchmarkDecodeAttention: 64 sequences, each with ctx cached tokens in blocks of 16 spread over the
// cache, one query token each; GB/s counts the K and V bytes each sequence reads. In the shared cases
// the sequences come in groups of 16 whose first half of blocks is the same, as the samples of one
// prompt in SeRL's rollouts: those rows are read again from the core's caches.
func BenchmarkDecodeAttention(b *testing.B) {
	d := cpuDevice(b)
	const seqs, bs = 64, 16
	for _, c := range attnBenchConfigs {
		for _, ctxLen := range []int{128, 512} {
			for _, shared := range []bool{false, true} {
				name := fmt.Sprintf("%s/ctx=%d", c.name, ctxLen)
				if shared {
					name += "/shared"
				}
				b.Run(name, func(b *testing.B) {
					maxBlocks := ctxLen / bs
					nBlocks := seqs * maxBlocks
					kc, vc := d.MustAlloc(F32, nBlocks, bs, c.kvh, c.dim), d.MustAlloc(F32, nBlocks, bs, c.kvh, c.dim)
					q, out := d.MustAlloc(F32, seqs, c.nh, c.dim), d.MustAlloc(F32, seqs, c.nh, c.dim)
					table, lens := d.MustAlloc(I32, seqs, maxBlocks), d.MustAlloc(I32, seqs)
					for _, x := range []Tensor{kc, vc, q, out, table, lens} {
						defer d.Free(x)
					}
					for _, x := range []Tensor{kc, vc, q} {
						f := x.F32()
						for i := range f {
							f[i] = float32(math.Sin(float64(i) * 0.37))
						}
					}
					// interleave the sequences' blocks, as a cache filled by concurrent generation would
					tb := table.I32()
					for s := 0; s < seqs; s++ {
						for j := 0; j < maxBlocks; j++ {
							owner := s
							if shared && j < maxBlocks/2 {
								owner = s / 16 * 16
							}
							tb[s*maxBlocks+j] = int32(j*seqs + owner)
						}
						lens.I32()[s] = int32(ctxLen)
					}
					cache := KVCache{K: kc, V: vc}
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if err := d.DecodeAttention(out, q, cache, table, lens, 0.125); err != nil {
							b.Fatal(err)
						}
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*float64(seqs*ctxLen*c.kvh*c.dim*4)/sec/1e9, "GB/s")
					b.ReportMetric(float64(seqs)/sec, "tokens/s")
				})
			}
		}
	}
}
