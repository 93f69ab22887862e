package rl

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"
)

// The RL step takes each head chunk's coefficients in the forward (model.GradFrom calling
// kernels.PPOCoef over the chunk's action rows, the sums after). With a vocabulary large enough that
// the batch's actions span three chunks of the head, the last partial, its gradient and sums are those
// of the forward, the whole batch's coefficients and the backward that recomputes the chunks, bit for
// bit.
func TestBackwardAcrossHeadChunks(t *testing.T) {
	// 256 MiB of float32 logits a chunk: 671 tokens of 100,000; the batch has 6 × 300 = 1,800 tokens, 6 ×
	// 280 = 1,680 of them actions.
	c, err := model.ParseConfig([]byte(`{"model_type":"qwen2","hidden_size":16,"num_hidden_layers":1,
		"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":32,"vocab_size":100000}`), "chunks")
	require.NoError(t, err)
	d := testenv.CPU(t)
	m, err := model.New(d, c)
	require.NoError(t, err)
	defer m.Free()
	require.NoError(t, model.RandomInit(m, 3, 0.5)) // peaked enough that ratios leave the clip range
	shapes := make([][2]int, 6)
	for i := range shapes {
		shapes[i] = [2]int{20, 280}
	}
	samples := fixtureSamples(c.Vocab, shapes)
	a := arena(t, m, 1800, 6)
	v := randomStepValues(t, m, a, samples, 7)
	cfg := DefaultConfig(GRPO)
	w := loaded(t, a, samples, v)
	got, err := m.NewGrads()
	require.NoError(t, err)
	defer got.Free()
	d.SetProfiling(true)
	st, err := w.Backward(cfg, m, got, 0, len(samples))
	chunks := 0
	for _, s := range d.Profile() {
		if s.Op == "logprob_fwd" {
			chunks = int(s.Calls)
		}
	}
	d.SetProfiling(false)
	require.NoError(t, err)
	require.Equal(t, 3, chunks, "the head's chunks")
	require.Len(t, w.batches, 1)
	require.Positive(t, st.ClipFrac, "some ratios left the clip range")

	// The same batch by Forward, the whole batch's coefficients, and BackwardCoef.
	want, err := m.NewGrads()
	require.NoError(t, err)
	defer want.Free()
	pos, actCu := w.batch(0)
	require.NoError(t, m.ForwardFrom(a, w.ids, w.lens, w.first))
	sums, err := d.Alloc(kernels.F32, 3*len(samples))
	require.NoError(t, err)
	defer d.Free(sums)
	A := w.Actions()
	p := kernels.PPO{ClipEps: float32(cfg.ClipEps), KLCoef: float32(cfg.KLCoef), GRPO: true}
	require.NoError(t, d.PPOCoef(a.Coef(), sums, a.LogProbTensor(), w.dOld.MustSlice(0, A), w.dRef.MustSlice(0, A),
		w.dAdv.MustSlice(0, A), pos, actCu, len(samples), len(samples), 0, a.HeadRows(), p))
	require.NoError(t, m.BackwardCoef(a, want))
	gw, gg := download(t, want), download(t, got)
	for i := range gw {
		if math.Float32bits(gw[i]) != math.Float32bits(gg[i]) {
			t.Fatalf("gradient entry %d: %g, recomputing backward %g", i, gg[i], gw[i])
		}
	}
	hs := make([]float32, 3*len(samples))
	require.NoError(t, kernels.Download(hs, sums))
	var sh ShareSums
	for i, s := range samples {
		sh.Add(ShareSums{Loss: float64(hs[3*i]), Clipped: int(hs[3*i+1]), KL: float64(hs[3*i+2]), Tokens: s.Actions()})
	}
	require.Equal(t, sh.Stats(), st)
}
