package rl

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"
	"github.com/serl-go/serl/kernels/ref"
)

// ppoCoefficients is one sequence's PPO-clip loss, clipped-token count, KL sum and coefficients by the
// formula's one statement (ref.PPOSequence, in float64), checked against the device op that the
// engine runs (kernels.PPOCoef on the CPU device, the sequence at packed offset 2 of a longer batch):
// the same coefficients and sums to float32 rounding (the device stores the sums as float32 and takes ε
// and β as float32; measured 1.8e-9 on the coefficients, 5.7e-9 on the loss, 1.4e-8 on the KL sum,
// relative to 1 + |value|), 0 off the sequence.
func ppoCoefficients(t *testing.T, c Config, logp, logpOld, logpRef, adv []float32, nSeqs int, coef []float32) (loss float64, clipped int, kl float64) {
	t.Helper()
	loss, clipped, kl = ref.PPOSequence(coef, logp, logpOld, logpRef, adv, nSeqs, c.ClipEps, c.KLCoef, c.Algorithm == GRPO)

	d := testenv.CPU(t)
	T := len(logp)
	up := func(v []float32) kernels.Tensor {
		x, err := d.Alloc(kernels.F32, len(v))
		require.NoError(t, err)
		t.Cleanup(func() { d.Free(x) })
		require.NoError(t, kernels.Upload(x, v))
		return x
	}
	packed := append(append([]float32{-3, -4}, logp...), -5)
	idx, err := d.Alloc(kernels.I32, 3)
	require.NoError(t, err)
	t.Cleanup(func() { d.Free(idx) })
	require.NoError(t, kernels.Upload(idx, []int32{2, 0, int32(T)}))
	nan := make([]float32, T+3)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	dc, ds := up(nan), up(nan[:3])
	require.NoError(t, d.PPOCoef(dc, ds, up(packed), up(logpOld), up(logpRef), up(adv), idx.MustSlice(0, 1), idx.MustSlice(1, 3), 1, nSeqs, 0, T+3,
		kernels.PPO{ClipEps: float32(c.ClipEps), KLCoef: float32(c.KLCoef), GRPO: c.Algorithm == GRPO}))
	gc, gs := make([]float32, T+3), make([]float32, 3)
	require.NoError(t, kernels.Download(gc, dc))
	require.NoError(t, kernels.Download(gs, ds))
	require.Equal(t, []float32{0, 0}, gc[:2])
	require.Equal(t, float32(0), gc[T+2])
	for i := range coef {
		require.InDelta(t, coef[i], gc[2+i], 7e-9*(1+math.Abs(float64(coef[i]))), "device coefficient %d", i)
	}
	require.InDelta(t, loss, float64(gs[0]), 2.3e-8*(1+math.Abs(loss)), "device loss")
	require.Equal(t, float32(clipped), gs[1], "device clipped tokens")
	require.InDelta(t, kl, float64(gs[2]), 5.5e-8*(1+math.Abs(kl)), "device KL")
	return loss, clipped, kl
}

