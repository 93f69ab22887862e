// Package selfplay is the SeRL loop (docs/SERL.md §1 with its decisions, §9): self-instruction
// rounds fill a pending pool with new problems, each problem gets n responses, the majority answer
// rewards them, groups of medium difficulty accumulate, and Reinforce++/GRPO/RLOO trains on them —
// generation and training sharing one copy of the weights in one process.
package selfplay

import (
	"fmt"
	"math"

	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/selfinstruct"
)

// Mode is one of the paper's comparisons.
type Mode string

const (
	ModeSeRL Mode = "serl" // self-instruction + majority reward (the default)
	ModeMaj  Mode = "maj"  // majority reward on a fixed prompt set, no self-instruction
	ModeGT   Mode = "gt"   // ground-truth reward on labelled prompts (the oracle baseline)
)

// PromptMode says how a problem becomes a task prompt (docs/SERL.md D1).
type PromptMode string

const (
	PromptRaw  PromptMode = "raw"  // the problem text as is, as official
	PromptChat PromptMode = "chat" // the chat template with a system prompt asking for \boxed{}
)

// Config is every setting of a run; config.json in the run directory records it whole.
type Config struct {
	Mode      Mode         `json:"mode"`
	Algorithm rl.Algorithm `json:"algorithm"`
	Seed      uint64       `json:"seed"`

	Iterations               int `json:"iterations"`
	InstructionsPerIteration int `json:"instructions_per_iteration"`
	RolloutBatch             int `json:"rollout_batch"` // problems per training step (16)
	Samples                  int `json:"samples"`       // responses per problem (16)
	TrainBatch               int `json:"train_batch"`   // sequences per optimizer step (16)
	// MicroBatchTokens is the training arena's size in tokens: each optimizer step's sequences are
	// packed into micro-batches of at most this many tokens, whose gradients accumulate (as the
	// official scripts' micro_train_batch_size does). 0 is a whole optimizer step's worst case,
	// TrainBatch · (MaxPromptTokens + MaxNewTokens); a smaller arena holds at least one longest sample.
	MicroBatchTokens int `json:"micro_batch_tokens,omitempty"`

	LR          float64 `json:"lr"`
	WarmupRatio float64 `json:"warmup_ratio"`
	MinLRRatio  float64 `json:"min_lr_ratio"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	ClipNorm    float64 `json:"clip_norm"`
	KLCoef      float64 `json:"kl_coef"`
	ClipEps     float64 `json:"clip_eps"`

	PromptMode      PromptMode `json:"prompt_mode"`
	SystemPrompt    string     `json:"system_prompt"`
	MaxPromptTokens int        `json:"max_prompt_tokens"`
	MaxNewTokens    int        `json:"max_new_tokens"` // per response
	Temperature     float64    `json:"temperature"`
	TopP            float64    `json:"top_p"`

	InstrTemperature     float64                     `json:"instr_temperature"`
	InstrTopP            float64                     `json:"instr_top_p"`
	InstrPresencePenalty float64                     `json:"instr_presence_penalty"`
	InstrMaxNewTokens    int                         `json:"instr_max_new_tokens"`
	FewShot              int                         `json:"few_shot"`
	FewShotFromKeep      int                         `json:"few_shot_from_keep"`
	GenPrompts           int                         `json:"gen_prompts"` // few-shot prompts per self-instruction round (4)
	RougeThreshold       float64                     `json:"rouge_threshold"`
	Capitalization       selfinstruct.Capitalization `json:"capitalization"`

	DifficultyLow  float64 `json:"difficulty_low"`
	DifficultyHigh float64 `json:"difficulty_high"`

	MaxBatch       int `json:"max_batch"`         // sequences decoded together
	MaxTicksNoStep int `json:"max_ticks_no_step"` // rollouts or rounds without a training step before giving up
	// CheckpointEvery is the training steps between checkpoints (0 or 1: every step). The last step of
	// each iteration is always checkpointed, and an interrupt between a step's end and the next step's
	// first weight update checkpoints the step it stopped after (Runner.Run).
	CheckpointEvery int `json:"checkpoint_every,omitempty"`

	// Precision is f32 or bf16 (model.ParsePrecision); runs from before it existed are f32.
	Precision string `json:"precision"`

	// LoRA: with LoRARank > 0 the policy is the frozen base plus adapters of this rank (alpha,
	// targets: model.LoRAConfig), and the reference is the same base with the adapters off.
	model.LoRASettings
}

// DefaultConfig follows the official scripts (docs/SERL.md §7); callers scale lengths and the
// learning rate to their model.
func DefaultConfig() Config {
	return Config{
		Mode: ModeSeRL, Algorithm: rl.ReinforcePP, Seed: 42,
		Iterations: 3, InstructionsPerIteration: 2000, RolloutBatch: 16, Samples: 16, TrainBatch: 16,
		LR: 5e-7, WarmupRatio: 0.03, MinLRRatio: 0.1, Beta1: 0.9, Beta2: 0.95, ClipNorm: 1, KLCoef: 1e-3, ClipEps: 0.2,
		PromptMode: PromptRaw, SystemPrompt: evaluate.SystemPrompt, MaxPromptTokens: 1024, MaxNewTokens: 1024,
		Temperature: 1, TopP: 1,
		InstrTemperature: 0.8, InstrTopP: 0.95, InstrPresencePenalty: 2, InstrMaxNewTokens: 1024,
		FewShot: 8, FewShotFromKeep: 2, GenPrompts: 4, RougeThreshold: selfinstruct.DefaultThreshold,
		Capitalization: selfinstruct.CapitalizeFirst,
		DifficultyLow:  0.2, DifficultyHigh: 0.8,
		MaxBatch: 64, MaxTicksNoStep: 200, Precision: "f32",
	}
}

// Validate checks the settings; errors name the setting.
func (c Config) Validate() error {
	bad := func(field string, format string, a ...any) error {
		return fmt.Errorf("selfplay: %s: %s", field, fmt.Sprintf(format, a...))
	}
	switch c.Mode {
	case ModeSeRL, ModeMaj, ModeGT:
	default:
		return bad("mode", "%q (want serl, maj or gt)", c.Mode)
	}
	if _, err := rl.ParseAlgorithm(string(c.Algorithm)); err != nil {
		return bad("algorithm", "%v", err)
	}
	if _, err := model.ParsePrecision(c.Precision); err != nil {
		return bad("precision", "%v", err)
	}
	if c.LoRARank < 0 {
		return bad("lora_rank", "%d < 0", c.LoRARank)
	}
	if lc := c.LoRA(); lc != nil {
		if err := lc.Validate(); err != nil {
			return bad("lora", "%v", err)
		}
	}
	switch {
	case c.Iterations < 1:
		return bad("iterations", "%d < 1", c.Iterations)
	case c.RolloutBatch < 1:
		return bad("rollout_batch", "%d < 1", c.RolloutBatch)
	case c.InstructionsPerIteration < c.RolloutBatch || c.InstructionsPerIteration%c.RolloutBatch != 0:
		return bad("instructions_per_iteration", "%d must be a positive multiple of rollout_batch %d", c.InstructionsPerIteration, c.RolloutBatch)
	case c.Samples < 2:
		return bad("samples", "%d: a majority needs at least 2 responses", c.Samples)
	case c.TrainBatch < 1 || (c.RolloutBatch*c.Samples)%c.TrainBatch != 0:
		return bad("train_batch", "%d must divide rollout_batch·samples = %d", c.TrainBatch, c.RolloutBatch*c.Samples)
	case !(c.LR >= 0) || math.IsInf(c.LR, 0):
		return bad("lr", "%v (want a finite number ≥ 0)", c.LR)
	case !(c.KLCoef >= 0) || math.IsInf(c.KLCoef, 0):
		return bad("kl_coef", "%v (want a finite number ≥ 0)", c.KLCoef)
	case c.PromptMode != PromptRaw && c.PromptMode != PromptChat:
		return bad("prompt_mode", "%q (want raw or chat)", c.PromptMode)
	case c.MaxPromptTokens < 1:
		return bad("max_prompt_tokens", "%d < 1", c.MaxPromptTokens)
	case c.MaxNewTokens < 1:
		return bad("max_new_tokens", "%d < 1", c.MaxNewTokens)
	case c.InstrMaxNewTokens < 1:
		return bad("instr_max_new_tokens", "%d < 1", c.InstrMaxNewTokens)
	case !(c.DifficultyLow >= 0) || !(c.DifficultyHigh <= 1) || c.DifficultyLow > c.DifficultyHigh:
		return bad("difficulty_low/difficulty_high", "%v and %v: want 0 ≤ low ≤ high ≤ 1 (the kept share of a group's majority answer)",
			c.DifficultyLow, c.DifficultyHigh)
	case c.FewShot < 1:
		return bad("few_shot", "%d < 1", c.FewShot)
	case c.GenPrompts < 1:
		return bad("gen_prompts", "%d < 1", c.GenPrompts)
	case c.MaxBatch < 1:
		return bad("max_batch", "%d < 1", c.MaxBatch)
	case c.CheckpointEvery < 0:
		return bad("checkpoint_every", "%d < 0", c.CheckpointEvery)
	case c.MicroBatchTokens != 0 && (c.MicroBatchTokens < c.MaxPromptTokens+c.MaxNewTokens || c.MicroBatchTokens > c.stepTokens()):
		return bad("micro_batch_tokens", "%d: want 0 (a whole optimizer step) or from one longest sample, max_prompt_tokens + max_new_tokens = %d, to train_batch · that = %d",
			c.MicroBatchTokens, c.MaxPromptTokens+c.MaxNewTokens, c.stepTokens())
	}
	return nil
}

// checkpointAfter reports whether the state after training step `step` is checkpointed: every
// CheckpointEvery-th step and the last step of each iteration (whose model and evaluation are kept).
func (c Config) checkpointAfter(step int) bool {
	return c.CheckpointEvery <= 1 || step%c.CheckpointEvery == 0 || step%c.StepsPerIteration() == 0
}

// StepsPerIteration is the training steps (rollout batches trained) of one iteration.
func (c Config) StepsPerIteration() int { return c.InstructionsPerIteration / c.RolloutBatch }

// OptimizerSteps is the optimizer steps of the whole run, the length of its one cosine schedule.
func (c Config) OptimizerSteps() int {
	return c.Iterations * c.StepsPerIteration() * (c.RolloutBatch * c.Samples / c.TrainBatch)
}
