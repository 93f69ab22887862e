package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("whiten", testWhiten)
	register("group_baseline", testGroupBaseline)
	register("grad_norm", testGradNorm)
	register("adamw", testAdamW)
}

func randMask(h *harness, n int) []float32 {
	m := make([]float32, n)
	for i := range m {
		if h.rng.IntN(4) != 0 {
			m[i] = 1
		}
	}
	m[0] = 1 // never all zero
	return m
}

func testWhiten(t *testing.T, h *harness) {
	// by hand: x = [1,2,3,4], mask [1,1,1,0]: μ = 2, σ² = 2/3, y = (x−2)/sqrt(2/3) on the masked ones
	y, st := h.poisoned(4), h.poisoned(2)
	require.NoError(t, h.d.Whiten(y, st, h.f32([]float32{1, 2, 3, 4}), h.f32([]float32{1, 1, 1, 0}), true, 1e-8))
	s := float32(math.Sqrt(1.5))
	requireClose(t, "whiten by hand", h.get(y), []float32{-s, 0, s, 0}, 1e-6)
	requireClose(t, "whiten stats by hand", h.get(st), []float32{2, 2.0 / 3}, 1e-6)

	for _, n := range append(awkward, 100_003, 300_007) {
		for _, stdNorm := range []bool{true, false} {
			x := h.randn(n, 2)
			for i := range x {
				x[i] += 0.5
			}
			mask := randMask(h, n)
			y, st := h.poisoned(n), h.poisoned(2)
			require.NoError(t, h.d.Whiten(y, st, h.f32(x), h.f32(mask), stdNorm, 1e-8))
			want := make([]float32, n)
			mu, v := ref.Whiten(want, x, mask, stdNorm, 1e-8)
			what := fmt.Sprintf("whiten n=%d std=%v", n, stdNorm)
			requireClose(t, what, h.get(y), want, 1e-5)
			requireClose(t, what+" stats", h.get(st), []float32{float32(mu), float32(v)}, 1e-5)
		}
	}
	// in place, and a constant input where eps bounds the divisor
	x := h.randn(77, 1)
	mask := randMask(h, 77)
	tx := h.f32(x)
	require.NoError(t, h.d.Whiten(tx, h.poisoned(2), tx, h.f32(mask), true, 1e-8))
	want := make([]float32, 77)
	ref.Whiten(want, x, mask, true, 1e-8)
	requireClose(t, "whiten in place", h.get(tx), want, 1e-5)
	c := h.f32([]float32{3, 3, 3})
	require.NoError(t, h.d.Whiten(c, h.poisoned(2), c, h.f32([]float32{1, 1, 1}), true, 1e-8))
	require.Equal(t, []float32{0, 0, 0}, h.get(c))

	requireOpError(t, "zero mask", h.d.Whiten(h.poisoned(3), h.poisoned(2), h.f32([]float32{1, 2, 3}), h.f32([]float32{0, 0, 0}), true, 1e-8))
	requireOpError(t, "short mask", h.d.Whiten(h.poisoned(3), h.poisoned(2), h.f32([]float32{1, 2, 3}), h.f32([]float32{1, 1}), true, 1e-8))
	requireOpError(t, "short stats", h.d.Whiten(h.poisoned(3), h.poisoned(1), h.f32([]float32{1, 2, 3}), h.f32([]float32{1, 1, 1}), true, 1e-8))
	requireOpError(t, "nil x", h.d.Whiten(h.poisoned(3), h.poisoned(2), Tensor{}, h.f32([]float32{1, 1, 1}), true, 1e-8))
}

