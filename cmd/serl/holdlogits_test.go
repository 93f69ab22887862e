package main

import (
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
