package kernels

import (
	"fmt"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("add", testAdd)
	register("scale", testScale)
	register("swiglu", testSwiGLU)
	register("bias", testBias)
}

func testAdd(t *testing.T, h *harness) {
	for _, n := range append(awkward, 100_003) {
		x, y := h.randn(n, 1), h.randn(n, 1)
		out := h.poisoned(n)
		require.NoError(t, h.d.Add(out, h.f32(x), h.f32(y), 0.5))
		want := make([]float32, n)
		ref.Add(want, x, y, 0.5)
		requireClose(t, fmt.Sprintf("add n=%d", n), h.get(out), want, 1e-6)
	}
	// in place: out aliases x
	x, y := h.randn(37, 1), h.randn(37, 1)
	tx := h.f32(x)
	require.NoError(t, h.d.Add(tx, tx, h.f32(y), 1))
	want := make([]float32, 37)
	ref.Add(want, x, y, 1)
	requireClose(t, "add in place", h.get(tx), want, 1e-6)

	requireOpError(t, "nil x", h.d.Add(h.poisoned(4), Tensor{}, h.f32(y[:4]), 1))
	requireOpError(t, "short y", h.d.Add(h.poisoned(8), h.f32(x[:8]), h.f32(y[:4]), 1))
	requireOpError(t, "i32 x", h.d.Add(h.poisoned(2), h.i32([]int32{1, 2}), h.f32(y[:2]), 1))
}

func testScale(t *testing.T, h *harness) {
	for _, n := range append(awkward, 100_003) {
		x := h.randn(n, 3)
		out := h.poisoned(n)
		require.NoError(t, h.d.Scale(out, h.f32(x), -0.25))
		want := make([]float32, n)
		ref.Scale(want, x, -0.25)
		requireClose(t, fmt.Sprintf("scale n=%d", n), h.get(out), want, 1e-6)
	}
	requireOpError(t, "nil out", h.d.Scale(Tensor{}, h.f32([]float32{1}), 2))
}

func testSwiGLU(t *testing.T, h *harness) {
	for _, n := range append(awkward, 70_001) {
		g, u, dout := h.randn(n, 4), h.randn(n, 1), h.randn(n, 1)
		out := h.poisoned(n)
		require.NoError(t, h.d.SwiGLUFwd(out, h.f32(g), h.f32(u)))
		want := make([]float32, n)
		ref.SwiGLUFwd(want, g, u)
		requireClose(t, fmt.Sprintf("swiglu_fwd n=%d", n), h.get(out), want, 1e-5)

		// the gradients are written, not accumulated: NaN in them beforehand is never read
		dg, du := h.poisoned(n), h.poisoned(n)
		require.NoError(t, h.d.SwiGLUBwd(dg, du, h.f32(g), h.f32(u), h.f32(dout)))
		wg, wu := make([]float32, n), make([]float32, n)
		ref.SwiGLUBwd(wg, wu, g, u, dout)
		requireClose(t, "swiglu_bwd dgate", h.get(dg), wg, 1e-5)
		requireClose(t, "swiglu_bwd dup", h.get(du), wu, 1e-5)

		if n <= 257 {
			// ∂⟨dout, swiglu(g,u)⟩/∂g against finite differences
			u64, d64 := f64(u), f64(dout)
			h.fdCheck("swiglu dgate", func(x []float64) float64 {
				y := make([]float64, n)
				ref.SwiGLUFwd(y, x, u64)
				return dot(d64, y)
			}, f64(g), h.get(dg), 64, 1e-3)
		}
	}
	requireOpError(t, "short up", h.d.SwiGLUFwd(h.poisoned(8), h.f32(make([]float32, 8)), h.f32(make([]float32, 3))))
}

