package selfplay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func group(id int, share float64) Group {
	return Group{Problem: Problem{ID: id, Text: "p"}, Share: share}
}

// The difficulty filter keeps shares in [0.2, 0.8], both ends inclusive: with 16 samples 3/16 is
// dropped, 4/16 and 12/16 kept, 13/16 dropped (docs/SERL.md §4).
func TestDifficultyFilter(t *testing.T) {
	gs := []Group{group(0, 3.0/16), group(1, 4.0/16), group(2, 12.0/16), group(3, 13.0/16), group(4, 0.2), group(5, 0.8), group(6, 1.0/16), group(7, 1)}
	r := difficultyFilter(gs, 0.2, 0.8)
	var kept, dropped []int
	for _, g := range r.kept {
		kept = append(kept, g.Problem.ID)
	}
	for _, g := range r.dropped {
		dropped = append(dropped, g.Problem.ID)
	}
	require.Equal(t, []int{1, 2, 4, 5}, kept)
	require.Equal(t, []int{0, 3, 6, 7}, dropped)
	require.Len(t, difficultyFilter(gs, 0, 1).kept, 8, "gt bounds keep everything")
}

// Groups produced before the last update expire; a batch is taken only when enough are ready.
func TestExpiryAndBatches(t *testing.T) {
	s := State{Steps: 2}
	for i := 0; i < 5; i++ {
		g := group(i, 0.5)
		g.Tag = 1 + i%2 // ids 0, 2, 4 from step 1; 1, 3 from step 2
		s.Accum = append(s.Accum, g)
	}
	expired := s.expire()
	require.Len(t, expired, 3)
	require.Equal(t, []int{0, 2, 4}, []int{expired[0].Problem.ID, expired[1].Problem.ID, expired[2].Problem.ID})
	require.Len(t, s.Accum, 2)
	_, ok := s.takeBatch(3)
	require.False(t, ok)
	b, ok := s.takeBatch(2)
	require.True(t, ok)
	require.Equal(t, 1, b[0].Problem.ID)
	require.Equal(t, 3, b[1].Problem.ID)
	require.Empty(t, s.Accum)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	c := DefaultConfig()
	require.Equal(t, 3*125*16, c.OptimizerSteps(), "2000 instructions · 16 samples / 16 per step, three iterations")
	for name, mut := range map[string]func(*Config){
		"mode":                       func(c *Config) { c.Mode = "x" },
		"algorithm":                  func(c *Config) { c.Algorithm = "ppo" },
		"instructions_per_iteration": func(c *Config) { c.InstructionsPerIteration = 20 },
		"train_batch":                func(c *Config) { c.TrainBatch = 7 },
		"samples":                    func(c *Config) { c.Samples = 1 },
		"prompt_mode":                func(c *Config) { c.PromptMode = "md" },
		"difficulty_low":             func(c *Config) { c.DifficultyLow = 0.9 },
		"max_prompt_tokens":          func(c *Config) { c.MaxPromptTokens = 0 },
		"max_new_tokens":             func(c *Config) { c.MaxNewTokens = -1 },
		"instr_max_new_tokens":       func(c *Config) { c.InstrMaxNewTokens = 0 },
		"few_shot":                   func(c *Config) { c.FewShot = 0 },
		"gen_prompts":                func(c *Config) { c.GenPrompts = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		err := c.Validate()
		require.Error(t, err, name)
		require.Contains(t, err.Error(), name)
	}
	// The training arena: 0 (a whole step), or from one longest sample (1024 + 1024 tokens) to a step's
	// worst case (16 of them).
	for tokens, ok := range map[int]bool{0: true, 2048: true, 16 * 2048: true, -1: false, 2047: false, 16*2048 + 1: false} {
		c := DefaultConfig()
		c.MicroBatchTokens = tokens
		if ok {
			require.NoError(t, c.Validate(), tokens)
		} else {
			require.ErrorContains(t, c.Validate(), "micro_batch_tokens", tokens)
		}
	}
}
