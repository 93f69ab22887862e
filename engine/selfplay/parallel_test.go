package selfplay

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/dist"
)

// A self-instruction round's shares, concatenated in rank order, are its prompts in order, whether or
// not rank 0 is writing a checkpoint; while it is, rank 0 takes none.
func TestRoundSharesCoverInOrder(t *testing.T) {
	for _, checkpointing := range []bool{false, true} {
		for size := 1; size <= 4; size++ {
			for n := 0; n <= 9; n++ {
				next := 0
				for rank := range size {
					lo, hi := roundShareOf(n, rank, size, checkpointing)
					require.Equal(t, next, lo, "n %d rank %d of %d", n, rank, size)
					require.LessOrEqual(t, lo, hi)
					if checkpointing && size > 1 && rank == 0 {
						require.Equal(t, lo, hi, "rank 0 writes the checkpoint")
					}
					next = hi
				}
				require.Equal(t, n, next)
			}
		}
	}
}

// A phase's gather counts the tokens, stops the run when interrupted, and reports a checkpoint that
// failed before it (then forgets it: a checkpoint is settled once).
func TestGatherPhaseSettles(t *testing.T) {
	r := &Runner{comm: dist.Single()}
	got, err := gatherPhase(context.Background(), r, "test items", []int{1, 2}, 7)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, got)
	require.Equal(t, 7, r.counters.genTokens)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = gatherPhase(ctx, r, "test items", []int{3}, 0)
	require.ErrorIs(t, err, context.Canceled)

	r.unsettled = &unsettled{step: 4, err: errors.New("disk full")}
	_, err = gatherPhase(context.Background(), r, "test items", []int{3}, 0)
	require.ErrorContains(t, err, "checkpoint of step 4 failed: rank 0: disk full")
	require.Nil(t, r.unsettled)
	_, err = gatherPhase(context.Background(), r, "test items", []int{3}, 0)
	require.NoError(t, err)
}
