package rl

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// A data-parallel step: the gradients and statistics of BackwardShare over any split of a step's
// samples, summed, are Backward's over the whole step.
func TestBackwardSharesSumToTheStep(t *testing.T) {
	m := fixtureModel(t)
	samples := fixtureSamples(m.Config.Vocab, shapes)
	a := arena(t, m, 16, 3)
	rng := rand.New(rand.NewPCG(9, 10))
	v := newStepValues(len(samples))
	for i, lp := range scored(t, m, a, samples) {
		v.old[i], v.ref[i], v.adv[i] = make([]float32, len(lp)), make([]float32, len(lp)), make([]float32, len(lp))
		for j := range lp {
			v.old[i][j] = lp[j] + float32(rng.Float64()-0.5)
			v.ref[i][j] = lp[j] + float32(rng.Float64()-0.5)
			v.adv[i][j] = float32(rng.Float64()*2 - 1)
		}
	}
	w := loaded(t, a, samples, v)
	c := Config{Algorithm: GRPO, KLCoef: 0.2, ClipEps: 0.2, RewardClip: 10}
	whole, err := m.NewGrads()
	require.NoError(t, err)
	defer whole.Free()
	want, err := w.Backward(c, m, whole, 0, len(samples))
	require.NoError(t, err)
	wantG := download(t, whole)

	for _, cut := range []int{1, 3, 5} {
		var sum ShareSums
		total := make([]float64, len(wantG))
		for _, part := range [][2]int{{0, cut}, {cut, len(samples)}} {
			g, err := m.NewGrads()
			require.NoError(t, err)
			s, err := w.BackwardShare(c, m, g, part[0], part[1], len(samples))
			require.NoError(t, err)
			sum.Add(s)
			for i, v := range download(t, g) {
				total[i] += float64(v)
			}
			g.Free()
		}
		got := sum.Stats()
		require.Equal(t, want.Tokens, got.Tokens, "cut %d", cut)
		require.Equal(t, want.ClipFrac, got.ClipFrac, "cut %d", cut)
		t.Logf("cut %d: loss %.3g, KL %.3g apart", cut, math.Abs(want.Loss-got.Loss), math.Abs(want.KL-got.KL))
		// The shares pack other batches into the arena, so the forward passes round differently:
		// measured up to 1.9e-8 (loss), 4.8e-8 (KL) and 4.7e-7 (gradient).
		require.InDelta(t, want.Loss, got.Loss, 8e-8, "cut %d", cut)
		require.InDelta(t, want.KL, got.KL, 2e-7, "cut %d", cut)
		var diff, norm float64
		for i, v := range wantG {
			d := total[i] - float64(v)
			diff += d * d
			norm += float64(v) * float64(v)
		}
		rel := math.Sqrt(diff / norm)
		t.Logf("cut %d: gradient relative L2 %.3g", cut, rel)
		require.Less(t, rel, 2e-6, "cut %d", cut)
	}
	_, err = w.BackwardShare(c, m, whole, 0, len(samples), 2)
	require.ErrorContains(t, err, "6 samples as a share of 2")
}
