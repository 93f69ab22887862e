package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/task/arith"
)

func TestTaskSample(t *testing.T) {
	code, out, errs := runCLI(t, "task", "sample", "--n", "4", "--level", "3", "--json", "--seed", "9")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4)
	for _, l := range lines {
		var p arith.Problem
		require.NoError(t, json.Unmarshal([]byte(l), &p))
		require.Equal(t, "Level 3", p.Level)
		ans, ok := arith.Solve(p.Problem)
		require.True(t, ok, p.Problem)
		require.Equal(t, p.Answer, ans)
	}
	_, again, _ := runCLI(t, "task", "sample", "--n", "4", "--level", "3", "--json", "--seed", "9")
	require.Equal(t, out, again)
	code, _, _ = runCLI(t, "task", "sample", "--level", "9")
	require.Equal(t, 2, code)
	code, _, _ = runCLI(t, "task")
	require.Equal(t, 2, code)
}
