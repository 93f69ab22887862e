package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("embedding", testEmbedding)
	register("rmsnorm", testRMSNorm)
	register("rope", testRoPE)
}

var nnDims = []int{1, 2, 6, 7, 17, 64, 96, 130}

// randIDs draws n ids in [0, vocab).
func (h *harness) randIDs(n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(h.rng.IntN(vocab))
	}
	return ids
}

func testEmbedding(t *testing.T, h *harness) {
	type cfg struct{ n, dim, vocab int }
	var cases []cfg
	for _, dim := range nnDims {
		for _, n := range []int{1, 17, 300} {
			cases = append(cases, cfg{n, dim, 1 + n%13}, cfg{n, dim, 509})
		}
	}
	// Large enough for the parallel paths, with many repeated ids.
	cases = append(cases, cfg{2048, 256, 50}, cfg{1031, 130, 3})
	for _, c := range cases {
		name := fmt.Sprintf("n=%d dim=%d vocab=%d", c.n, c.dim, c.vocab)
		table := h.randn(c.vocab*c.dim, 1)
		for variant, ids := range [][]int32{h.randIDs(c.n, c.vocab), make([]int32, c.n)} { // random; all id 0
			if variant == 1 {
				for i := range ids {
					ids[i] = int32(c.vocab - 1)
				}
			}
			tids := h.i32(ids)
			out := h.poisoned(c.n, c.dim)
			require.NoError(t, h.d.EmbeddingFwd(out, h.f32(table, c.vocab, c.dim), tids))
			want := make([]float32, c.n*c.dim)
			ref.EmbeddingFwd(want, table, ids, c.dim)
			requireClose(t, "embedding_fwd "+name, h.get(out), want, 1e-5)

			dout := h.randn(c.n*c.dim, 1)
			dt0 := h.randn(c.vocab*c.dim, 1)
			dt := h.f32(dt0, c.vocab, c.dim)
			require.NoError(t, h.d.EmbeddingBwd(dt, h.f32(dout, c.n, c.dim), tids))
			wdt := append([]float32(nil), dt0...)
			ref.EmbeddingBwd(wdt, dout, ids, c.dim)
			requireClose(t, "embedding_bwd "+name, h.get(dt), wdt, 1e-5)

			if c.n*c.dim <= 5000 {
				zt := h.f32(make([]float32, c.vocab*c.dim), c.vocab, c.dim)
				require.NoError(t, h.d.EmbeddingBwd(zt, h.f32(dout, c.n, c.dim), tids))
				d64 := f64(dout)
				h.fdCheck("embedding dtable "+name, func(tb []float64) float64 {
					y := make([]float64, c.n*c.dim)
					ref.EmbeddingFwd(y, tb, ids, c.dim)
					return dot(d64, y)
				}, f64(table), h.get(zt), 64, 1e-3)
			}
		}
	}

	table := h.f32(h.randn(5*3, 1), 5, 3)
	out := h.poisoned(4, 3)
	err := h.d.EmbeddingFwd(out, table, h.i32([]int32{0, 4, 5, 1}))
	err = requireOpError(t, "id = vocab", err)
	require.ErrorContains(t, err, "ids[2] = 5")
	for i, v := range h.get(out) {
		// the CPU checks every id before it writes; a GPU checks on the device and skips the bad row
		if h.d.Backend() == "cpu" || i/3 == 2 {
			require.True(t, math.IsNaN(float64(v)), "a rejected id's row (on the CPU: every row) must not be written")
		}
	}
	// The backward's table is rows 1..5 of a 7-row buffer, so that a write for id −1 or id = vocab would
	// land in row 0 or 6. Two bad ids: the first in token order is reported (a GPU sorts the ids).
	full := h.f32(make([]float32, 7*3), 7, 3)
	dtable := full.MustSlice(1, 6)
	ones := make([]float32, 5*3)
	for i := range ones {
		ones[i] = 1
	}
	err = h.d.EmbeddingBwd(dtable, h.f32(ones, 5, 3), h.i32([]int32{0, -1, 2, 5, 0}))
	err = requireOpError(t, "negative id and id = vocab", err)
	require.ErrorContains(t, err, "embedding_bwd")
	require.ErrorContains(t, err, "ids[1] = -1")
	got := h.get(full)
	for i, v := range got {
		row := i / 3
		// the CPU checks every id before it writes; a GPU checks on the device and skips the bad tokens
		want := float32(0)
		if h.d.Backend() != "cpu" {
			want = []float32{0, 2, 0, 1, 0, 0, 0}[row]
		}
		require.Equal(t, want, v, "embedding_bwd with bad ids: buffer row %d (table row %d)", row, row-1)
	}
	ids := h.i32([]int32{0, 1, 2, 3})
	requireOpError(t, "nil table", h.d.EmbeddingFwd(out, Tensor{}, ids))
	requireOpError(t, "nil ids", h.d.EmbeddingFwd(out, table, Tensor{}))
	requireOpError(t, "out too small", h.d.EmbeddingFwd(h.poisoned(3, 3), table, ids))
	requireOpError(t, "out wrong dim", h.d.EmbeddingFwd(h.poisoned(3, 4), table, ids))
	requireOpError(t, "f32 ids", h.d.EmbeddingFwd(out, table, h.f32([]float32{0, 1, 2, 3})))
	requireOpError(t, "i32 table", h.d.EmbeddingFwd(out, h.i32(make([]int32, 15), 5, 3), ids))
	requireOpError(t, "flat table", h.d.EmbeddingFwd(out, h.f32(make([]float32, 15)), ids))
	requireOpError(t, "dout mismatch", h.d.EmbeddingBwd(h.f32(make([]float32, 15), 5, 3), h.f32(make([]float32, 10), 5, 2), ids))
}

