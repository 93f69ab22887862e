package builtin

import "github.com/serl-go/serl/engine/selfplay"

// EvalK is the maj@K of the evaluations of a default run on the built-in model (0: greedy pass@1
// only, which keeps the evaluation before and after a small share of the run).
const EvalK = 0

// SelfPlayConfig is SeRL sized for the built-in model on a 2-core machine: what `serl train` runs with
// no arguments. SeRL's own settings (16 problems × 16 samples per step, the 0.2–0.8 difficulty band,
// self-instruction sampling, KL 1e-3) are kept; the learning rate suits a small model trained from
// scratch rather than a 7B one, and the lengths suit the world's short problems.
func SelfPlayConfig() selfplay.Config {
	c := selfplay.DefaultConfig()
	c.PromptMode = selfplay.PromptChat
	c.Iterations, c.InstructionsPerIteration = 2, 96
	c.LR = 5e-5
	c.MaxPromptTokens, c.MaxNewTokens, c.InstrMaxNewTokens = 640, 320, 320
	return c
}