func testBias(t *testing.T, h *harness) {
	for _, rows := range []int{1, 3, 129, 3001} {
		for _, dim := range []int{1, 7, 33, 96} {
			y0, b := h.randn(rows*dim, 1), h.randn(dim, 1)
			y := h.f32(y0, rows, dim)
			require.NoError(t, h.d.BiasAdd(y, h.f32(b)))
			want := append([]float32(nil), y0...)
			ref.BiasAdd(want, b)
			requireClose(t, fmt.Sprintf("bias_add %dx%d", rows, dim), h.get(y), want, 1e-6)

			db0 := h.randn(dim, 1)
			db := h.f32(db0)
			require.NoError(t, h.d.BiasBwd(db, h.f32(y0, rows, dim)))
			wdb := append([]float32(nil), db0...)
			ref.BiasBwd(wdb, y0)
			requireClose(t, fmt.Sprintf("bias_bwd %dx%d", rows, dim), h.get(db), wdb, 1e-5)
		}
	}
	// Tall: a GPU's row chunks (64 rows each) would pass grid.y's 65535.
	const rows, dim = 4194305, 2
	dy0, db0 := h.randn(rows*dim, 1), h.randn(dim, 1)
	db := h.f32(db0)
	require.NoError(t, h.d.BiasBwd(db, h.f32(dy0, rows, dim)))
	wdb := append([]float32(nil), db0...)
	ref.BiasBwd(wdb, dy0)
	requireClose(t, "bias_bwd tall", h.get(db), wdb, 1e-5)

	requireOpError(t, "bias length mismatch", h.d.BiasAdd(h.poisoned(4, 5), h.f32(make([]float32, 4))))
}

func BenchmarkAdd(b *testing.B) {
	d := cpuDevice(b)
	for _, n := range []int{4096, 1 << 20, 1 << 24} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x, y := d.MustAlloc(F32, n), d.MustAlloc(F32, n)
			defer d.Free(x)
			defer d.Free(y)
			b.ReportAllocs()
			b.SetBytes(int64(12 * n))
			for i := 0; i < b.N; i++ {
				if err := d.Add(x, x, y, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCall is the cost of one trivial native op call: the purego round trip plus Go-side checks.
func BenchmarkCall(b *testing.B) {
	d := cpuDevice(b)
	x := d.MustAlloc(F32, 1)
	defer d.Free(x)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := d.Scale(x, x, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSwiGLU: the forward and backward over a decode step's MLP (64 rows of the built-in model's
// 704 and of Qwen2.5-0.5B's 4864) and a training batch (1024 rows of 4864), f32 and bf16, as GB/s of
// the bytes each must move (an exponential per element makes them compute-bound on a CPU).
func BenchmarkSwiGLU(b *testing.B) {
	d := cpuDevice(b)
	for _, s := range []struct {
		name       string
		rows, cols int
	}{{"decode-builtin", 64, 704}, {"decode-0.5B", 64, 4864}, {"train-0.5B", 1024, 4864}} {
		for _, dt := range []DType{F32, BF16} {
			n := s.rows * s.cols
			g, u, o, dg, du := d.MustAlloc(dt, n), d.MustAlloc(dt, n), d.MustAlloc(dt, n), d.MustAlloc(dt, n), d.MustAlloc(dt, n)
			f := d.MustAlloc(F32, n)
			for i, t := range []Tensor{g, u, o} {
				benchFill(b, d, f, []float64{4, 1, 1}[i], i)
				require.NoError(b, d.Cast(t, f))
			}
			d.Free(f)
			require.NoError(b, d.Zero(dg))
			require.NoError(b, d.Zero(du))
			es := float64(dt.Size())
			b.Run(fmt.Sprintf("fwd/%s/%v", s.name, dt), func(b *testing.B) {
				benchGBs(b, 3*es*float64(n), func() error { return d.SwiGLUFwd(o, g, u) })
			})
			b.Run(fmt.Sprintf("bwd/%s/%v", s.name, dt), func(b *testing.B) {
				benchGBs(b, 5*es*float64(n), func() error { return d.SwiGLUBwd(dg, du, g, u, o) })
			})
			for _, t := range []Tensor{g, u, o, dg, du} {
				d.Free(t)
			}
		}
	}
}
