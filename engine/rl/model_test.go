package rl

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
	"github.com/serl-go/serl/kernels/ref"
)

// fixtureModel loads the tiny float32 Qwen2 fixture of engine/model on the CPU device.
func fixtureModel(t testing.TB) *model.Model {
	m, err := model.Load(testenv.CPU(t), "../model/testdata/qwen2_f32")
	require.NoError(t, err)
	t.Cleanup(m.Free)
	return m
}

func arena(t *testing.T, m *model.Model, tokens, seqs int) *model.Activations {
	a, err := m.NewActivations(tokens, seqs)
	require.NoError(t, err)
	t.Cleanup(a.Free)
	return a
}

// fixtureSamples are random sequences with the given (prompt, response) lengths, two per group.
func fixtureSamples(vocab int, shapes [][2]int) []*Sample {
	rng := rand.New(rand.NewPCG(5, 6))
	var out []*Sample
	for i, sh := range shapes {
		ids := make([]int32, sh[0]+sh[1])
		for j := range ids {
			ids[j] = int32(rng.IntN(vocab))
		}
		out = append(out, &Sample{Group: i / 2, IDs: ids, PromptLen: sh[0], Reward: float64(i % 2)})
	}
	return out
}

var shapes = [][2]int{{3, 4}, {5, 1}, {1, 6}, {4, 3}, {2, 2}, {6, 5}}

func TestScoreActions(t *testing.T) {
	m := fixtureModel(t)
	samples := fixtureSamples(m.Config.Vocab, shapes)

	// Each sample alone: its actions' log-probs are the packed values at PromptLen−1 … len−2.
	big := arena(t, m, 64, 8)
	alone := make([][]float32, len(samples))
	for i, s := range samples {
		require.NoError(t, m.Forward(big, s.IDs, []int{len(s.IDs)}))
		lp := make([]float32, len(s.IDs))
		require.NoError(t, big.LogProbs(lp))
		alone[i] = lp[s.PromptLen-1 : len(s.IDs)-1]
		for _, v := range alone[i] {
			require.Less(t, v, float32(0))
		}
	}
	// Packed: all in one batch, and in several batches limited by tokens (12) or sequences (2); the
	// policy and the reference are scored on the same packing.
	ref := fixtureModel(t)
	require.NoError(t, ref.Device().Scale(ref.Params.Data, ref.Params.Data, 0.9)) // another model
	var refAlone [][]float32
	for _, s := range samples {
		require.NoError(t, ref.Forward(big, s.IDs, []int{len(s.IDs)}))
		lp := make([]float32, len(s.IDs))
		require.NoError(t, big.LogProbs(lp))
		refAlone = append(refAlone, lp[s.PromptLen-1:len(s.IDs)-1])
	}
	for _, a := range []*model.Activations{big, arena(t, m, 12, 8), arena(t, m, 64, 2)} {
		w := wsOf(t, a)
		require.NoError(t, w.Score(m, ref, samples))
		for k, got := range [][][]float32{stepOld(t, w), stepRef(t, w)} {
			want := [][][]float32{alone, refAlone}[k]
			for i, s := range samples {
				require.Len(t, got[i], s.Actions())
				for j := range got[i] {
					require.InDelta(t, want[i][j], got[i][j], 1e-5, "arena %d×%d model %d sample %d action %d", a.MaxTokens, a.MaxSeqs, k, i, j)
				}
			}
		}
		require.NotEqual(t, stepOld(t, w), stepRef(t, w))
	}

	require.ErrorContains(t, wsOf(t, arena(t, m, 10, 2)).Score(m, m, samples), "sample 5 has 11 tokens, more than the arena's 10")
	short := []*Sample{{IDs: []int32{1, 2}, PromptLen: 2}}
	require.ErrorContains(t, wsOf(t, big).Score(m, m, short), "sample 0: 2 tokens with a prompt of 2: no action")
}

func download(t *testing.T, b *model.Blob) []float32 {
	v := make([]float32, b.Data.Len())
	require.NoError(t, kernels.Download(v, b.Data))
	return v
}

// scored is the per-action log-probs of samples under m, through a workspace of its own.
func scored(t *testing.T, m *model.Model, a *model.Activations, samples []*Sample) [][]float32 {
	w := wsOf(t, a)
	require.NoError(t, w.Score(m, m, samples))
	return stepOld(t, w)
}

