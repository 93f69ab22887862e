package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/dtype"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

func testDevice(t testing.TB) *kernels.Device { return testenv.CPU(t) }

// tinyModel is a small Qwen2-shaped model with random weights (std 0.05, norms at 1).
func tinyModel(t testing.TB, seed uint64) *model.Model {
	return tinyModelIn(t, seed, model.PrecisionF32)
}

// tinyModelIn is tinyModel in precision p.
func tinyModelIn(t testing.TB, seed uint64, p model.Precision) *model.Model {
	c, err := model.ParseConfig([]byte(`{"model_type":"qwen2","hidden_size":64,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":97,
		"tie_word_embeddings":true,"rms_norm_eps":1e-6}`), "tiny")
	require.NoError(t, err)
	m, err := model.NewWith(testDevice(t), c, model.Options{Precision: p})
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i, s := range m.Layout.Specs {
		v := make([]float32, s.Len)
		for j := range v {
			if len(s.Shape) == 1 && (s.Name[len(s.Name)-len("norm.weight"):] == "norm.weight") {
				v[j] = 1
			} else {
				v[j] = float32(rng.NormFloat64() * 0.05)
			}
		}
		testenv.Write(t, m.Params.View(i), v)
	}
	require.NoError(t, m.SyncWeights())
	return m
}

func fixedBatch(seed uint64, vocab int, lens []int) []int32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	n := 0
	for _, l := range lens {
		n += l
	}
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
	}
	return ids
}

// The overfit test: a small model trained on one fixed batch drives its loss close to zero.
func TestOverfitOneBatch(t *testing.T) {
	m := tinyModel(t, 1)
	defer m.Free()
	lens := []int{40, 17, 9}
	ids := fixedBatch(3, m.Config.Vocab, lens)
	sched, err := NewSchedule(3e-3, 300, 0.05, 0.1)
	require.NoError(t, err)
	tr, err := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, 66, 3)
	require.NoError(t, err)
	defer tr.Free()
	var first, last float64
	for step := 0; step < 300; step++ {
		loss, n, err := tr.AccumulateNLL(ids, lens, 1)
		require.NoError(t, err)
		require.Equal(t, 66-3, n)
		if step == 0 {
			first = loss
		}
		last = loss
		_, err = tr.Step()
		require.NoError(t, err)
	}
	t.Logf("loss %.4f → %.4f after 300 steps", first, last)
	require.Greater(t, first, 4.0, "a random model starts near log(vocab) = 4.57")
	require.Less(t, last, 0.05, "the model memorises one batch")
}

// Gradient accumulation over two half-batches with weight ½ equals... not the full batch (the NLL is a
// per-micro-batch mean), but a mean over micro-batches is what it must equal: check linearity.
func TestAccumulationIsLinear(t *testing.T) {
	m := tinyModel(t, 2)
	defer m.Free()
	ids := fixedBatch(5, m.Config.Vocab, []int{12, 12})
	tr, err := NewTrainer(m, AdamWConfig{Schedule: Schedule{Peak: 0, Total: 1}, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}, 24, 2)
	require.NoError(t, err)
	defer tr.Free()
	_, _, err = tr.AccumulateNLL(ids[:12], []int{12}, 0.5)
	require.NoError(t, err)
	_, _, err = tr.AccumulateNLL(ids[12:], []int{12}, 0.5)
	require.NoError(t, err)
	split := testenv.Read[float32](t, tr.Grads.Data)
	require.NoError(t, testDevice(t).Zero(tr.Grads.Data))
	// One batch of both sequences with equal predicted counts has the same mean.
	_, _, err = tr.AccumulateNLL(ids, []int{12, 12}, 1)
	require.NoError(t, err)
	whole := testenv.Read[float32](t, tr.Grads.Data)
	require.Len(t, whole, m.Layout.Total)
	var num, den float64
	for i := range whole {
		d := float64(whole[i] - split[i])
		num += d * d
		den += float64(whole[i]) * float64(whole[i])
	}
	require.Less(t, num/den, 1e-10)
}

// A training micro-step (forward, backward) and an optimizer step allocate nothing on the Go heap once
// the trainer is built.
func TestMicroStepAllocatesNothing(t *testing.T) {
	m := tinyModel(t, 3)
	defer m.Free()
	lens := []int{30, 20}
	ids := fixedBatch(7, m.Config.Vocab, lens)
	sched, _ := NewSchedule(1e-4, 100, 0.03, 0.1)
	tr, err := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, 50, 2)
	require.NoError(t, err)
	defer tr.Free()
	allocs := testenv.AllocsPerRun(t, 5, func() {
		if _, _, err := tr.AccumulateNLL(ids, lens, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs, "heap allocations per training step")
}

// A micro-step and an optimizer step make exactly these host↔device copies, whatever the model: the
// batch's token ids, targets and positions (4T bytes each), its S+1 sequence offsets and its loss
// coefficients (4T) go up; its per-token log-probs (4T) and, after the update, the gradient norm (4)
// come back. The norm and the clipping never wait for the host before AdamW.
func TestStepTransfers(t *testing.T) {
	m := tinyModel(t, 3)
	defer m.Free()
	lens := []int{30, 20}
	T, S := 50, 2
	ids := fixedBatch(7, m.Config.Vocab, lens)
	sched, _ := NewSchedule(1e-4, 100, 0.03, 0.1)
	tr, err := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, T, S)
	require.NoError(t, err)
	defer tr.Free()
	d := m.Device()
	for range 2 {
		before := d.Transfers()
		_, _, err := tr.AccumulateNLL(ids, lens, 1)
		require.NoError(t, err)
		micro := d.Transfers().Sub(before)
		require.Equal(t, kernels.Transfers{Uploads: 5, UploadBytes: int64(16*T + 4*(S+1)), Downloads: 1, DownloadBytes: int64(4 * T)}, micro)
		before = d.Transfers()
		_, err = tr.Step()
		require.NoError(t, err)
		require.Equal(t, kernels.Transfers{Downloads: 1, DownloadBytes: 4}, d.Transfers().Sub(before))
	}
}

