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
	v := randomStepValues(t, m, a, samples, 9)
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

// CombineMoments of any split, in order, is the moments of the whole, and parts without tokens
// contribute nothing.
func TestCombineMoments(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	x := make([]float64, 37)
	for i := range x {
		x[i] = rng.NormFloat64()*3 + 1
	}
	moments := func(v []float64) Moments {
		m := Moments{N: float64(len(v))}
		for _, a := range v {
			m.Mean += a / m.N
			m.KL += a / 2
		}
		for _, a := range v {
			m.Var += (a - m.Mean) * (a - m.Mean) / m.N
		}
		return m
	}
	want := moments(x)
	for _, cuts := range [][]int{{0, 37}, {0, 1, 37}, {0, 10, 10, 25, 37}, {0, 36, 37, 37}} {
		var parts []Moments
		for i := 0; i+1 < len(cuts); i++ {
			parts = append(parts, moments(x[cuts[i]:cuts[i+1]]))
		}
		got := CombineMoments(parts)
		require.Equal(t, want.N, got.N, "cuts %v", cuts)
		require.InDelta(t, want.Mean, got.Mean, 1e-14, "cuts %v", cuts)
		require.InDelta(t, want.Var, got.Var, 1e-13, "cuts %v", cuts)
		require.InDelta(t, want.KL, got.KL, 1e-13, "cuts %v", cuts)
	}
	require.Equal(t, Moments{}, CombineMoments(nil))
}

// Advantages over two "ranks", each holding its share of the step and whitening with the moments
// combined over both (as selfplay's reducer does across processes), are the one-process advantages.
func TestAdvantagesAcrossRanks(t *testing.T) {
	m := fixtureModel(t)
	ref := fixtureModel(t)
	require.NoError(t, ref.Device().Scale(ref.Params.Data, ref.Params.Data, 0.95))
	samples := fixtureSamples(m.Config.Vocab, shapes)
	for i, s := range samples {
		s.Reward = float64((i * 7) % 3) // groups of two with distinct rewards
	}
	for _, alg := range []Algorithm{ReinforcePP, RLOO, GRPO} {
		c := DefaultConfig(alg)
		c.KLCoef = 0.1
		one := wsOf(t, arena(t, m, 64, 8))
		require.NoError(t, one.Reshape(c, samples))
		require.NoError(t, one.Score(m, ref, samples))
		want, err := one.Advantages(c, nil)
		require.NoError(t, err)
		wantAdv := stepAdv(t, one)

		for _, cut := range []int{0, 2, 5} {
			ranks := []*Workspace{wsOf(t, arena(t, m, 64, 8)), wsOf(t, arena(t, m, 64, 8))}
			shares := [][]*Sample{samples[:cut], samples[cut:]}
			local := make([]Moments, 2)
			for r, w := range ranks {
				require.NoError(t, w.Reshape(c, samples)) // every rank reshapes every group
				require.NoError(t, w.Score(m, ref, shares[r]))
				_, err := w.Advantages(c, func(l Moments) (Moments, error) { local[r] = l; return l, nil })
				if len(shares[r]) == 0 {
					require.ErrorContains(t, err, "empty step") // alone, a rank without samples has no statistics
				} else {
					require.NoError(t, err)
				}
			}
			global := CombineMoments(local)
			// A rank scores its share in other packed batches than the one process does, so the forward
			// passes round differently: measured up to 1.4e-7 (KL mean), 1.5e-8 (advantage mean and
			// standard deviation) and 4.8e-7 (advantages).
			var gotAdv [][]float32
			for r, w := range ranks {
				require.NoError(t, w.Score(m, ref, shares[r])) // fresh returns: Advantages whitened in place
				got, err := w.Advantages(c, func(Moments) (Moments, error) { return global, nil })
				require.NoError(t, err)
				require.InDelta(t, want.KLMean, got.KLMean, 5e-7, "%s cut %d", alg, cut)
				require.InDelta(t, want.AdvStd, got.AdvStd, 6e-8, "%s cut %d", alg, cut)
				require.InDelta(t, want.AdvMean, got.AdvMean, 6e-8, "%s cut %d", alg, cut)
				gotAdv = append(gotAdv, stepAdv(t, w)...)
			}
			require.Len(t, gotAdv, len(wantAdv))
			for i := range wantAdv {
				for j := range wantAdv[i] {
					require.InDelta(t, wantAdv[i][j], gotAdv[i][j], 2e-6, "%s cut %d sample %d action %d", alg, cut, i, j)
				}
			}
		}
	}
}
