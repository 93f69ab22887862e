package selfplay

import (
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/kernels"
)

// generationConfig sizes the run's generation engine (rollouts and self-instruction rounds) with
// generate.Size, the rule MemoryPlan uses too.
func (c Config) generationConfig(mc model.Config) (generate.Config, error) {
	return generate.Size(mc, generate.Sizing{MaxPrompt: c.MaxPromptTokens, MaxNew: max(c.MaxNewTokens, c.InstrMaxNewTokens),
		MaxBatch: c.MaxBatch, Prompts: max(c.RolloutBatch, c.GenPrompts)})
}

// RLBuffersItem names the plan's bound on the RL step's device buffers (log-probs, advantages and
// per-sequence scalars, rl.Workspace), which are allocated on the first training steps rather than at
// the start.
const RLBuffersItem = "RL step buffers (at most)"

// MemoryPlan is everything a run of c allocates on the device for a policy of configuration mc, computed
// from the settings alone, before anything is allocated: the policy's weights (float32 master and, under
// bf16, the bf16 copy), the frozen reference (none at kl_coef 0), gradients and AdamW moments, the
// training arena (ArenaTokens), and the generation engine's KV cache, workspace and sampler. Evaluation, which runs its own engine, is the
// caller's to add.
func MemoryPlan(c Config, mc model.Config) (model.Plan, error) {
	var pl model.Plan
	if err := c.Validate(); err != nil {
		return pl, err
	}
	p, _ := model.ParsePrecision(c.Precision)
	gcfg, err := c.generationConfig(mc)
	if err != nil {
		return pl, err
	}
	if lc := c.LoRA(); lc != nil {
		// One frozen copy of the base serves policy, reference and generation; only the adapters train.
		pl.Add(mc.WeightsPlan("base (frozen: policy, reference and generation)", model.Options{Precision: p, Frozen: true})...)
		pl.Add(mc.LoRAPlan(*lc, p)...)
	} else {
		pl.Add(mc.WeightsPlan("policy", model.Options{Precision: p})...)
		if c.KLCoef != 0 { // with no KL term the run holds no reference (Inputs.Reference)
			pl.Add(mc.WeightsPlan("reference", model.Options{Precision: p, Frozen: true})...)
		}
		pl.Add(mc.OptimizerPlan()...)
	}
	pl.Add(mc.LoRAActivationPlan(c.ArenaTokens(), c.TrainBatch, p, c.LoRA())...)
	pl.Add(gcfg.Plan("generation", mc, p)...)
	if lc := c.LoRA(); lc != nil {
		pl.Add(mc.LoRAWorkspacePlan("generation", *lc, max(gcfg.MaxPrefillTokens, gcfg.MaxBatch), p))
	}
	// The RL step's buffers grow on the first steps (rl.Workspace), up to this bound.
	samples := c.RolloutBatch * c.Samples
	pl.Add(model.PlanItem{Name: RLBuffersItem, DType: kernels.F32, Bytes: rl.MaxDeviceBytes(samples, samples*c.MaxNewTokens)})
	return pl, nil
}