func testGroupBaseline(t *testing.T, h *harness) {
	run := func(r []float32, mode GroupMode, G int) []float32 {
		y := h.poisoned(len(r))
		require.NoError(t, h.d.GroupBaseline(y, h.f32(r), mode, G, 1e-9))
		return h.get(y)
	}
	// GRPO (docs/SERL.md §5.2): mean 0.5, Bessel std sqrt(1/3) → ±0.5·sqrt(3) = ±0.866…
	g := float32(0.5 * math.Sqrt(3))
	requireClose(t, "grpo [1,0,0,1]", run([]float32{1, 0, 0, 1}, GroupZScore, 4), []float32{g, -g, -g, g}, 1e-6)
	require.Equal(t, []float32{0, 0, 0, 0, 0, 0}, run([]float32{1, 1, 1, 0, 0, 0}, GroupZScore, 3), "identical rewards give 0")
	third := float32(1.0 / 3)
	requireClose(t, "rloo [1,0,0,0]", run([]float32{1, 0, 0, 0}, GroupRLOO, 4), []float32{1, -third, -third, -third}, 1e-6)
	requireClose(t, "center [1,0,0,0]", run([]float32{1, 0, 0, 0}, GroupCenter, 4), []float32{0.75, -0.25, -0.25, -0.25}, 1e-6)

	for _, G := range []int{2, 3, 16, 33} {
		for _, groups := range []int{1, 7, 64} {
			r := make([]float32, G*groups)
			for i := range r {
				r[i] = float32(h.rng.IntN(2)) + float32(h.rng.NormFloat64()*0.1)
			}
			for _, mode := range []GroupMode{GroupZScore, GroupRLOO, GroupCenter} {
				want := make([]float32, len(r))
				ref.GroupBaseline(want, r, int(mode), G, 1e-9)
				requireClose(t, fmt.Sprintf("group mode=%d G=%d groups=%d", mode, G, groups), run(r, mode, G), want, 1e-5)
			}
		}
	}
	r := []float32{1, 0, 2, 5, 3, 3}
	tr := h.f32(r)
	require.NoError(t, h.d.GroupBaseline(tr, tr, GroupRLOO, 3, 0))
	want := make([]float32, 6)
	ref.GroupBaseline(want, r, ref.GroupRLOO, 3, 0)
	requireClose(t, "group in place", h.get(tr), want, 1e-6)

	requireOpError(t, "size not a multiple", h.d.GroupBaseline(h.poisoned(5), h.f32(make([]float32, 5)), GroupCenter, 2, 0))
	requireOpError(t, "z-score of groups of 1", h.d.GroupBaseline(h.poisoned(3), h.f32(make([]float32, 3)), GroupZScore, 1, 0))
	requireOpError(t, "RLOO of groups of 1", h.d.GroupBaseline(h.poisoned(3), h.f32(make([]float32, 3)), GroupRLOO, 1, 0))
	requireOpError(t, "bad mode", h.d.GroupBaseline(h.poisoned(4), h.f32(make([]float32, 4)), GroupMode(7), 2, 0))
	requireOpError(t, "short y", h.d.GroupBaseline(h.poisoned(3), h.f32(make([]float32, 4)), GroupCenter, 2, 0))
}

func testGradNorm(t *testing.T, h *harness) {
	// by hand: |(3,4)| = 5, clipped to 1: scale 1/(5 + 1e-6)
	g, nrm := h.f32([]float32{3, 4}), h.poisoned(1)
	require.NoError(t, h.d.GradNorm(nrm, g, 1))
	require.Equal(t, []float32{5}, h.get(nrm))
	requireClose(t, "clip by hand", h.get(g), []float32{float32(3 / (5 + 1e-6)), float32(4 / (5 + 1e-6))}, 1e-7)

	for _, n := range append(awkward, 65_536, 1_000_003) {
		for _, maxNorm := range []float32{0, 1, 1e9} {
			x := h.randn(n, 0.3)
			tg, nrm := h.f32(x), h.poisoned(1)
			require.NoError(t, h.d.GradNorm(nrm, tg, maxNorm))
			want := append([]float32(nil), x...)
			norm := ref.GradNorm(want, float64(maxNorm))
			what := fmt.Sprintf("grad_norm n=%d max=%g", n, maxNorm)
			requireClose(t, what+" norm", h.get(nrm), []float32{float32(norm)}, 1e-6)
			requireClose(t, what+" g", h.get(tg), want, 1e-6)
		}
	}
	// non-finite norm: g untouched, the norm reported
	x := []float32{1, float32(math.Inf(1)), 2}
	tg := h.f32(x)
	require.NoError(t, h.d.GradNorm(nrm, tg, 1))
	require.True(t, math.IsInf(float64(h.get(nrm)[0]), 1))
	require.Equal(t, x, h.get(tg))

	requireOpError(t, "nil norm", h.d.GradNorm(Tensor{}, h.f32([]float32{1}), 1))
	requireOpError(t, "negative max", h.d.GradNorm(h.poisoned(1), h.f32([]float32{1}), -1))
	requireOpError(t, "i32 g", h.d.GradNorm(h.poisoned(1), h.i32([]int32{1}), 1))
}

