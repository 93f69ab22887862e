// Package rl is the reinforcement-learning step of SeRL (docs/SERL.md §5.1–5.4): group reward
// reshaping, KL-shaped returns and advantage whitening, and the PPO-clip policy loss with its gradient
// coefficients for the model's backward. Per-token work runs on the device (kernels' RL step ops, whose
// pure-Go reference in kernels/ref states the formulas); the host sees per-sequence scalars only.
package rl

import (
	"fmt"
	"math"
	"strings"
)

// Algorithm is the advantage estimator (OpenRLHF's --advantage_estimator).
type Algorithm string

// The three algorithms SeRL compares (docs/SERL.md §5.2): reinforce (Reinforce++), group_norm (GRPO) and rloo.
const (
	ReinforcePP Algorithm = "reinforce++"
	GRPO        Algorithm = "grpo"
	RLOO        Algorithm = "rloo"
)

// ParseAlgorithm reads an algorithm name as the command line gives it (case-insensitive).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(strings.ToLower(strings.TrimSpace(s))); a {
	case ReinforcePP, GRPO, RLOO:
		return a, nil
	}
	return "", fmt.Errorf("rl: unknown algorithm %q (want %s, %s or %s)", s, ReinforcePP, GRPO, RLOO)
}

// Config holds the RL coefficients.
type Config struct {
	Algorithm Algorithm
	// KLCoef is β: k1 of (logp_old − logp_ref) in the per-token reward for reinforce++/rloo, a k3 loss
	// term for grpo (docs/SERL.md D16).
	KLCoef float64
	// ClipEps is the PPO ratio clip ε.
	ClipEps float64
	// RewardClip bounds the reshaped sequence reward to ±RewardClip (OpenRLHF reward_clip_range).
	RewardClip float64
}

// DefaultConfig is the official scripts' setting for algorithm a (docs/SERL.md §7): β = 1e-3, ε = 0.2,
// reward clip 10.
func DefaultConfig(a Algorithm) Config {
	return Config{Algorithm: a, KLCoef: 1e-3, ClipEps: 0.2, RewardClip: 10}
}

// Validate reports a configuration the formulas cannot use.
func (c Config) Validate() error {
	if _, err := ParseAlgorithm(string(c.Algorithm)); err != nil {
		return err
	}
	if !(c.KLCoef >= 0) || math.IsInf(c.KLCoef, 0) {
		return fmt.Errorf("rl: KL coefficient %v (want a finite value ≥ 0)", c.KLCoef)
	}
	if !(c.ClipEps > 0 && c.ClipEps < 1) {
		return fmt.Errorf("rl: clip ε %v (want 0 < ε < 1)", c.ClipEps)
	}
	if !(c.RewardClip > 0) {
		return fmt.Errorf("rl: reward clip %v (want > 0)", c.RewardClip)
	}
	return nil
}

// Sample is one response to a prompt, as the loop hands it over. Its per-token log-probs and advantages
// live on the device, in the Workspace that scored it.
type Sample struct {
	Group     int     // index of its prompt group in the batch
	IDs       []int32 // prompt ++ response tokens (the response includes its final EOS when it stopped)
	PromptLen int     // len(prompt); actions are IDs[PromptLen:]
	Reward    float64 // raw reward (0/1)

	shaped   float64 // the reshaped, clipped reward (Workspace.Reshape)
	reshaped uint64  // the Reshape call that set shaped (Workspace.reshapes)
}

// Actions is the number of response tokens, each an action (docs/SERL.md §5.1: the EOS too).
func (s *Sample) Actions() int { return len(s.IDs) - s.PromptLen }

// checkShape reports a sample whose actions cannot be scored: the first action is predicted from
// position PromptLen−1, so a prompt needs at least one token, and a response at least one action.
func (s *Sample) checkShape() error {
	if s == nil {
		return fmt.Errorf("nil sample")
	}
	if s.PromptLen < 1 {
		return fmt.Errorf("prompt of %d tokens (want ≥ 1)", s.PromptLen)
	}
	if s.Actions() < 1 {
		return fmt.Errorf("%d tokens with a prompt of %d: no action", len(s.IDs), s.PromptLen)
	}
	return nil
}
