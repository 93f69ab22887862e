package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The head holds a step's logits on a GPU whose free memory takes the plan with them within 90%, and
// never on the CPU, whose plans stay as they were.
func TestDecideHoldLogits(t *testing.T) {
	const gib = 1 << 30
	hold, why := decideHoldLogits("cuda", 100*gib, 90*gib, 85*gib)
	require.True(t, hold)
	assert.Contains(t, why, "keeps a step's logits from forward to backward (5.00 GiB more")
	hold, why = decideHoldLogits("cuda", 100*gib, 90*gib+1, 85*gib)
	require.False(t, hold)
	assert.Contains(t, why, "recomputes its logits in the backward")
	hold, why = decideHoldLogits("cuda", 10*gib, 1*gib, 1*gib)
	require.True(t, hold, "a batch the head takes in one chunk")
	assert.Empty(t, why)
	hold, why = decideHoldLogits("cpu", 1000*gib, 90*gib, 85*gib)
	require.False(t, hold)
	assert.Empty(t, why)
}

// serl info on a GPU makes serl train's choice and prints the plan that goes with it. The built-in
// model's arena of 131,072 tokens takes two chunks of logits, so one of the two messages is printed:
// at the SIMT emulator's default 4 GiB the head recomputes; ./build.sh test runs this again with
// SERL_SIMT_MEMORY_MB=16384, where it holds them (the emulator reads its size once a process).
func TestInfoHoldLogitsOnGPU(t *testing.T) {
	if os.Getenv("SERL_TEST_DEVICES") != "cuda" {
		t.Skip("skipped: SERL_TEST_DEVICES=cuda runs it")
	}
	code, out, errs := runCLI(t, "info", "--device", "cuda", "--model", "builtin:arith", "--train-batch", "64",
		"--max-prompt-tokens", "1024", "--max-new-tokens", "1024")
	require.Equal(t, 0, code, errs)
	keeps := strings.Contains(out, "serl: the head keeps a step's logits from forward to backward (0.25 GiB more")
	recomputes := strings.Contains(out, "serl: the head recomputes its logits in the backward, a chunk at a time: holding them (0.25 GiB more)")
	require.True(t, keeps != recomputes, "exactly one of the two decisions:\n%s", out)
	require.Equal(t, keeps, strings.Contains(out, "activations (131072 tokens, 64 sequences, logits held)"), "the plan printed is the one decided:\n%s", out)
	t.Logf("logits held: %v", keeps)
}