func testRMSNorm(t *testing.T, h *harness) {
	type cfg struct{ rows, dim int }
	var cases []cfg
	for _, dim := range nnDims {
		for _, rows := range []int{1, 3, 31, 300} {
			cases = append(cases, cfg{rows, dim})
		}
	}
	cases = append(cases, cfg{2048, 256}, cfg{517, 130})
	for _, c := range cases {
		name := fmt.Sprintf("%dx%d", c.rows, c.dim)
		// dim 1 is nearly sign(x)·w: its gradient ∝ eps/(x²+eps) is all cancellation unless eps is large.
		eps := float32(1e-5)
		if c.dim == 1 {
			eps = 0.1
		}
		n := c.rows * c.dim
		x0, w0, dy0 := h.randn(n, 2), h.randn(c.dim, 1), h.randn(n, 1)
		for i := range w0 {
			w0[i] += 1
		}
		x, w, dy := h.f32(x0, c.rows, c.dim), h.f32(w0), h.f32(dy0, c.rows, c.dim)
		y, rstd := h.poisoned(c.rows, c.dim), h.poisoned(c.rows)
		require.NoError(t, h.d.RMSNormFwd(y, rstd, x, w, eps))
		wy, wr := make([]float32, n), make([]float32, c.rows)
		ref.RMSNormFwd(wy, wr, x0, w0, float64(eps))
		requireClose(t, "rmsnorm_fwd y "+name, h.get(y), wy, 1e-5)
		requireClose(t, "rmsnorm_fwd rstd "+name, h.get(rstd), wr, 1e-5)

		// Without rstd, and in place (y aliases x).
		xi := h.f32(x0, c.rows, c.dim)
		require.NoError(t, h.d.RMSNormFwd(xi, Tensor{}, xi, w, eps))
		requireClose(t, "rmsnorm_fwd in place "+name, h.get(xi), wy, 1e-5)

		dx0, dw0 := h.randn(n, 1), h.randn(c.dim, 1)
		dx, dw := h.f32(dx0, c.rows, c.dim), h.f32(dw0)
		require.NoError(t, h.d.RMSNormBwd(dx, dw, x, w, rstd, dy))
		wdx, wdw := append([]float32(nil), dx0...), append([]float32(nil), dw0...)
		ref.RMSNormBwd(wdx, wdw, x0, w0, h.get(rstd), dy0)
		requireClose(t, "rmsnorm_bwd dx "+name, h.get(dx), wdx, 1e-5)
		requireClose(t, "rmsnorm_bwd dw "+name, h.get(dw), wdw, 1e-5)

		if n <= 10000 {
			zx, zw := h.f32(make([]float32, n), c.rows, c.dim), h.f32(make([]float32, c.dim))
			require.NoError(t, h.d.RMSNormBwd(zx, zw, x, w, rstd, dy))
			x64, w64, d64 := f64(x0), f64(w0), f64(dy0)
			fwd := func(xv, wv []float64) float64 {
				yv := make([]float64, n)
				ref.RMSNormFwd(yv, nil, xv, wv, float64(eps))
				return dot(d64, yv)
			}
			h.fdCheck("rmsnorm dx "+name, func(xv []float64) float64 { return fwd(xv, w64) }, x64, h.get(zx), 64, 1e-3)
			h.fdCheck("rmsnorm dw "+name, func(wv []float64) float64 { return fwd(x64, wv) }, w64, h.get(zw), 64, 1e-3)
		}
	}

	// Tall: the weight gradient's row chunks of a GPU would pass grid.y's 65535 at 64 rows each. Not on
	// the SIMT emulator (4,194,305 blocks of 256 threads; it checks each launch's grid limits instead).
	if h.emulated() {
		t.Log("rmsnorm tall case: not run on the SIMT emulator")
	} else {
		const rows, eps = 4194305, 0.1
		x0, dy0 := h.randn(rows, 2), h.randn(rows, 1)
		x, w, dy := h.f32(x0, rows, 1), h.f32([]float32{1.5}), h.f32(dy0, rows, 1)
		rstd := h.poisoned(rows)
		require.NoError(t, h.d.RMSNormFwd(h.poisoned(rows, 1), rstd, x, w, eps))
		wr := make([]float32, rows)
		ref.RMSNormFwd(make([]float32, rows), wr, x0, []float32{1.5}, eps)
		requireClose(t, "rmsnorm_fwd rstd tall", h.get(rstd), wr, 1e-5)
		dx, dw := h.f32(make([]float32, rows), rows, 1), h.f32([]float32{0.25})
		require.NoError(t, h.d.RMSNormBwd(dx, dw, x, w, rstd, dy))
		wdx, wdw := make([]float32, rows), []float32{0.25}
		ref.RMSNormBwd(wdx, wdw, x0, []float32{1.5}, h.get(rstd), dy0)
		requireClose(t, "rmsnorm_bwd dx tall", h.get(dx), wdx, 1e-5)
		requireClose(t, "rmsnorm_bwd dw tall", h.get(dw), wdw, 1e-5)
	}

	x, w := h.f32(h.randn(12, 1), 4, 3), h.f32([]float32{1, 1, 1})
	requireOpError(t, "nil x", h.d.RMSNormFwd(h.poisoned(4, 3), Tensor{}, Tensor{}, w, 1e-6))
	requireOpError(t, "nil w", h.d.RMSNormFwd(h.poisoned(4, 3), Tensor{}, x, Tensor{}, 1e-6))
	requireOpError(t, "w length", h.d.RMSNormFwd(h.poisoned(4, 3), Tensor{}, x, h.f32([]float32{1, 1}), 1e-6))
	requireOpError(t, "flat x", h.d.RMSNormFwd(h.poisoned(12), Tensor{}, h.f32(make([]float32, 12)), w, 1e-6))
	requireOpError(t, "y too small", h.d.RMSNormFwd(h.poisoned(3, 3), Tensor{}, x, w, 1e-6))
	requireOpError(t, "rstd too small", h.d.RMSNormFwd(h.poisoned(4, 3), h.poisoned(3), x, w, 1e-6))
	requireOpError(t, "negative eps", h.d.RMSNormFwd(h.poisoned(4, 3), Tensor{}, x, w, -1))
	requireOpError(t, "i32 x", h.d.RMSNormFwd(h.poisoned(4, 3), Tensor{}, h.i32(make([]int32, 12), 4, 3), w, 1e-6))
	rstd := h.poisoned(4)
	requireOpError(t, "bwd nil rstd", h.d.RMSNormBwd(h.poisoned(4, 3), h.poisoned(3), x, w, Tensor{}, x))
	requireOpError(t, "bwd dw length", h.d.RMSNormBwd(h.poisoned(4, 3), h.poisoned(4), x, w, rstd, x))
	requireOpError(t, "bwd dy too small", h.d.RMSNormBwd(h.poisoned(4, 3), h.poisoned(3), x, w, rstd, h.poisoned(3, 3)))
	requireOpError(t, "bwd rstd too small", h.d.RMSNormBwd(h.poisoned(4, 3), h.poisoned(3), x, w, h.poisoned(2), x))
}

