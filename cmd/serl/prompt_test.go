package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/evaluate"
)

// A model folder carries the prompt format it was trained in (serl.json), and eval, generate and
// train use it unless --prompt-mode says otherwise: a model trained from the built-in one is chat, as
// the built-in model is.
func TestModelFolderPromptMode(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--iterations", "1", "--instructions-per-iteration", "4",
		"--rollout-batch", "4", "--samples", "2", "--train-batch", "8", "--difficulty-low", "0", "--difficulty-high", "1",
		"--eval-limit", "2", "--max-new-tokens", "16", "--instr-max-new-tokens", "96", "--run", run)
	require.Equal(t, 0, code, errs)
	iter := filepath.Join(run, "iter1")
	pc, ok, err := evaluate.ReadPromptConfig(iter)
	require.NoError(t, err)
	require.True(t, ok, "iter1 has no "+evaluate.PromptFile)
	require.Equal(t, evaluate.PromptConfig{Mode: "chat", System: evaluate.SystemPrompt}, pc)

	evalArgs := []string{"eval", "--device", "cpu", "--model", iter, "--limit", "2", "--n", "0", "--max-new-tokens", "8"}
	code, _, errs = runCLI(t, evalArgs...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "prompt mode chat (from the model folder's serl.json)")
	code, _, errs = runCLI(t, append(evalArgs, "--prompt-mode", "raw")...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "prompt mode raw (from --prompt-mode)")
	code, _, errs = runCLI(t, "generate", "--device", "cpu", "--model", iter, "--prompt", "Tom has 3 cups.", "--max-new-tokens", "4")
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "prompt mode chat (from the model folder's serl.json)")

	// A folder saved in a run before serl.json existed: the run's config.json says it.
	old := filepath.Join(t.TempDir(), "run")
	require.NoError(t, os.MkdirAll(filepath.Join(old, "iter1"), 0o755))
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(iter, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(old, "iter1", f), b, 0o644))
	}
	b, err := os.ReadFile(filepath.Join(run, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(old, "config.json"), b, 0o644))
	evalArgs[4] = filepath.Join(old, "iter1")
	code, _, errs = runCLI(t, evalArgs...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "prompt mode chat (from the run's config.json)")

	// Training from that folder keeps chat; a folder without serl.json gets the official raw prompt.
	for _, c := range []struct {
		dir, mode string
	}{{iter, "chat"}, {tinyModelDir(t), "raw"}} {
		data := writeProblems(t, 4)
		r := filepath.Join(t.TempDir(), "run")
		code, _, errs = runCLI(t, "train", "--device", "cpu", "--model", c.dir, "--mode", "gt", "--data", data, "--iterations", "1",
			"--instructions-per-iteration", "2", "--rollout-batch", "2", "--samples", "2", "--train-batch", "2",
			"--max-new-tokens", "4", "--max-prompt-tokens", "200", "--run", r)
		require.Equal(t, 0, code, errs)
		b, err := os.ReadFile(filepath.Join(r, "config.json"))
		require.NoError(t, err)
		var cfg struct {
			PromptMode string `json:"prompt_mode"`
		}
		require.NoError(t, json.Unmarshal(b, &cfg))
		require.Equal(t, c.mode, cfg.PromptMode, c.dir)
		pc, ok, err := evaluate.ReadPromptConfig(filepath.Join(r, "iter1"))
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, c.mode, pc.Mode)
	}
}

// The built-in model's unpacked folder carries serl.json too: named by its path, as by builtin:arith, it
// is prompted in the chat form it was trained in (before, a path gave the raw prompt and ~1% accuracy).
func TestBuiltinFolderPromptMode(t *testing.T) {
	dir, err := builtin.ModelDir()
	require.NoError(t, err)
	for _, m := range []string{builtin.Name, dir} {
		code, _, errs := runCLI(t, "eval", "--device", "cpu", "--model", m, "--limit", "1", "--n", "0", "--max-new-tokens", "4")
		require.Equal(t, 0, code, errs)
		require.Contains(t, errs, "prompt mode chat (from the model folder's serl.json)", m)
	}
}

// accuracy.png draws maj@K only at the iterations where it was measured, never as zeros elsewhere.
func TestAccuracyChartMajOnlyWhereMeasured(t *testing.T) {
	dir := t.TempDir()
	for i, r := range []evaluate.Report{{K: 0, Overall: evaluate.Score{Pass1: 0.3}}, {K: 0, Overall: evaluate.Score{Pass1: 0.5}},
		{K: 4, Overall: evaluate.Score{Pass1: 0.6, Maj: 0.7}}} {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "eval_iter"+string(rune('0'+i))+".json"), b, 0o644))
	}
	c, ok, err := accuracyChart(dir)
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, c.Series, 2)
	require.Equal(t, []float64{0, 1, 2}, c.Series[0].X)
	require.Equal(t, []float64{0.3, 0.5, 0.6}, c.Series[0].Y)
	require.Equal(t, "maj@4", c.Series[1].Name)
	require.Equal(t, []float64{2}, c.Series[1].X)
	require.Equal(t, []float64{0.7}, c.Series[1].Y)
	require.NoError(t, c.WritePNG(filepath.Join(dir, "accuracy.png")))

	require.NoError(t, os.WriteFile(filepath.Join(dir, "eval_iter2.json"), []byte(`{"k":0}`), 0o644))
	c, _, err = accuracyChart(dir)
	require.NoError(t, err)
	require.Len(t, c.Series, 1, "greedy only: no maj@K line")
}