func testAdamW(t *testing.T, h *harness) {
	// by hand, step 1 from zero moments: m̂ = g, v̂ = g², so p ← p(1 − lr·wd) − lr·g/(|g| + eps)
	p, m, v := h.f32([]float32{1, -2}), h.f32([]float32{0, 0}), h.f32([]float32{0, 0})
	require.NoError(t, h.d.AdamW(p, h.f32([]float32{0.5, -3}), m, v,
		AdamWParams{Step: 1, LR: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.5}))
	requireClose(t, "adamw by hand", h.get(p), []float32{1*0.95 - 0.1, -2*0.95 + 0.1}, 1e-6)

	hp := AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: 0.5}
	for _, n := range append(awkward, 100_003) {
		p0, m0, v0 := h.randn(n, 1), h.randn(n, 0.01), h.randn(n, 1e-4)
		for i := range v0 {
			v0[i] *= v0[i]
		}
		tp, tm, tv := h.f32(p0), h.f32(m0), h.f32(v0)
		wp, wm, wv := f64(p0), f64(m0), f64(v0)
		for step := 1; step <= 5; step++ {
			g := h.randn(n, 0.02)
			hp.Step = step
			require.NoError(t, h.d.AdamW(tp, h.f32(g), tm, tv, hp))
			ref.AdamW(wp, f64(g), wm, wv, step, float64(hp.LR), float64(hp.Beta1), float64(hp.Beta2), float64(hp.Eps),
				float64(hp.WeightDecay), float64(hp.GradScale))
		}
		what := fmt.Sprintf("adamw n=%d after 5 steps", n)
		requireClose(t, what+" p", h.get(tp), f32s(wp), 1e-5)
		requireClose(t, what+" m", h.get(tm), f32s(wm), 1e-5)
		requireClose(t, what+" v", h.get(tv), f32s(wv), 1e-5)
	}

	ok := h.f32([]float32{1, 2})
	requireOpError(t, "step 0", h.d.AdamW(ok, ok, h.f32([]float32{0, 0}), h.f32([]float32{0, 0}), AdamWParams{LR: 1, Beta1: 0.9, Beta2: 0.9}))
	requireOpError(t, "beta 1", h.d.AdamW(ok, ok, h.f32([]float32{0, 0}), h.f32([]float32{0, 0}), AdamWParams{Step: 1, Beta1: 1, Beta2: 0.9}))
	requireOpError(t, "short v", h.d.AdamW(ok, ok, h.f32([]float32{0, 0}), h.f32([]float32{0}), AdamWParams{Step: 1}))
	requireOpError(t, "nil g", h.d.AdamW(ok, Tensor{}, h.f32([]float32{0, 0}), h.f32([]float32{0, 0}), AdamWParams{Step: 1}))
}

func f32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

const benchParams = 10_000_000

func BenchmarkAdamW(b *testing.B) {
	d := cpuDevice(b)
	p, g, m, v := d.MustAlloc(F32, benchParams), d.MustAlloc(F32, benchParams), d.MustAlloc(F32, benchParams), d.MustAlloc(F32, benchParams)
	for _, t := range []Tensor{p, g, m, v} {
		defer d.Free(t)
		if err := d.Zero(t); err != nil {
			b.Fatal(err)
		}
	}
	h := AdamWParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.01, GradScale: 1}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Step = i + 1
		if err := d.AdamW(p, g, m, v, h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(28*benchParams*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s") // p, m, v read+written; g read
}

func BenchmarkGradNorm(b *testing.B) {
	d := cpuDevice(b)
	g, nrm := d.MustAlloc(F32, benchParams), d.MustAlloc(F32, 1)
	defer d.Free(g)
	defer d.Free(nrm)
	gs := g.F32()
	for i := range gs {
		gs[i] = 1e-4
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.GradNorm(nrm, g, 1e9); err != nil { // measure the norm; clipping would add a pass
			b.Fatal(err)
		}
	}
	b.ReportMetric(4*benchParams*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}
