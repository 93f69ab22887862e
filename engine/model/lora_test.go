package model

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/internal/testenv"
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
	got := prefillLogits(t, m, ids)
	last := want[(len(ids)-1)*m.Config.Vocab:]
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-last[i])))
	}
	require.LessOrEqual(t, worst, 1e-4, "prefill logits with adapters")
}

// prefillLogits prefills one sequence in a fresh workspace and cache and returns its last token's logits.
func prefillLogits(t *testing.T, m *Model, ids []int32) []float32 {
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
	out := make([]float32, m.Config.Vocab)
	require.NoError(t, kernels.Download(out, ws.Logits(1)))
	return out
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
		if strings.HasSuffix(s.Name, ".lora_A.weight") {
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

// A target group's A blocks are one matrix (loraGroups): the joined view holds its adapted targets' A
// blocks in layer order, back to back, whatever subset is adapted; A blocks keep the order of layers
// and targets across the layout, so new adapters draw the same values however they are grouped.
func TestLoRAJoinedGroups(t *testing.T) {
	m, err := Load(testDevice(t), filepath.Join("testdata", "qwen2_f32"))
	require.NoError(t, err)
	defer m.Free()
	targets := []string{"q_proj", "v_proj", "o_proj", "up_proj", "gate_proj"}
	ad, err := m.AttachLoRA(LoRAConfig{Rank: 3, Alpha: 6, Targets: targets}, 7)
	require.NoError(t, err)
	var order []string // A blocks in (layer, target) order
	for l := 0; l < m.Config.Layers; l++ {
		for g, group := range loraGroups {
			joined := ad.w[l].a[g]
			var want []float32
			for _, i := range group {
				if !slices.Contains(targets, LoRATargets[i]) {
					require.False(t, ad.w[l].t[i].a.Valid(), "layer %d %s", l, LoRATargets[i])
					continue
				}
				v := make([]float32, ad.w[l].t[i].a.Len())
				require.NoError(t, kernels.Download(v, ad.w[l].t[i].a))
				want = append(want, v...)
			}
			if want == nil {
				require.False(t, joined.Valid(), "layer %d group %d has no adapted target", l, g)
				continue
			}
			got := make([]float32, joined.Len())
			require.NoError(t, kernels.Download(got, joined))
			require.Equal(t, want, got, "layer %d group %d", l, g)
			require.Equal(t, []int{len(want) / joined.Dim(1), joined.Dim(1)}, joined.Shape())
		}
		for _, name := range LoRATargets {
			if slices.Contains(targets, name) {
				order = append(order, loraName(l, slices.Index(LoRATargets, name), "A"))
			}
		}
	}
	var drawn []string
	for _, s := range ad.Layout.Specs {
		if strings.HasSuffix(s.Name, ".lora_A.weight") {
			drawn = append(drawn, s.Name)
		}
	}
	require.Equal(t, order, drawn, "A blocks in layer and target order")
}

// Adapting some targets of a group is the same as adapting all with the others' adapters at zero: the
// fixture's adapters on q, v, o, up and down against all seven with k's and gate's zeroed, in the
// training forward, its gradients and generation's prefill. The joined groups' columns (q and v in a
// group of three, up alone in its pair) must line up.
func TestLoRASubsetOfGroup(t *testing.T) {
	subset := []string{"q_proj", "v_proj", "o_proj", "up_proj", "down_proj"}
	full, r, _ := loadLoRAFixture(t, "qwen2", Options{Frozen: true})
	defer full.Free()
	part, err := LoadWith(fixtureDevice(t), filepath.Join("testdata", "qwen2_f32"), Options{Frozen: true})
	require.NoError(t, err)
	defer part.Free()
	lc := full.LoRA().Config
	_, err = part.AttachLoRA(LoRAConfig{Rank: lc.Rank, Alpha: lc.Alpha, Targets: subset}, 1)
	require.NoError(t, err)
	get := func(b *Blob, name string) kernels.Tensor {
		v, ok := b.Get(name)
		require.True(t, ok, name)
		return v
	}
	for _, s := range full.LoRA().Layout.Specs {
		v := testenv.Read[float32](t, get(full.LoRA().Params, s.Name))
		if j, ok := part.LoRA().Layout.Index(s.Name); ok {
			require.NoError(t, kernels.Upload(part.LoRA().Params.View(j), v))
		} else {
			require.NoError(t, kernels.Upload(get(full.LoRA().Params, s.Name), make([]float32, len(v))))
		}
	}
	require.NoError(t, full.LoRA().SyncWeights())
	require.NoError(t, part.LoRA().SyncWeights())

	ids, lens := packed(r)
	coef := make([]float32, len(ids))
	for i := range coef {
		coef[i] = -1 / float32(len(ids))
	}
	logp := func(m *Model) ([]float32, *Blob) {
		a, err := m.NewActivations(len(ids), len(lens))
		require.NoError(t, err)
		defer a.Free()
		require.NoError(t, m.Forward(a, ids, lens))
		lp := make([]float32, len(ids))
		require.NoError(t, a.LogProbs(lp))
		g, err := m.NewGrads()
		require.NoError(t, err)
		require.NoError(t, m.Backward(a, g, coef))
		return lp, g
	}
	want, gFull := logp(full)
	defer gFull.Free()
	got, gPart := logp(part)
	defer gPart.Free()
	worst := 0.0
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	worstGrad, worstName := 0.0, ""
	for i, s := range gPart.Layout.Specs {
		w := testenv.Read[float32](t, get(gFull, s.Name))
		g := testenv.Read[float32](t, gPart.View(i))
		var num, den float64
		for j := range g {
			num += (float64(g[j]) - float64(w[j])) * (float64(g[j]) - float64(w[j]))
			den += float64(w[j]) * float64(w[j])
		}
		require.Positive(t, den, s.Name)
		if e := math.Sqrt(num / den); e > worstGrad {
			worstGrad, worstName = e, s.Name
		}
	}

	pw, pg := prefillLogits(t, full, r.Sequences[0].IDs), prefillLogits(t, part, r.Sequences[0].IDs)
	worstLogit := 0.0
	for i := range pg {
		worstLogit = math.Max(worstLogit, math.Abs(float64(pg[i]-pw[i])))
	}
	t.Logf("subset vs zeroed: log-probs %.2e, gradients %.2e (%s), prefill logits %.2e", worst, worstGrad, worstName, worstLogit)
	// Exact on the CPU, whose products sum each element in one order whatever the group's width;
	// cuBLAS may pick another algorithm for another width.
	tol := [3]float64{1e-6, 1e-6, 1e-5}
	if part.Device().Backend() == "cpu" {
		tol = [3]float64{}
	}
	require.LessOrEqual(t, worst, tol[0], "log-probs")
	require.LessOrEqual(t, worstGrad, tol[1], "gradient of %s", worstName)
	require.LessOrEqual(t, worstLogit, tol[2], "prefill logits")
}
