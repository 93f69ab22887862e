package kernels

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func init() {
	register("views_unaligned", testUnalignedViews)
}

// viewAt uploads data at element offset off of a larger tensor and returns the view of it.
func (h *harness) viewAt(dt DType, data []float32, off int) Tensor {
	h.t.Helper()
	full, _ := h.upload(dt, append(make([]float32, off), data...))
	return full.MustSlice(off, off+len(data))
}

// testUnalignedViews: ops give the same bits on views at odd element offsets as on whole tensors (a GPU
// moves aligned tensors in 16-byte vectors and the rest element by element).
func testUnalignedViews(t *testing.T, h *harness) {
	for _, n := range []int{7, 8, 1001, 4099} {
		g, u, dout, dg, du := h.randn(n, 3), h.randn(n, 1), h.randn(n, 1), h.randn(n, 1), h.randn(n, 1)

		// SwiGLU forward and backward in bf16
		out := h.poisonedAs(BF16, n)
		G, _ := h.upload(BF16, g)
		U, _ := h.upload(BF16, u)
		require.NoError(t, h.d.SwiGLUFwd(out, G, U))
		outV := h.viewAt(BF16, make([]float32, n), 3)
		require.NoError(t, h.d.SwiGLUFwd(outV, h.viewAt(BF16, g, 1), h.viewAt(BF16, u, 5)))
		require.Equal(t, h.bits(out), h.bits(outV), "swiglu_fwd n=%d on views", n)
		// views at offsets of 8 bf16 (16 bytes): the vector path on views; and one of three misaligned
		outV = h.viewAt(BF16, make([]float32, n), 8)
		require.NoError(t, h.d.SwiGLUFwd(outV, h.viewAt(BF16, g, 16), h.viewAt(BF16, u, 8)))
		require.Equal(t, h.bits(out), h.bits(outV), "swiglu_fwd n=%d on aligned views", n)
		outV = h.viewAt(BF16, make([]float32, n), 8)
		require.NoError(t, h.d.SwiGLUFwd(outV, h.viewAt(BF16, g, 8), h.viewAt(BF16, u, 2)))
		require.Equal(t, h.bits(out), h.bits(outV), "swiglu_fwd n=%d on views, up misaligned", n)

		D, _ := h.upload(BF16, dout)
		DG, _ := h.upload(BF16, dg)
		DU, _ := h.upload(BF16, du)
		require.NoError(t, h.d.SwiGLUBwd(DG, DU, G, U, D))
		dgV, duV := h.viewAt(BF16, dg, 1), h.viewAt(BF16, du, 2)
		require.NoError(t, h.d.SwiGLUBwd(dgV, duV, h.viewAt(BF16, g, 3), h.viewAt(BF16, u, 4), h.viewAt(BF16, dout, 7)))
		require.Equal(t, h.bits(DG), h.bits(dgV), "swiglu_bwd dgate n=%d on views", n)
		require.Equal(t, h.bits(DU), h.bits(duV), "swiglu_bwd dup n=%d on views", n)

		// AdamW with its bf16 copy
		p0, m0, v0 := h.randn(n, 1), h.randn(n, 0.1), h.randn(n, 0.1)
		for i := range v0 {
			v0[i] *= v0[i]
		}
		hp := AdamWParams{Step: 2, LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: 0.5}
		p, m, v, pb := h.f32(p0), h.f32(m0), h.f32(v0), h.poisonedAs(BF16, n)
		ha := hp
		ha.PBF16 = pb
		require.NoError(t, h.d.AdamW(p, h.f32(g), m, v, ha))
		// element offsets of p, g, m, v and the bf16 copy: all odd; all 16-byte aligned (f32 offsets of 4,
		// bf16 of 4: the vector path on views); f32 aligned but the copy not (8-byte stores refused)
		for _, off := range [][5]int{{1, 1, 2, 3, 1}, {4, 8, 4, 12, 4}, {4, 4, 8, 4, 1}} {
			pV, mV, vV, pbV := h.viewAt(F32, p0, off[0]), h.viewAt(F32, m0, off[2]), h.viewAt(F32, v0, off[3]), h.viewAt(BF16, make([]float32, n), off[4])
			ha.PBF16 = pbV
			require.NoError(t, h.d.AdamW(pV, h.viewAt(F32, g, off[1]), mV, vV, ha))
			what := fmt.Sprintf("adamw n=%d on views at %v", n, off)
			require.Equal(t, h.get(p), h.get(pV), what+": p")
			require.Equal(t, h.get(m), h.get(mV), what+": m")
			require.Equal(t, h.get(v), h.get(vV), what+": v")
			require.Equal(t, h.bits(pb), h.bits(pbV), what+": bf16 copy")
		}
	}

	// The log-prob gradient into a buffer aligned unlike the logits, against the gradient in place.
	for _, dt := range []DType{BF16, F32} {
		const rows, vocab = 3, 1003
		x := h.randn(rows*vocab, 2)
		tg := randTargets(h, rows, vocab, true)
		lse := h.poisoned(rows)
		L, _ := h.upload(dt, x, rows, vocab)
		require.NoError(t, h.d.LogProbFwd(Tensor{}, Tensor{}, lse, L, h.i32(tg), 1, true))
		coef := h.f32(h.randn(rows, 1))
		dl := h.viewAt(dt, make([]float32, rows*vocab), 1).MustReshape(rows, vocab)
		require.NoError(t, h.d.LogProbBwd(dl, L, h.i32(tg), lse, coef, 1, true))
		require.NoError(t, h.d.LogProbBwd(L, L, h.i32(tg), lse, coef, 1, true))
		if dt == BF16 {
			require.Equal(t, h.bits(L), h.bits(dl), "logprob_bwd bf16 into an unaligned buffer")
		} else {
			require.Equal(t, h.get(L), h.get(dl), "logprob_bwd f32 into an unaligned buffer")
		}
	}
}