// The optimizer's step is PyTorch's: clip_grad_norm_ scaling the gradients by clip/(norm + 1e-6) when
// the norm exceeds the limit, then AdamW; and it reports the norm before clipping. Checked against the
// same step done by hand on the host (it stays the check when AdamW takes the clip over from grad_norm).
func TestStepClipsLikePyTorch(t *testing.T) {
	d := testDevice(t)
	for _, clip := range []float64{0.05, 1e6} { // clipping, and a limit the norm stays under
		m := tinyModel(t, 3)
		ref := tinyModel(t, 3)
		tr, err := NewTrainer(m, AdamWConfig{Schedule: Schedule{Peak: 1e-2, Total: 1}, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: clip}, 24, 2)
		require.NoError(t, err)
		ids := fixedBatch(5, m.Config.Vocab, []int{12, 12})
		_, _, err = tr.AccumulateNLL(ids, []int{12, 12}, 1)
		require.NoError(t, err)
		g := testenv.Read[float32](t, tr.Grads.Data)

		// The same step by hand: the norm in float64, the gradient scaled on the host, plain AdamW.
		var sq float64
		for _, x := range g {
			sq += float64(x) * float64(x)
		}
		norm := math.Sqrt(sq)
		if norm > clip {
			s := float32(clip / (norm + 1e-6))
			for i := range g {
				g[i] *= s
			}
		}
		gRef, err := ref.NewGrads()
		require.NoError(t, err)
		testenv.Write(t, gRef.Data, g)
		opt, err := NewOptimizer(ref, AdamWConfig{Schedule: Schedule{Peak: 1e-2, Total: 1}, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
		require.NoError(t, err)
		mo, vo := opt.M.Data, opt.V.Data
		require.NoError(t, d.AdamW(ref.Params.Data, gRef.Data, mo, vo, kernels.AdamWParams{Step: 1, LR: float32(Schedule{Peak: 1e-2, Total: 1}.LR(0)),
			Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}))

		st, err := tr.Step()
		require.NoError(t, err)
		require.InDelta(t, norm, st.GradNorm, 1e-6*norm, "the norm before clipping")
		got, want := testenv.Read[float32](t, m.Params.Data), testenv.Read[float32](t, ref.Params.Data)
		require.Len(t, got, m.Layout.Total)
		worst := 0.0
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
		}
		t.Logf("clip %g (norm %.4g): worst weight difference %.3g", clip, norm, worst)
		require.LessOrEqual(t, worst, 1e-9)
		opt.Free()
		gRef.Free()
		tr.Free()
		m.Free()
		ref.Free()
	}
}

// bf16 training: the overfit test in bf16 (float32 master weights and moments, bf16 copy and
// activations), with the bf16 copy equal, bit for bit, to the master weights rounded to nearest even
// after every AdamW step, and no heap allocation per step.
func TestBF16Training(t *testing.T) {
	m := tinyModelIn(t, 1, model.PrecisionBF16)
	defer m.Free()
	require.Equal(t, kernels.BF16, m.Weights.DType())
	lens := []int{40, 17, 9}
	ids := fixedBatch(3, m.Config.Vocab, lens)
	sched, err := NewSchedule(3e-3, 300, 0.05, 0.1)
	require.NoError(t, err)
	tr, err := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, 66, 3)
	require.NoError(t, err)
	defer tr.Free()
	master := make([]float32, m.Layout.Total)
	copyBits := make([]uint16, m.Layout.Total)
	var first, last float64
	for step := 0; step < 300; step++ {
		loss, _, err := tr.AccumulateNLL(ids, lens, 1)
		require.NoError(t, err)
		if step == 0 {
			first = loss
		}
		last = loss
		_, err = tr.Step()
		require.NoError(t, err)
		if step%100 == 0 {
			require.NoError(t, kernels.Download(master, m.Params.Data))
			require.NoError(t, kernels.Download(copyBits, m.Weights.Data))
			for i, f := range master {
				require.Equal(t, dtype.BF16Bits(f), copyBits[i], "step %d: bf16 copy of weight %d (%g)", step, i, f)
			}
		}
	}
	t.Logf("bf16: loss %.4f → %.4f after 300 steps", first, last)
	require.Greater(t, first, 4.0, "a random model starts near log(vocab) = 4.57")
	require.Less(t, last, 0.05, "the model memorises one batch in bf16 too")
	allocs := testenv.AllocsPerRun(t, 5, func() {
		if _, _, err := tr.AccumulateNLL(ids, lens, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs, "heap allocations per bf16 training step")
}
