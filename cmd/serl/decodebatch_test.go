package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// serl eval and serl generate with --batch 0 (the default on a GPU): the decode batch is the largest
// whose engine fits in 90% of the memory free beside the loaded model, at most the sequences the command
// decodes at once (problems × (1 + n); generate's n samples); the choice is printed and changes no
// result (generate's log-probs apart, in their last bit). An explicit --batch is kept.
func TestEvalAndGenerateFitTheDecodeBatchToFreeMemory(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)

	// The engine's plan grows with the batch, so the budget decides (fitMaxBatch's search).
	d, err := kernels.Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	m, err := model.LoadWith(d, dir, model.Options{Frozen: true})
	require.NoError(t, err)
	defer m.Free()
	plan := func(b int) (model.Plan, error) {
		ecfg, err := evaluate.EngineConfig(m.Config, 16, 64, b)
		return model.Plan{Items: enginePlan("generation", m.Config, ecfg, m.Precision(), nil)}, err
	}
	p9, err := plan(9)
	require.NoError(t, err)
	p10, err := plan(10)
	require.NoError(t, err)
	require.Greater(t, p10.Total(), p9.Total())
	for budget, want := range map[int64]int{p9.Total(): 9, p10.Total() - 1: 9, p9.Total() - 1: 8, p10.Total(): 10} {
		got, err := fitMaxBatch(plan, 24, budget)
		require.NoError(t, err)
		require.Equal(t, want, got, "budget %d", budget)
	}
	// On the CPU, whose free memory holds far more: at most what is decoded at once.
	got, err := fitEngineBatch(d, m, "--batch", 5000, func(b int) (generate.Config, error) {
		return evaluate.EngineConfig(m.Config, 16, 64, b)
	}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, maxFitBatch, got)

	evalArgs := []string{"eval", "--device", "cpu", "--model", dir, "--data", data, "--prompt-mode", "raw", "--n", "2", "--max-new-tokens", "8"}
	code, fitted, errs := runCLI(t, append(evalArgs, "--batch", "0")...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "--batch 24: the largest decode batch whose memory plan fits in 90% of the cpu's") // 8 problems × (1 + 2)
	code, fixed, errs := runCLI(t, append(evalArgs, "--batch", "5")...)
	require.Equal(t, 0, code, errs)
	require.NotContains(t, errs, "the largest decode batch")
	require.Equal(t, fixed, fitted, "the batch changes no result")
	code, _, errs = runCLI(t, append(evalArgs, "--batch", "-1")...)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--batch -1: want ≥ 0")

	genArgs := []string{"generate", "--device", "cpu", "--model", dir, "--ids", "5,6,7,8", "--n", "3", "--seed", "3", "--max-new-tokens", "6", "--json"}
	code, fitted, errs = runCLI(t, append(genArgs, "--batch", "0")...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "--batch 3: the largest decode batch")
	code, fixed, errs = runCLI(t, append(genArgs, "--batch", "2")...)
	require.Equal(t, 0, code, errs)
	require.NotContains(t, errs, "the largest decode batch")
	tokens := func(out string) (ts [][]int32) {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var s struct{ Tokens []int32 }
			require.NoError(t, json.Unmarshal([]byte(l), &s))
			ts = append(ts, s.Tokens)
		}
		return ts
	}
	// The same tokens; the log-probs may differ in their last bit (the batch's shapes round differently).
	require.Equal(t, tokens(fixed), tokens(fitted))
	require.Len(t, tokens(fitted), 3)
}
