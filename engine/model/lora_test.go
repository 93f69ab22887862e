package model

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
)

// LoRA fixtures (testdata/<family>_lora, made by gen_fixtures.py): PEFT adapters over the f32 folder's
// weights; log-probs with the adapters on and the adapters' gradients, from PyTorch in float64.
// Tolerances 4× the worst measured over both families (log-probs 4.83e-6 absolute, gradients 2.61e-6
// relative L2, f32); with a bf16 base and adapters, the bf16 fixtures' log-prob bound (0.35, 3.1× the
// 0.113 measured) and 0.18 for the gradients (3.9× the 0.046 measured).
const (
	loraLogProbTol  = 1.9e-5
	loraGradTol     = 1.1e-5
	loraBF16GradTol = 0.18
)

func loadLoRAFixture(t *testing.T, fam string, o Options) (*Model, fixtureRef, string) {
	base := filepath.Join("testdata", fam+"_f32")
	dir := filepath.Join("testdata", fam+"_lora")
	m, err := LoadWith(fixtureDevice(t), base, o)
	require.NoError(t, err)
	_, err = m.LoadLoRA(dir)
	require.NoError(t, err)
	return m, loadRef(t, dir), dir
}

func TestLoRAFixtures(t *testing.T) {
	for _, fam := range []string{"qwen2", "llama"} {
		t.Run(fam, func(t *testing.T) {
			m, r, dir := loadLoRAFixture(t, fam, Options{Frozen: true})
			defer m.Free()
			a, lpErr := forwardFixture(t, m, r)
			defer a.Free()
			require.LessOrEqual(t, lpErr, loraLogProbTol, "log-probs with adapters")
			gErr, name := gradError(t, m, a, r, dir, "grads.safetensors")
			require.LessOrEqual(t, gErr, loraGradTol, "adapter gradient of %s", name)

			// The same weights with the adapters off are the base model (the KL reference).
			baseRef := loadRef(t, filepath.Join("testdata", fam+"_f32"))
			ab, baseErr := forwardFixture(t, m.Base(), baseRef)
			defer ab.Free()
			require.LessOrEqual(t, baseErr, f32LogProbTol, "Base() is the model without adapters")
		})
	}
}

// A bf16 base held in bf16 only (frozen: no float32 master), adapters with a float32 master and a bf16
// copy: within the bf16 fixtures' bounds of the float64 reference.
func TestLoRAFixturesBF16(t *testing.T) {
	for _, fam := range []string{"qwen2", "llama"} {
		t.Run(fam, func(t *testing.T) {
			m, r, dir := loadLoRAFixture(t, fam, Options{Precision: PrecisionBF16, Frozen: true})
			defer m.Free()
			require.Nil(t, m.Params, "a frozen bf16 base keeps no float32 master")
			params, weights := m.Trainable()
			require.Equal(t, kernels.F32, params.DType())
			require.Equal(t, kernels.BF16, weights.DType())
			a, lpErr := forwardFixture(t, m, r)
			defer a.Free()
			gErr, name := gradError(t, m, a, r, dir, "grads.safetensors")
			t.Logf("bf16 LoRA vs float64: log-probs %.3g, gradients %.3g (%s)", lpErr, gErr, name)
			require.Greater(t, lpErr, 10*loraLogProbTol, "log-probs show no bf16 rounding")
			require.LessOrEqual(t, lpErr, bf16LogProbTol)
			require.LessOrEqual(t, gErr, loraBF16GradTol, "adapter gradient of %s", name)
		})
	}
}