// hfInvFreq is Hugging Face's default rotary inverse frequencies 1/base^(2i/rotDim), in float32.
func hfInvFreq(rotDim int, base float64) []float32 {
	f := make([]float32, rotDim/2)
	for i := range f {
		f[i] = float32(1 / math.Pow(base, float64(2*i)/float64(rotDim)))
	}
	return f
}

// packedPos restarts positions at random sequence boundaries, as in a packed batch.
func (h *harness) packedPos(n int) []int32 {
	pos := make([]int32, n)
	p := int32(0)
	for i := range pos {
		if h.rng.IntN(40) == 0 {
			p = 0
		}
		pos[i] = p
		p++
	}
	return pos
}

func testRoPE(t *testing.T, h *harness) {
	type cfg struct{ n, heads, hd, rot int }
	var cases []cfg
	for _, hr := range [][2]int{{2, 2}, {6, 6}, {7, 6}, {17, 10}, {64, 64}, {64, 32}, {96, 96}, {130, 130}, {130, 64}} {
		for _, n := range []int{1, 17, 300} {
			cases = append(cases, cfg{n, 1 + n%3, hr[0], hr[1]})
		}
	}
	// the last: more pairs (1090) than a GPU block holds cos/sin for at once (1024)
	cases = append(cases, cfg{2048, 4, 64, 64}, cfg{513, 3, 96, 32}, cfg{3, 2, 2200, 2180})
	for _, c := range cases {
		name := fmt.Sprintf("T=%d H=%d Dh=%d rot=%d", c.n, c.heads, c.hd, c.rot)
		size := c.n * c.heads * c.hd
		pos := h.packedPos(c.n)
		if c.n%2 == 1 && c.n > 1 {
			// A long-context position, where float32 angle rounding matters; it also makes the positions
			// too sparse for the per-position cos/sin table, so both native paths are covered.
			pos[c.n-1] = 32767
		}
		inv := hfInvFreq(c.rot, 10000)
		tpos, tinv := h.i32(pos), h.f32(inv)
		x0 := h.randn(size, 1)
		x := h.f32(x0, c.n, c.heads, c.hd)
		for _, bwd := range []bool{false, true} {
			what := fmt.Sprintf("rope bwd=%v %s", bwd, name)
			y := h.poisoned(c.n, c.heads, c.hd)
			require.NoError(t, h.d.RoPE(y, x, tpos, tinv, c.rot, bwd, false))
			want := make([]float32, size)
			ref.RoPE(want, x0, pos, inv, c.heads, c.hd, c.rot, bwd, false)
			requireClose(t, what, h.get(y), want, 1e-5)

			xi := h.f32(x0, c.n, c.heads, c.hd)
			require.NoError(t, h.d.RoPE(xi, xi, tpos, tinv, c.rot, bwd, false))
			requireClose(t, what+" in place", h.get(xi), want, 1e-5)

			y0 := h.randn(size, 1)
			ya := h.f32(y0, c.n, c.heads, c.hd)
			require.NoError(t, h.d.RoPE(ya, x, tpos, tinv, c.rot, bwd, true))
			wa := append([]float32(nil), y0...)
			ref.RoPE(wa, x0, pos, inv, c.heads, c.hd, c.rot, bwd, true)
			requireClose(t, what+" accumulate", h.get(ya), wa, 1e-5)
		}

		// The transpose is the adjoint: ⟨v, R·x⟩ = ⟨Rᵀ·v, x⟩.
		v0 := h.randn(size, 1)
		rx, rtv := h.poisoned(c.n, c.heads, c.hd), h.poisoned(c.n, c.heads, c.hd)
		require.NoError(t, h.d.RoPE(rx, x, tpos, tinv, c.rot, false, false))
		require.NoError(t, h.d.RoPE(rtv, h.f32(v0, c.n, c.heads, c.hd), tpos, tinv, c.rot, true, false))
		v64, x64 := f64(v0), f64(x0)
		l, r := dot(v64, h.get(rx)), dot(x64, h.get(rtv))
		require.InDelta(t, 0, (l-r)/math.Max(1, math.Sqrt(float64(size))), 1e-5, "rope adjoint %s: %g vs %g", name, l, r)

		if size <= 20000 {
			// d⟨v, R·x⟩/dx = Rᵀ·v, accumulated into zeros.
			g := h.f32(make([]float32, size), c.n, c.heads, c.hd)
			require.NoError(t, h.d.RoPE(g, h.f32(v0, c.n, c.heads, c.hd), tpos, tinv, c.rot, true, true))
			h.fdCheck("rope dx "+name, func(xv []float64) float64 {
				yv := make([]float64, size)
				ref.RoPE(yv, xv, pos, inv, c.heads, c.hd, c.rot, false, false)
				return dot(v64, yv)
			}, x64, h.get(g), 64, 1e-3)
		}
	}

	// Unit vectors read back the cos/sin tables: float32 cos/sin of the float32 angle (HF), to an ulp.
	{
		const hd, n = 128, 5
		pos := []int32{0, 1, 4095, 32767, 131071}
		inv := hfInvFreq(hd, 500000)
		x0 := make([]float32, n*hd)
		for t := 0; t < n; t++ {
			x0[t*hd] = 1 // i = 0: y[0] = cos, y[half] = sin
			x0[t*hd+hd/2+7] = 1
		}
		y := h.poisoned(n, 1, hd)
		require.NoError(t, h.d.RoPE(y, h.f32(x0, n, 1, hd), h.i32(pos), h.f32(inv), hd, false, false))
		got := h.get(y)
		for k, p := range pos {
			a0, a7 := float64(ref.RoPEAngle(p, inv[0])), float64(ref.RoPEAngle(p, inv[7]))
			require.InDelta(t, float32(math.Cos(a0)), got[k*hd], 2e-7, "cos pos %d", p)
			require.InDelta(t, float32(math.Sin(a0)), got[k*hd+hd/2], 2e-7, "sin pos %d", p)
			require.InDelta(t, float32(math.Cos(a7)), got[k*hd+hd/2+7], 2e-7, "cos pos %d i 7", p)
			require.InDelta(t, -float32(math.Sin(a7)), got[k*hd+7], 2e-7, "−sin pos %d i 7", p)
		}
	}

	x := h.f32(h.randn(2*2*8, 1), 2, 2, 8)
	pos, inv := h.i32([]int32{0, 1}), h.f32(hfInvFreq(8, 10000))
	y := h.poisoned(2, 2, 8)
	err := h.d.RoPE(y, x, h.i32([]int32{3, -2}), inv, 8, false, false)
	err = requireOpError(t, "negative pos", err)
	require.ErrorContains(t, err, "pos[1] = -2")
	requireOpError(t, "odd rotDim", h.d.RoPE(y, x, pos, inv, 7, false, false))
	requireOpError(t, "rotDim > head_dim", h.d.RoPE(y, x, pos, h.f32(hfInvFreq(10, 10000)), 10, false, false))
	requireOpError(t, "rotDim 0", h.d.RoPE(y, x, pos, inv, 0, false, false))
	requireOpError(t, "y shape", h.d.RoPE(h.poisoned(2, 2, 7), x, pos, inv, 8, false, false))
	requireOpError(t, "y too small", h.d.RoPE(h.poisoned(1, 2, 8), x, pos, inv, 8, false, false))
	requireOpError(t, "x rank", h.d.RoPE(h.poisoned(4, 8), h.f32(make([]float32, 32), 4, 8), pos, inv, 8, false, false))
	requireOpError(t, "nil x", h.d.RoPE(y, Tensor{}, pos, inv, 8, false, false))
	requireOpError(t, "nil pos", h.d.RoPE(y, x, Tensor{}, inv, 8, false, false))
	requireOpError(t, "pos too small", h.d.RoPE(y, x, h.i32([]int32{0}), inv, 8, false, false))
	requireOpError(t, "invFreq too small", h.d.RoPE(y, x, pos, h.f32([]float32{1, 1}), 8, false, false))
	requireOpError(t, "f32 pos", h.d.RoPE(y, x, h.f32([]float32{0, 1}), inv, 8, false, false))
	requireOpError(t, "accumulate in place", h.d.RoPE(x, x, pos, inv, 8, true, true))
}

