package main

import (
	"fmt"
	"io"

	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// enginePlan is a generation engine's device memory: its KV cache and buffers and, on a model with
// LoRA adapters (lc), their workspace.
func enginePlan(name string, mc model.Config, ecfg generate.Config, p model.Precision, lc *model.LoRAConfig) []model.PlanItem {
	items := ecfg.Plan(name, mc, p)
	if lc != nil {
		items = append(items, mc.LoRAWorkspacePlan(name, *lc, max(ecfg.MaxPrefillTokens, ecfg.MaxBatch), p))
	}
	return items
}

// fitEngineBatch is the decode batch of an engine made beside the loaded model m (serl eval, serl
// generate): the largest, at most most (the sequences the command decodes at once), whose engine
// (engine(batch)) fits in 90% of the device's memory free now, after the weights (fitMaxBatch). The
// choice is printed under flag's name.
func fitEngineBatch(d *kernels.Device, m *model.Model, flag string, most int, engine func(batch int) (generate.Config, error), stderr io.Writer) (int, error) {
	free, _, err := d.MemoryInfo()
	if err != nil {
		return 0, err
	}
	var lc *model.LoRAConfig
	if a := m.LoRA(); a != nil {
		lc = &a.Config
	}
	most = min(max(most, 1), maxFitBatch)
	b, err := fitMaxBatch(func(b int) (model.Plan, error) {
		ecfg, err := engine(b)
		if err != nil {
			return model.Plan{}, err
		}
		return model.Plan{Items: enginePlan("generation", m.Config, ecfg, m.Precision(), lc)}, nil
	}, most, free/10*9)
	if err != nil {
		return 0, err
	}
	sayFitBatch(stderr, flag, b, d.Info().Backend, free, most)
	return b, nil
}

// sayFitBatch reports a decode batch fitted to free memory.
func sayFitBatch(w io.Writer, flag string, batch int, backend string, free int64, most int) {
	fmt.Fprintf(w, "serl: %s %d: the largest decode batch whose memory plan fits in 90%% of the %s's %.1f GiB free (at most %d sequences decode at once)\n",
		flag, batch, backend, float64(free)/(1<<30), most)
}