// refLoss is the sample's loss written plainly from docs/SERL.md §5.4 in float64: the mean over its T tokens of
// −min(ρA, clip(ρ)A) (+ β·k3 for grpo), divided by nSeqs.
func refLoss(c Config, logp, old, ref, adv []float64, nSeqs int) float64 {
	sum := 0.0
	for t := range logp {
		rho := math.Exp(logp[t] - old[t])
		cl := math.Min(math.Max(rho, 1-c.ClipEps), 1+c.ClipEps)
		sum -= math.Min(rho*adv[t], cl*adv[t])
		if c.Algorithm == GRPO {
			d := logp[t] - ref[t]
			sum += c.KLCoef * (math.Exp(-d) - 1 + d)
		}
	}
	return sum / float64(len(logp)*nSeqs)
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// The five tokens, with logp_old = logp_ref = −1, ε = 0.2, nSeqs = 2, T = 5 (weight 1/10):
//
//	t  logp−old  ρ          A     surr1       clip(ρ)A  ℓ            ∂ℓ/∂logp
//	0  0.1       1.1051709  2     2.2103418   2.2103418 −2.2103418   −ρA = −2.2103418  (inside)
//	1  0.3       1.3498588  1     1.3498588   1.2       −1.2         0 (clipped: ρ > 1.2, A > 0)
//	2  0.3       1.3498588  −1    −1.3498588  −1.2      1.3498588    −ρA = 1.3498588   (unclipped is min)
//	3  −0.5      0.6065307  −0.5  −0.3032653  −0.4      0.4          0 (clipped: ρ < 0.8, A < 0)
//	4  −0.5      0.6065307  0.5   0.3032653   0.4       −0.3032653   −ρA = −0.3032653  (unclipped is min)
//
// Σℓ = −1.9637484 ⇒ loss −0.19637484; Σ k1(logp − ref) = 0.1 + 0.3 + 0.3 − 0.5 − 0.5 = −0.3.
// GRPO, β = 0.1, adds β·k3(d)/10 to the loss and β·(1 − e^−d)/10 to each coefficient:
// k3(0.1) = 0.0048374180, k3(0.3) = 0.0408182207, k3(−0.5) = 0.1487212707, Σk3 = 0.3839164008;
// 1 − e^−0.1 = 0.0951625820, 1 − e^−0.3 = 0.2591817793, 1 − e^0.5 = −0.6487212707.
var (
	ppoLogp = []float32{-0.9, -0.7, -0.7, -1.5, -1.5}
	ppoOld  = []float32{-1, -1, -1, -1, -1}
	ppoRef  = []float32{-1, -1, -1, -1, -1}
	ppoAdv  = []float32{2, 1, -1, -0.5, 0.5}
)

func TestPPOCoefficientsByHand(t *testing.T) {
	coef := make([]float32, 5)
	loss, clipped, kl := ppoCoefficients(t, DefaultConfig(ReinforcePP), ppoLogp, ppoOld, ppoRef, ppoAdv, 2, coef)
	require.InDelta(t, -0.19637484, loss, 1e-6)
	require.Equal(t, 2, clipped)
	require.InDelta(t, -0.3, kl, 1e-6)
	want := []float64{-0.22103418, 0, 0.13498588, 0, -0.03032653}
	for i, w := range want {
		require.InDelta(t, w, float64(coef[i]), 1e-6, "token %d", i)
	}

	c := DefaultConfig(GRPO)
	c.KLCoef = 0.1
	loss, clipped, kl = ppoCoefficients(t, c, ppoLogp, ppoOld, ppoRef, ppoAdv, 2, coef)
	require.InDelta(t, -0.19637484+0.1*0.3839164008/10, loss, 1e-6)
	require.Equal(t, 2, clipped)
	require.InDelta(t, 0.3839164008, kl, 1e-6)
	want = []float64{-0.22103418 + 0.00095162582, 0.0025918178, 0.13498588 + 0.0025918178, -0.0064872127, -0.03032653 - 0.0064872127}
	for i, w := range want {
		require.InDelta(t, w, float64(coef[i]), 1e-6, "token %d", i)
	}
}

// Every coefficient is the derivative of the plainly written loss, by central differences, at ratios
// inside and on both sides outside the clip range, for A > 0, A < 0 and A = 0.
func TestPPOCoefficientsFiniteDifferences(t *testing.T) {
	logp := []float32{-0.9, -0.7, -0.7, -1.5, -1.5, -1.1, -0.95, -2, -0.4}
	old := []float32{-1, -1, -1, -1, -1, -1, -1, -1, -1}
	ref := []float32{-1.2, -0.5, -1, -0.3, -1.4, -1, -2, -1.5, -0.1}
	adv := []float32{2, 1, -1, -0.5, 0.5, -1.3, 0.7, 0, 0}
	for _, c := range []Config{DefaultConfig(ReinforcePP), DefaultConfig(RLOO), {Algorithm: GRPO, KLCoef: 0.3, ClipEps: 0.1, RewardClip: 10}} {
		coef := make([]float32, len(logp))
		loss, _, _ := ppoCoefficients(t, c, logp, old, ref, adv, 3, coef)
		x := f64(logp)
		require.InDelta(t, refLoss(c, x, f64(old), f64(ref), f64(adv), 3), loss, 1e-12, c.Algorithm)
		const h = 1e-6
		for i := range x {
			xp := append([]float64(nil), x...)
			xm := append([]float64(nil), x...)
			xp[i] += h
			xm[i] -= h
			fd := (refLoss(c, xp, f64(old), f64(ref), f64(adv), 3) - refLoss(c, xm, f64(old), f64(ref), f64(adv), 3)) / (2 * h)
			require.InDelta(t, fd, float64(coef[i]), 1e-6, "%s token %d", c.Algorithm, i)
		}
	}
}