// nnShape is a model config's activation shape for T = 2048 tokens.
type nnShape struct {
	name                      string
	tokens, hidden, heads, hd int
	vocab                     int
}

var nnShapes = []nnShape{
	{"S", 2048, 256, 4, 64, 2048},
	{"M", 2048, 768, 12, 64, 32000},
}

// benchGBs runs op b.N times and reports bytes moved per call as GB/s.
func benchGBs(b *testing.B, bytes float64, op func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func benchFill(b *testing.B, d *Device, t Tensor, scale float64, seed int) {
	x := make([]float32, t.Len())
	for i := range x {
		x[i] = float32(scale * math.Sin(float64(i*7+seed)))
	}
	require.NoError(b, Upload(t, x))
}

func benchIDs(b *testing.B, t Tensor, vocab int) {
	ids := make([]int32, t.Len())
	for i := range ids {
		ids[i] = int32((i * 7919) % vocab)
	}
	require.NoError(b, Upload(t, ids))
}

func BenchmarkEmbedding(b *testing.B) {
	d := cpuDevice(b)
	for _, s := range nnShapes {
		table, out, ids := d.MustAlloc(F32, s.vocab, s.hidden), d.MustAlloc(F32, s.tokens, s.hidden), d.MustAlloc(I32, s.tokens)
		benchFill(b, d, table, 1, 0)
		benchIDs(b, ids, s.vocab)
		bytes := float64(s.tokens) * (4 + 8*float64(s.hidden))
		b.Run("fwd/"+s.name, func(b *testing.B) {
			benchGBs(b, bytes, func() error { return d.EmbeddingFwd(out, table, ids) })
		})
		b.Run("bwd/"+s.name, func(b *testing.B) {
			benchGBs(b, float64(s.tokens)*(4+12*float64(s.hidden)), func() error { return d.EmbeddingBwd(table, out, ids) })
		})
		d.Free(table)
		d.Free(out)
		d.Free(ids)
	}
}

func BenchmarkRMSNorm(b *testing.B) {
	d := cpuDevice(b)
	for _, s := range nnShapes {
		n := s.tokens * s.hidden
		x, y, dy, dx := d.MustAlloc(F32, s.tokens, s.hidden), d.MustAlloc(F32, s.tokens, s.hidden), d.MustAlloc(F32, s.tokens, s.hidden), d.MustAlloc(F32, s.tokens, s.hidden)
		w, dw, rstd := d.MustAlloc(F32, s.hidden), d.MustAlloc(F32, s.hidden), d.MustAlloc(F32, s.tokens)
		benchFill(b, d, x, 1, 0)
		benchFill(b, d, dy, 1, 1)
		benchFill(b, d, w, 1, 2)
		require.NoError(b, d.Zero(dx))
		require.NoError(b, d.Zero(dw))
		b.Run("fwd/"+s.name, func(b *testing.B) {
			benchGBs(b, 8*float64(n), func() error { return d.RMSNormFwd(y, rstd, x, w, 1e-6) })
		})
		b.Run("bwd/"+s.name, func(b *testing.B) {
			benchGBs(b, 16*float64(n), func() error { return d.RMSNormBwd(dx, dw, x, w, rstd, dy) })
		})
		for _, t := range []Tensor{x, y, dy, dx, w, dw, rstd} {
			d.Free(t)
		}
	}
}

func BenchmarkRoPE(b *testing.B) {
	d := cpuDevice(b)
	for _, s := range nnShapes {
		n := s.tokens * s.heads * s.hd
		x, y := d.MustAlloc(F32, s.tokens, s.heads, s.hd), d.MustAlloc(F32, s.tokens, s.heads, s.hd)
		pos, inv := d.MustAlloc(I32, s.tokens), d.MustAlloc(F32, s.hd/2)
		benchFill(b, d, x, 1, 0)
		p := make([]int32, s.tokens)
		for i := range p {
			p[i] = int32(i % 512)
		}
		require.NoError(b, Upload(pos, p))
		require.NoError(b, Upload(inv, hfInvFreq(s.hd, 10000)))
		b.Run("fwd/"+s.name, func(b *testing.B) {
			benchGBs(b, 8*float64(n), func() error { return d.RoPE(y, x, pos, inv, s.hd, false, false) })
		})
		b.Run("bwd_acc/"+s.name, func(b *testing.B) {
			benchGBs(b, 12*float64(n), func() error { return d.RoPE(y, x, pos, inv, s.hd, true, true) })
		})
		for _, t := range []Tensor{x, y, pos, inv} {
			d.Free(t)
		}
	}
}
