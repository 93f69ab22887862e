package selfplay

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/kernels"
)

// loraInputs loads the frozen base from baseDir with new adapters, or with adapterDir's; the reference
// is the same model with the adapters off.
func loraInputs(t *testing.T, d *kernels.Device, cfg Config, baseDir, adapterDir string) Inputs {
	p, _ := model.ParsePrecision(cfg.Precision)
	m, err := model.LoadWith(d, baseDir, model.Options{Precision: p, Frozen: true})
	require.NoError(t, err)
	t.Cleanup(m.Free)
	if adapterDir != "" {
		_, err = m.LoadLoRA(adapterDir)
	} else {
		_, err = m.AttachLoRA(*cfg.LoRA(), cfg.Seed)
	}
	require.NoError(t, err)
	return Inputs{Policy: m, Reference: m.Base(), Tokenizer: tinyTokenizer(t), Train: trainSet()}
}

func loraConfig(prec string) Config {
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 6 // 3 steps
	cfg.Precision = prec
	cfg.LoRARank, cfg.LoRAAlpha, cfg.LoRATargets = 4, 8, model.LoRATargets
	return cfg
}

// Resume after a kill with LoRA on reproduces the next step exactly: the checkpoint holds the
// adapters (PEFT folder) and their moments, the reference folder the base, in f32 and in bf16.
func TestResumeLoRA(t *testing.T) {
	for _, prec := range []string{"f32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			cfg := loraConfig(prec)
			d := testDevice(t)
			whole, part := filepath.Join(t.TempDir(), "whole"), filepath.Join(t.TempDir(), "part")
			runUntil(t, whole, cfg, loraInputs(t, d, cfg, fixture, ""), 0)
			runUntil(t, part, cfg, loraInputs(t, d, cfg, fixture, ""), 2)
			st, err := OpenRun(part)
			require.NoError(t, err)
			require.True(t, model.IsAdapterDir(st.PolicyDir), "the checkpoint holds the adapters")
			_, err = os.Stat(filepath.Join(st.PolicyDir, "model.safetensors"))
			require.True(t, os.IsNotExist(err), "and no copy of the base")
			rr, err := st.Resume(loraInputs(t, d, cfg, st.ReferenceDir, st.PolicyDir))
			require.NoError(t, err)
			defer rr.Free()
			require.Equal(t, 2, rr.State().Steps)
			require.NoError(t, rr.Run(context.Background(), nil))
			requireSameThirdStep(t, whole, part, model.AdapterWeightsFile, "../adam_m.safetensors", "../adam_v.safetensors")
			require.True(t, model.IsAdapterDir(filepath.Join(whole, "iter1")), "the iteration is saved as a PEFT folder")
		})
	}
}

// With LoRA the plan is still what a run allocates, to the byte (and training stays inside it): one frozen base, the adapters and
// their training state, no reference and no optimizer state of the base.
func TestMemoryPlanLoRA(t *testing.T) {
	for _, prec := range []string{"f32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			d, err := kernels.Open("cpu", 1)
			require.NoError(t, err)
			defer d.Close()
			cfg := loraConfig(prec)
			mc, err := model.LoadConfig(filepath.Join(fixture, "config.json"))
			require.NoError(t, err)
			plan, err := MemoryPlan(cfg, mc)
			require.NoError(t, err)
			in := loraInputs(t, d, cfg, fixture, "")
			r, err := Start(filepath.Join(t.TempDir(), "run"), cfg, in)
			require.NoError(t, err)
			defer r.Free()
			var lazy int64 // the RL step buffers, grown on the first steps
			for _, it := range plan.Items {
				if it.Name == RLBuffersItem {
					lazy += it.Bytes
				}
			}
			live, _ := d.MemoryInUse()
			require.Equal(t, plan.Total()-lazy, live, "the plan counts every allocation made at the start")
			require.NoError(t, r.Run(context.Background(), nil))
			_, peak := d.MemoryInUse()
			require.LessOrEqual(t, peak, plan.Total(), "training stays inside the plan")
			full := cfg
			full.LoRARank = 0
			fp, err := MemoryPlan(full, mc)
			require.NoError(t, err)
			base := model.NewLayout(mc).Bytes(kernels.F32)
			t.Logf("plan %s: LoRA %d bytes, full fine-tuning %d bytes", prec, plan.Total(), fp.Total())
			// Full fine-tuning holds at least 3 more float32 copies of the weights (gradients, moments)
			// and a reference.
			require.Greater(t, fp.Total()-plan.Total(), 3*base)
		})
	}
}