// steps is host per-action values of a step's samples: logp_old, logp_ref and advantages.
type stepValues struct{ old, ref, adv [][]float32 }

func newStepValues(n int) stepValues {
	return stepValues{make([][]float32, n), make([][]float32, n), make([][]float32, n)}
}

// loaded is a workspace of arena a holding samples with values v.
func loaded(t *testing.T, a *model.Activations, samples []*Sample, v stepValues) *Workspace {
	w := wsOf(t, a)
	load(t, w, samples, v.old, v.ref, v.adv)
	return w
}

// At ratio 1 with A = 1 on every action, the PPO gradient is that of −(1/n)·Σ_seq mean_t logp_t.
func TestBackwardRatioOne(t *testing.T) {
	m := fixtureModel(t)
	samples := fixtureSamples(m.Config.Vocab, shapes)
	small := arena(t, m, 12, 2) // several batches
	v := newStepValues(len(samples))
	for i, lp := range scored(t, m, small, samples) {
		v.old[i] = lp
		v.ref[i] = make([]float32, len(lp))
		v.adv[i] = make([]float32, len(lp))
		for j := range lp {
			v.ref[i][j] = lp[j] - 0.05
			v.adv[i][j] = 1
		}
	}
	g, err := m.NewGrads()
	require.NoError(t, err)
	defer g.Free()
	st, err := loaded(t, small, samples, v).Backward(DefaultConfig(ReinforcePP), m, g, 0, len(samples))
	require.NoError(t, err)
	tokens := 0
	for _, s := range samples {
		tokens += s.Actions()
	}
	require.Equal(t, tokens, st.Tokens)
	require.InDelta(t, -1, st.Loss, 1e-5) // −(1/n)·Σ mean_t ρ·A with ρ = 1, A = 1
	require.Zero(t, st.ClipFrac)
	require.InDelta(t, 0.05, st.KL, 1e-5)

	// Reference: one packed batch through model.Backward with coefficients −1/(T_i·n) on actions.
	big := arena(t, m, 64, 8)
	var ids []int32
	var lens []int
	var coef []float32
	for _, s := range samples {
		ids = append(ids, s.IDs...)
		lens = append(lens, len(s.IDs))
		for j := range s.IDs {
			c := float32(0)
			if j >= s.PromptLen-1 && j < len(s.IDs)-1 {
				c = float32(-1 / float64(s.Actions()*len(samples)))
			}
			coef = append(coef, c)
		}
	}
	want, err := m.NewGrads()
	require.NoError(t, err)
	defer want.Free()
	require.NoError(t, m.Forward(big, ids, lens))
	require.NoError(t, m.Backward(big, want, coef))

	gv, wv := download(t, g), download(t, want)
	scale := 0.0
	for _, w := range wv {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	require.Greater(t, scale, 1e-3)
	for i := range wv {
		require.InDelta(t, wv[i], gv[i], 1e-4*scale, "gradient entry %d", i)
	}
}

// ppoLoss is the whole step's PPO loss at the model's current weights, by a forward pass.
func ppoLoss(t *testing.T, c Config, m *model.Model, a *model.Activations, samples []*Sample, v stepValues) float64 {
	loss := 0.0
	for i, lp := range scored(t, m, a, samples) {
		l, _, _ := ref.PPOSequence(make([]float32, len(lp)), lp, v.old[i], v.ref[i], v.adv[i], len(samples), c.ClipEps, c.KLCoef, c.Algorithm == GRPO)
		loss += l
	}
	return loss
}

// The gradient Backward accumulates matches central differences of the PPO loss in single weights, with
// ratios inside and outside the clip range (far enough from its edges that the perturbation crosses none).
// Float32 forward passes agree to ~3e-4 relative here; 5e-3 leaves room and still fails on a dropped
// clip mask or KL-loss gradient (errors of 3–6%).
func TestBackwardFiniteDifferences(t *testing.T) {
	m := fixtureModel(t)
	samples := fixtureSamples(m.Config.Vocab, shapes)
	a := arena(t, m, 16, 3)
	offsets := []float32{-0.05, 0.1, -0.6, 0.6, 0.02} // logp_old − logp: ρ = e^0.05, e^−0.1, e^0.6 (> 1.2), e^−0.6 (< 0.8), …
	rng := rand.New(rand.NewPCG(7, 8))
	k := 0
	v := newStepValues(len(samples))
	for i, lp := range scored(t, m, a, samples) {
		v.old[i], v.ref[i], v.adv[i] = make([]float32, len(lp)), make([]float32, len(lp)), make([]float32, len(lp))
		for j := range lp {
			v.old[i][j] = lp[j] + offsets[k%len(offsets)]
			v.ref[i][j] = lp[j] + float32(rng.Float64()-0.5)
			v.adv[i][j] = float32((0.3 + rng.Float64()) * float64(1-2*(k%3%2)))
			k++
		}
	}
	for _, c := range []Config{DefaultConfig(ReinforcePP), {Algorithm: GRPO, KLCoef: 0.2, ClipEps: 0.2, RewardClip: 10}} {
		g, err := m.NewGrads()
		require.NoError(t, err)
		st, err := loaded(t, a, samples, v).Backward(c, m, g, 0, len(samples))
		require.NoError(t, err)
		// the device rounds each sequence's loss to float32 once: measured 3.7e-8 relative
		require.InDelta(t, ppoLoss(t, c, m, a, samples, v), st.Loss, 1.5e-7*math.Abs(st.Loss))
		require.Greater(t, st.ClipFrac, 0.0)
		gv := download(t, g)
		g.Free()

		// The largest gradient entry overall and in a first-layer weight (the deepest backward path).
		check := []int{argmaxAbs(gv, 0, len(gv))}
		i, ok := m.Layout.Index("model.layers.0.self_attn.q_proj.weight")
		require.True(t, ok)
		sp := m.Layout.Specs[i]
		check = append(check, argmaxAbs(gv, sp.Off, sp.Off+sp.Len))
		for _, p := range check {
			w := m.Params.Data.MustSlice(p, p+1)
			orig := make([]float32, 1)
			require.NoError(t, kernels.Download(orig, w))
			h := float32(math.Max(1e-2*math.Abs(float64(orig[0])), 1e-3))
			at := func(x float32) float64 {
				require.NoError(t, kernels.Upload(w, []float32{x}))
				return ppoLoss(t, c, m, a, samples, v)
			}
			lp, lm := at(orig[0]+h), at(orig[0]-h)
			require.NoError(t, kernels.Upload(w, orig))
			fd := (lp - lm) / float64((orig[0]+h)-(orig[0]-h))
			t.Logf("%s: parameter %d: gradient %.6g, finite difference %.6g", c.Algorithm, p, gv[p], fd)
			require.InDelta(t, fd, float64(gv[p]), 5e-3*math.Abs(float64(gv[p])), "%s: parameter %d, gradient %v, finite difference %v", c.Algorithm, p, gv[p], fd)
		}
	}
}

func argmaxAbs(v []float32, lo, hi int) int {
	best := lo
	for i := lo; i < hi; i++ {
		if math.Abs(float64(v[i])) > math.Abs(float64(v[best])) {
			best = i
		}
	}
	return best
}

func TestBackwardErrors(t *testing.T) {
	m := fixtureModel(t)
	a := arena(t, m, 16, 3)
	g, err := m.NewGrads()
	require.NoError(t, err)
	defer g.Free()
	s := &Sample{IDs: []int32{1, 2, 3}, PromptLen: 1}
	w := wsOf(t, a)
	_, err = w.Backward(DefaultConfig(GRPO), m, g, 0, 1)
	require.ErrorContains(t, err, "samples [0, 1) of a step of 0")
	require.NoError(t, w.Score(m, m, []*Sample{s}))
	_, err = w.Backward(DefaultConfig(GRPO), m, g, 0, 0)
	require.ErrorContains(t, err, "samples [0, 0) of a step of 1")
	_, err = w.BackwardShare(DefaultConfig(GRPO), m, g, 0, 1, 0)
	require.ErrorContains(t, err, "1 samples as a share of 0")
	_, err = w.Backward(Config{Algorithm: GRPO}, m, g, 0, 1)
	require.ErrorContains(t, err, "clip")
}

// wsOf wraps the arena a in a workspace freed when the test ends.
func wsOf(t *testing.T, a *model.Activations) *Workspace {
	w := NewWorkspace(testenv.CPU(t), a)
	t.Cleanup(w.Free)
	return w
}