// Generation runs the adapters too: the prefill's last-token logits equal the training forward's.
func TestLoRAPrefillMatchesForward(t *testing.T) {
	m, r, _ := loadLoRAFixture(t, "llama", Options{Frozen: true})
	defer m.Free()
	ids := r.Sequences[1].IDs
	a, err := m.NewActivations(len(ids), 1)
	require.NoError(t, err)
	defer a.Free()
	require.NoError(t, m.Forward(a, ids, []int{len(ids)}))
	require.Equal(t, len(ids), a.logits.Dim(0), "the head's one chunk holds the whole batch's logits")
	want := make([]float32, len(ids)*m.Config.Vocab)
	require.NoError(t, kernels.Download(want, rows(a.logits, len(ids))))
	ws, err := m.NewWorkspace(len(ids), 1, 1)
	require.NoError(t, err)
	defer ws.Free()
	kv, err := m.NewKVCache(1, len(ids))
	require.NoError(t, err)
	defer kv.Free()
	slots := make([]int32, len(ids))
	for i := range slots {
		slots[i] = int32(i)
	}
	require.NoError(t, m.Prefill(ws, kv, ids, []int{len(ids)}, slots))
	got := make([]float32, m.Config.Vocab)
	require.NoError(t, kernels.Download(got, ws.Logits(1)))
	last := want[(len(ids)-1)*m.Config.Vocab:]
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-last[i])))
	}
	require.LessOrEqual(t, worst, 1e-4, "prefill logits with adapters")
}

// Saved adapters load back bit for bit; merged weights give the adapted model's log-probs.
func TestLoRASaveAndMerge(t *testing.T) {
	for _, fam := range []string{"qwen2", "llama"} {
		t.Run(fam, func(t *testing.T) {
			m, r, _ := loadLoRAFixture(t, fam, Options{})
			defer m.Free()
			out := filepath.Join(t.TempDir(), "adapter")
			require.NoError(t, m.LoRA().Save(out, "base"))
			lc, err := ReadLoRAConfig(out)
			require.NoError(t, err)
			require.Equal(t, m.LoRA().Config, lc)

			m2, err := Load(testDevice(t), filepath.Join("testdata", fam+"_f32"))
			require.NoError(t, err)
			defer m2.Free()
			_, err = m2.LoadLoRA(out)
			require.NoError(t, err)
			x, y := make([]float32, m.LoRA().Layout.Total), make([]float32, m.LoRA().Layout.Total)
			require.NoError(t, kernels.Download(x, m.LoRA().Params.Data))
			require.NoError(t, kernels.Download(y, m2.LoRA().Params.Data))
			require.Equal(t, x, y)

			a, _ := forwardFixture(t, m, r)
			defer a.Free()
			want := make([]float32, a.tokens)
			require.NoError(t, a.LogProbs(want))
			require.NoError(t, m2.Merge())
			require.Nil(t, m2.LoRA())
			a2, mergedErr := forwardFixture(t, m2, r)
			defer a2.Free()
			got := make([]float32, a2.tokens)
			require.NoError(t, a2.LogProbs(got))
			worst := 0.0
			for i := range got {
				worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
			}
			t.Logf("merged vs unmerged: worst log-prob difference %.2e", worst)
			require.LessOrEqual(t, worst, 1e-5)
			require.LessOrEqual(t, mergedErr, loraLogProbTol)
		})
	}
}

// New adapters start as the base model (B = 0) with A inside PEFT's kaiming-uniform bound.
func TestAttachLoRAInit(t *testing.T) {
	m, err := Load(testDevice(t), filepath.Join("testdata", "qwen2_f32"))
	require.NoError(t, err)
	defer m.Free()
	ad, err := m.AttachLoRA(LoRAConfig{Rank: 8, Alpha: 16, Targets: LoRATargets}, 1)
	require.NoError(t, err)
	for i, s := range ad.Layout.Specs {
		v := make([]float32, s.Len)
		require.NoError(t, kernels.Download(v, ad.Params.View(i)))
		bound := float32(1 / math.Sqrt(float64(s.Shape[len(s.Shape)-1])))
		nonzero := 0
		for _, x := range v {
			if x != 0 {
				nonzero++
			}
			require.LessOrEqual(t, float32(math.Abs(float64(x))), bound, s.Name)
		}
		if i%2 == 0 {
			require.Equal(t, s.Len, nonzero, "%s is drawn", s.Name)
		} else {
			require.Zero(t, nonzero, "%s starts at zero", s.Name)
		}
	}
	r := loadRef(t, filepath.Join("testdata", "qwen2_f32"))
	a := checkLogProbs(t, m, r)
	a.Free()
	_, err = m.AttachLoRA(LoRAConfig{Rank: 0, Alpha: 16, Targets: LoRATargets}, 1)
	require.Error(t, err)
}
