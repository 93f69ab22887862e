package selfplay

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/kernels"
)

// The memory plan is what a run allocates, to the byte, in either precision: computed from the
// settings alone, it equals the device's live bytes once the models are loaded and the runner built.
func TestMemoryPlanIsWhatStartAllocates(t *testing.T) {
	tok := tinyTokenizer(t)
	for _, c := range []struct {
		prec  model.Precision
		noRef bool // kl_coef 0: the run holds no reference
		micro bool // a training arena of one longest sample (micro_batch_tokens)
	}{{model.PrecisionF32, false, false}, {model.PrecisionBF16, false, false}, {model.PrecisionBF16, true, false}, {model.PrecisionF32, false, true}} {
		prec := c.prec
		name := prec.String()
		if c.noRef {
			name += "/kl0"
		}
		if c.micro {
			name += "/micro"
		}
		t.Run(name, func(t *testing.T) {
			d, err := kernels.Open("cpu", 1) // its own device, so live bytes count this run only
			require.NoError(t, err)
			defer d.Close()
			cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
			cfg.Precision = prec.String()
			if c.noRef {
				cfg.KLCoef = 0
			}
			if c.micro {
				cfg.MicroBatchTokens = cfg.MaxPromptTokens + cfg.MaxNewTokens
			}
			mc, err := model.LoadConfig(filepath.Join(fixture, "config.json"))
			require.NoError(t, err)
			plan, err := MemoryPlan(cfg, mc)
			require.NoError(t, err)
			live, _ := d.MemoryInUse()
			require.Zero(t, live)

			policy, err := model.LoadWith(d, fixture, model.Options{Precision: prec})
			require.NoError(t, err)
			defer policy.Free()
			var ref *model.Model
			if !c.noRef {
				ref, err = model.LoadWith(d, fixture, model.Options{Precision: prec, Frozen: true})
				require.NoError(t, err)
				defer ref.Free()
			}
			require.Equal(t, c.micro, slices.ContainsFunc(plan.Items, func(it model.PlanItem) bool {
				return strings.HasPrefix(it.Name, fmt.Sprintf("activations (%d tokens,", cfg.MaxPromptTokens+cfg.MaxNewTokens))
			}))
			require.Equal(t, !c.noRef, slices.ContainsFunc(plan.Items, func(it model.PlanItem) bool { return strings.HasPrefix(it.Name, "reference") }))
			r, err := Start(filepath.Join(t.TempDir(), "run"), cfg, Inputs{Policy: policy, Reference: ref, Tokenizer: tok, Train: trainSet()})
			require.NoError(t, err)
			defer r.Free()
			var lazy int64
			for _, it := range plan.Items {
				if it.Name == RLBuffersItem {
					lazy += it.Bytes
				}
			}
			require.Positive(t, lazy)
			live, _ = d.MemoryInUse()
			require.Equal(t, plan.Total()-lazy, live, "the plan counts every allocation made at the start")
			require.NoError(t, r.Run(context.Background(), nil))
			_, peak := d.MemoryInUse()
			require.LessOrEqual(t, peak, plan.Total(), "training stays inside the plan")
			require.Greater(t, peak, plan.Total()-lazy, "the RL step buffers were allocated")
			t.Logf("%s: plan %d bytes, peak %d", name, plan.Total(), peak)

			var bf16 int64
			for _, it := range plan.Items {
				if it.DType == kernels.BF16 {
					bf16 += it.Bytes
				}
			}
			if prec == model.PrecisionBF16 {
				require.Positive(t, bf16, "weights' copy, activations and KV cache are bf16")
			} else {
				require.Zero(t, bf16)
			}
		})
	}
}

// A run's precision must be its models' precision.
func TestRunnerRefusesModelsOfAnotherPrecision(t *testing.T) {
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Precision = "bf16"
	policy, ref := loadModel(t, fixture), loadModel(t, fixture)
	_, err := Start(filepath.Join(t.TempDir(), "run"), cfg, Inputs{Policy: policy, Reference: ref, Tokenizer: tinyTokenizer(t), Train: trainSet()})
	require.ErrorContains(t, err, "the run is bf16 but the policy is f32")
	cfg.Precision = "f16"
	require.ErrorContains(t, cfg.Validate(), "precision")
}

// A bf16 run resumes exactly: the reference (saved from its bf16 copy) and the policy (float32
// master) reload to the same weights the ops read, so the resumed step equals the uninterrupted one
// and the weights are bit-identical.
func TestResumeBF16(t *testing.T) {
	tok := tinyTokenizer(t)
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 6 // 3 steps
	cfg.Precision = "bf16"
	load := func(dir string, frozen bool) *model.Model {
		m, err := model.LoadWith(testDevice(t), dir, model.Options{Precision: model.PrecisionBF16, Frozen: frozen})
		require.NoError(t, err)
		t.Cleanup(m.Free)
		return m
	}
	in := func() Inputs {
		return Inputs{Policy: load(fixture, false), Reference: load(fixture, true), Tokenizer: tok, Train: trainSet()}
	}
	whole, part := filepath.Join(t.TempDir(), "whole"), filepath.Join(t.TempDir(), "part")
	runUntil(t, whole, cfg, in(), 0)
	runUntil(t, part, cfg, in(), 2)
	st, err := OpenRun(part)
	require.NoError(t, err)
	rr, err := st.Resume(Inputs{Policy: load(st.PolicyDir, false), Reference: load(st.ReferenceDir, true), Tokenizer: tok, Train: trainSet()})
	require.NoError(t, err)
	defer rr.Free()
	require.NoError(t, rr.Run(context.Background(), nil))
	requireSameThirdStep(t, whole, part, "model.safetensors")
}
