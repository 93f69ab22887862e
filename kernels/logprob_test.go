package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("logprob_fwd", testLogProbFwd)
	register("logprob_bwd", testLogProbBwd)
}

// requireAbs fails unless every |got − want| ≤ tol (for values such as entropies that may be ~0).
func requireAbs(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= tol) {
			t.Fatalf("%s: [%d] got %g, want %g (|diff| %.3g > %.3g)", what, i, got[i], want[i], d, tol)
		}
	}
}

func randTargets(h *harness, n, vocab int, negatives bool) []int32 {
	tg := make([]int32, n)
	for i := range tg {
		tg[i] = int32(h.rng.IntN(vocab))
		if negatives && i%3 == 1 {
			tg[i] = -1
		}
	}
	return tg
}

// lpCase runs the forward on logits [n, ld] (first vocab columns) and checks it against the reference.
func lpCase(t *testing.T, h *harness, what string, x []float32, n, vocab, ld int, tg []int32, invTemp float32, ign bool) (lse []float32) {
	t.Helper()
	logp, ent, tl := h.poisoned(n), h.poisoned(n), h.poisoned(n)
	require.NoError(t, h.d.logProbFwd(logp, ent, tl, h.f32(x, n, ld), h.i32(tg), invTemp, ign, vocab), what)
	wl, we, wz := make([]float32, n), make([]float32, n), make([]float32, n)
	ref.LogProbFwd(wl, we, wz, x, tg, vocab, ld, float64(invTemp), ign)
	requireClose(t, what+" logp", h.get(logp), wl, 1e-5)
	requireClose(t, what+" lse", h.get(tl), wz, 1e-5)
	// entropy relative to its natural scale log(vocab): near-one-hot rows have entropies of ~0
	requireAbs(t, what+" entropy", h.get(ent), we, 2e-5*math.Max(1, math.Log(float64(vocab))))
	return h.get(tl)
}

func testLogProbFwd(t *testing.T, h *harness) {
	for _, c := range []struct{ n, vocab int }{{5, 1}, {7, 7}, {3, 33}, {9, 2048}, {4, 32000}, {2, 151936}} {
		for _, it := range []float32{1, 0.7} {
			x := h.randn(c.n*c.vocab, 3)
			lpCase(t, h, fmt.Sprintf("n=%d vocab=%d invTemp=%g", c.n, c.vocab, it), x, c.n, c.vocab, c.vocab,
				randTargets(h, c.n, c.vocab, true), it, true)
		}
	}
	// huge logits, and masked columns (−1e30 and −inf) that must contribute nothing and give no NaN
	n, v := 6, 2048
	x := h.randn(n*v, 1e4)
	for r := 0; r < n; r++ {
		x[r*v+5] = -1e30
		x[r*v+6] = float32(math.Inf(-1))
	}
	lpCase(t, h, "scale 1e4, masked columns", x, n, v, v, randTargets(h, n, 5, false), 1, false)
	x = h.randn(n*v, 1)
	for i := range x {
		x[i] += 1e30 / 8 // a large common offset: only differences may matter
	}
	lpCase(t, h, "offset 1e29", x, n, v, v, randTargets(h, n, v, false), 1, false)

	// ld > vocab: the padding columns hold values that would dominate if they were read
	n, v, ld := 5, 1001, 1040
	x = h.randn(n*ld, 2)
	for r := 0; r < n; r++ {
		for j := v; j < ld; j++ {
			x[r*ld+j] = 1e30
		}
	}
	lpCase(t, h, "ld > vocab", x, n, v, ld, randTargets(h, n, v, false), 1.3, false)
	// an odd ld: every row starts at another alignment (a GPU reads rows in 16-byte vectors between a
	// scalar head and tail)
	n, v, ld = 7, 1001, 1003
	x = h.randn(n*ld, 2)
	lpCase(t, h, "odd ld", x, n, v, ld, randTargets(h, n, v, true), 0.9, true)

	// optional outputs: logp alone
	x = h.randn(3*17, 1)
	tg := randTargets(h, 3, 17, false)
	logp := h.poisoned(3)
	require.NoError(t, h.d.LogProbFwd(logp, Tensor{}, Tensor{}, h.f32(x, 3, 17), h.i32(tg), 1, false))
	want := make([]float32, 3)
	ref.LogProbFwd(want, nil, nil, x, tg, 17, 17, 1, false)
	requireClose(t, "logp only", h.get(logp), want, 1e-5)

	lg := h.f32(x, 3, 17)
	requireOpError(t, "target ≥ vocab", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, lg, h.i32([]int32{0, 17, 1}), 1, false))
	requireOpError(t, "negative target without ignoreNegative", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, lg, h.i32([]int32{0, -1, 1}), 1, false))
	requireOpError(t, "target ≤ -vocab", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, lg, h.i32([]int32{0, 1, 99}), 1, true))
	requireOpError(t, "nil logits", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, Tensor{}, h.i32(tg), 1, false))
	requireOpError(t, "rank-1 logits", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, h.f32(x), h.i32(tg), 1, false))
	requireOpError(t, "short targets", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, lg, h.i32(tg[:2]), 1, false))
	requireOpError(t, "f32 targets", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, lg, h.f32([]float32{0, 1, 2}), 1, false))
	requireOpError(t, "short logp", h.d.LogProbFwd(h.poisoned(2), Tensor{}, Tensor{}, lg, h.i32(tg), 1, false))
	requireOpError(t, "no outputs", h.d.LogProbFwd(Tensor{}, Tensor{}, Tensor{}, lg, h.i32(tg), 1, false))
	requireOpError(t, "invTemp 0", h.d.LogProbFwd(h.poisoned(3), Tensor{}, Tensor{}, lg, h.i32(tg), 0, false))
}

