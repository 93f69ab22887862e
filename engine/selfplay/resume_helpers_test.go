package selfplay

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// runUntil starts a run in dir and stops it after step stopAfter (0: runs it to the end), checking
// that every step's loss is finite.
func runUntil(t *testing.T, dir string, cfg Config, in Inputs, stopAfter int) {
	t.Helper()
	r, err := Start(dir, cfg, in)
	require.NoError(t, err)
	defer r.Free()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = r.Run(ctx, func(m StepMetrics) {
		require.False(t, math.IsNaN(m.Loss) || math.IsInf(m.Loss, 0), "loss %v", m.Loss)
		if m.Step == stopAfter {
			cancel()
		}
	})
	if stopAfter > 0 {
		require.ErrorIs(t, err, context.Canceled)
	} else {
		require.NoError(t, err)
	}
}

// requireSameThirdStep checks that the resumed run part ended its third step as the uninterrupted run
// whole did: the same deterministic metrics and the same bytes in each of files (relative to the
// checkpoint's model folder).
func requireSameThirdStep(t *testing.T, whole, part string, files ...string) {
	t.Helper()
	mw, err := ReadMetrics(whole)
	require.NoError(t, err)
	mp, err := ReadMetrics(part)
	require.NoError(t, err)
	require.Len(t, mw, 3)
	require.Len(t, mp, 3)
	require.Equal(t, mw[2].Deterministic(), mp[2].Deterministic(), "the resumed step equals the uninterrupted one")
	for _, f := range files {
		a, err := os.ReadFile(filepath.Join(whole, "checkpoint", "model", f))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(part, "checkpoint", "model", f))
		require.NoError(t, err)
		require.True(t, slices.Equal(a, b), "bit-identical %s after the resumed step", f)
	}
}
