package rl

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/internal/testenv"
)

// Scoring with no reference (--kl 0) runs the policy's forward passes alone and takes logp_ref to be
// logp_old. With β = 0 every algorithm's gradient is then the bits it is with a reference that differs
// from the policy, and the step's KL sum is 0 where the reference's is not.
func TestScoreWithoutReference(t *testing.T) {
	m := fixtureModel(t)
	ref := fixtureModel(t)
	require.NoError(t, model.RandomInit(ref, 9, 0.05)) // a reference the policy's log-probs differ from
	d := m.Device()
	samples := fixtureSamples(m.Config.Vocab, shapes)
	for _, alg := range []Algorithm{ReinforcePP, RLOO, GRPO} {
		c := DefaultConfig(alg)
		c.KLCoef = 0
		step := func(r *model.Model) ([]float32, StepStats, int) {
			w := wsOf(t, arena(t, m, 12, 2)) // several batches
			d.SetProfiling(true)
			require.NoError(t, w.Reshape(c, samples))
			require.NoError(t, w.Score(m, r, samples))
			forwards := 0
			for _, s := range d.Profile() {
				if s.Op == "embedding_fwd" {
					forwards = int(s.Calls)
				}
			}
			d.SetProfiling(false)
			if r == nil {
				A := w.Actions()
				old := testenv.Read[float32](t, w.dOld.MustSlice(0, A))
				require.Equal(t, old, testenv.Read[float32](t, w.dRef.MustSlice(0, A)), "logp_ref is logp_old")
			}
			_, err := w.Advantages(c, nil)
			require.NoError(t, err)
			g, err := m.NewGrads()
			require.NoError(t, err)
			defer g.Free()
			st, err := w.Backward(c, m, g, 0, len(samples))
			require.NoError(t, err)
			return download(t, g), st, forwards
		}
		wantG, wantSt, withRef := step(ref)
		gotG, gotSt, without := step(nil)
		require.Equal(t, len(packedBatches(arena(t, m, 12, 2), samples)), without, "%s: one forward a batch, the policy's", alg)
		require.Equal(t, 2*without, withRef, "%s: the reference's too", alg)
		for i := range wantG {
			if math.Float32bits(wantG[i]) != math.Float32bits(gotG[i]) {
				t.Fatalf("%s: gradient entry %d: %g without a reference, %g with", alg, i, gotG[i], wantG[i])
			}
		}
		require.NotZero(t, wantSt.KL, "%s: the reference differs", alg)
		require.Zero(t, gotSt.KL, alg)
		wantSt.KL = 0
		require.Equal(t, wantSt, gotSt, alg)
	}
}