func testLogProbBwd(t *testing.T, h *harness) {
	for _, c := range []struct{ n, vocab, ld int }{{4, 1, 1}, {5, 7, 7}, {6, 33, 40}, {9, 2048, 2048}, {3, 32000, 32003}} {
		for _, it := range []float32{1, 0.7} {
			what := fmt.Sprintf("n=%d vocab=%d ld=%d invTemp=%g", c.n, c.vocab, c.ld, it)
			x := h.randn(c.n*c.ld, 3)
			tg := randTargets(h, c.n, c.vocab, true)
			lse := lpCase(t, h, what, x, c.n, c.vocab, c.ld, tg, it, true)
			coef := h.randn(c.n, 1)
			want := append([]float32(nil), x...) // padding columns must keep their values
			ref.LogProbBwd(want, x, tg, lse, coef, c.vocab, c.ld, float64(it), true)

			dx := h.f32(h.randn(c.n*c.ld, 1), c.n, c.ld)
			pad := h.get(dx)
			for r := 0; r < c.n; r++ {
				copy(want[r*c.ld+c.vocab:(r+1)*c.ld], pad[r*c.ld+c.vocab:(r+1)*c.ld])
			}
			require.NoError(t, h.d.logProbBwd(dx, h.f32(x, c.n, c.ld), h.i32(tg), h.f32(lse), h.f32(coef), it, true, c.vocab))
			requireClose(t, what+" dlogits", h.get(dx), want, 1e-5)

			// in place: the gradient replaces the logits
			in := h.f32(x, c.n, c.ld)
			for r := 0; r < c.n; r++ {
				copy(want[r*c.ld+c.vocab:(r+1)*c.ld], x[r*c.ld+c.vocab:(r+1)*c.ld])
			}
			require.NoError(t, h.d.logProbBwd(in, in, h.i32(tg), h.f32(lse), h.f32(coef), it, true, c.vocab))
			requireClose(t, what+" dlogits in place", h.get(in), want, 1e-5)
		}
	}

	// against finite differences of L = Σ coef·logp from the float64 reference forward
	for _, c := range []struct{ n, vocab int }{{3, 7}, {4, 33}, {2, 130}} {
		x := h.randn(c.n*c.vocab, 2)
		tg := randTargets(h, c.n, c.vocab, true)
		coef := h.randn(c.n, 1)
		const it = 0.8
		lse := h.poisoned(c.n)
		lg := h.f32(x, c.n, c.vocab)
		require.NoError(t, h.d.LogProbFwd(Tensor{}, Tensor{}, lse, lg, h.i32(tg), it, true))
		dx := h.poisoned(c.n, c.vocab)
		require.NoError(t, h.d.LogProbBwd(dx, lg, h.i32(tg), lse, h.f32(coef), it, true))
		c64 := f64(coef)
		h.fdCheck(fmt.Sprintf("logprob n=%d vocab=%d", c.n, c.vocab), func(z []float64) float64 {
			lp := make([]float64, c.n)
			ref.LogProbFwd(lp, nil, nil, z, tg, c.vocab, c.vocab, it, true)
			return dot(c64, lp)
		}, f64(x), h.get(dx), 64, 1e-3)
	}

	x := h.randn(3*5, 1)
	lg := h.f32(x, 3, 5)
	ok := h.i32([]int32{0, 1, 2})
	ones := h.f32([]float32{1, 1, 1})
	requireOpError(t, "target ≥ vocab", h.d.LogProbBwd(h.poisoned(3, 5), lg, h.i32([]int32{0, 5, 1}), ones, ones, 1, false))
	requireOpError(t, "negative target", h.d.LogProbBwd(h.poisoned(3, 5), lg, h.i32([]int32{0, -1, 1}), ones, ones, 1, false))
	requireOpError(t, "shape mismatch", h.d.LogProbBwd(h.poisoned(3, 6), lg, ok, ones, ones, 1, false))
	requireOpError(t, "nil lse", h.d.LogProbBwd(h.poisoned(3, 5), lg, ok, Tensor{}, ones, 1, false))
	requireOpError(t, "short coef", h.d.LogProbBwd(h.poisoned(3, 5), lg, ok, ones, h.f32([]float32{1}), 1, false))
}

func BenchmarkLogProb(b *testing.B) {
	d := cpuDevice(b)
	for _, c := range []struct{ n, vocab int }{{2048, 2048}, {2048, 32000}} {
		b.Run(fmt.Sprintf("fwd+bwd/n=%d/vocab=%d", c.n, c.vocab), func(b *testing.B) {
			x := d.MustAlloc(F32, c.n, c.vocab)
			tg, lse, logp, coef := d.MustAlloc(I32, c.n), d.MustAlloc(F32, c.n), d.MustAlloc(F32, c.n), d.MustAlloc(F32, c.n)
			for _, t := range []Tensor{x, tg, lse, logp, coef} {
				defer d.Free(t)
			}
			xs := x.F32()
			for i := range xs {
				xs[i] = float32(math.Sin(float64(i))) * 4
			}
			for i := range tg.I32() {
				tg.I32()[i] = int32(i % c.vocab)
				coef.F32()[i] = 1
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// the backward overwrites the logits in place, as training does; the values stay bounded
				if err := d.LogProbFwd(logp, Tensor{}, lse, x, tg, 1, false); err != nil {
					b.Fatal(err)
				}
				if err := d.LogProbBwd(x, x, tg, lse, coef, 1, false); err != nil {
					b.Fatal(err)
				}
			}
			bytes := 12 * float64(c.n) * float64(c.vocab) // fwd reads; bwd reads and writes
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
