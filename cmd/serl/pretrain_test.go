package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/pretrain"
	"github.com/serl-go/serl/engine/task/arith"
	"github.com/serl-go/serl/loader"
)

// A tiny pretraining run end to end, then serl eval on the model it wrote.
func TestPretrainThenEval(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	tiny := []string{"--device", "cpu", "--out", out, "--steps", "2", "--hidden", "32", "--layers", "1", "--heads", "2",
		"--kv-heads", "1", "--intermediate", "64", "--vocab", "320", "--tokenizer-docs", "40", "--batch-tokens", "600",
		"--eval-every", "0", "--eval-problems", "5", "--eval-max-new-tokens", "8"}
	code, _, errs := runCLI(t, append([]string{"pretrain"}, tiny...)...)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "step 2/2")
	assert.Contains(t, errs, "held-out pass@1")
	for _, f := range []string{"pretrain.json", "metrics.jsonl", "loss.png", "checkpoint/state.json", "model/tokenizer.json"} {
		_, err := os.Stat(filepath.Join(out, f))
		assert.NoError(t, err, f)
	}

	code, _, errs = runCLI(t, "pretrain", "--out", out, "--resume", "--steps", "9")
	assert.Equal(t, 2, code, "settings cannot change on resume")
	assert.Contains(t, errs, "--steps")
	code, _, errs = runCLI(t, "pretrain", "--device", "cpu", "--out", out, "--resume")
	require.Equal(t, 0, code, errs, "resuming a finished run just rewrites its model")

	data := filepath.Join(loader.RepoRoot(), "engine", "task", "arith", "data", "eval500.jsonl")
	report := filepath.Join(t.TempDir(), "r.json")
	resp := filepath.Join(t.TempDir(), "resp.jsonl")
	code, stdout, errs := runCLI(t, "eval", "--device", "cpu", "--model", filepath.Join(out, "model"), "--data", data,
		"--prompt-mode", "chat", "--n", "2", "--limit", "3", "--max-new-tokens", "8", "--out", report, "--responses", resp)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, stdout, "maj@2")
	b, err := os.ReadFile(report)
	require.NoError(t, err)
	var rep struct {
		Report struct {
			K       int
			Overall struct{ N int }
		}
	}
	require.NoError(t, json.Unmarshal(b, &rep))
	assert.Equal(t, 2, rep.Report.K)
	assert.Equal(t, 3, rep.Report.Overall.N)
	b, err = os.ReadFile(resp)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 3)
	var r0 struct{ Samples []string }
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &r0))
	assert.Len(t, r0.Samples, 2)

	code, _, _ = runCLI(t, "eval", "--model", filepath.Join(out, "model"), "--data", data, "--prompt-mode", "chat", "--prompt-mode", "odd")
	assert.Equal(t, 2, code)
	code, _, _ = runCLI(t, "eval", "--data", data, "--n", "-1")
	assert.Equal(t, 2, code)
	code, _, errs = runCLI(t, "eval", "--data", "builtin:nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no such built-in set")
	code, _, _ = runCLI(t, "pretrain")
	assert.Equal(t, 2, code)
}

// The recipe's direct-answer endings split the easy levels of the held-out set, where the vote gains
// most over a guess, so the shipped model's greedy pass@1 mixes worked answers and guesses there.
func TestRecipeSplitsEasyLevels(t *testing.T) {
	endings := pretrain.DefaultConfig().DirectEndings
	var n, direct [arith.Levels + 1]int
	for _, p := range arith.EvalSet() {
		n[p.LevelNum()]++
		if slices.Contains(endings, pretrain.QuestionEnding(p.Problem)) {
			direct[p.LevelNum()]++
		}
	}
	for l := 1; l <= arith.Levels; l++ {
		t.Logf("level %d: %d of %d held-out questions end in %q", l, direct[l], n[l], endings)
		f := float64(direct[l]) / float64(n[l])
		assert.True(t, f > 0.05 && f < 0.7, "level %d: %.2f of questions may be answered at once", l, f)
		if l <= 2 {
			assert.Greater(t, f, 0.3, "level %d", l)
		}
	}
}

// serl pretrain --precision bf16 trains (float32 master weights, bf16 copy and activations), records
// the precision in its config, and refuses another precision on resume; serl eval runs the model in bf16.
func TestPretrainBF16(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	code, _, errs := runCLI(t, "pretrain", "--device", "cpu", "--precision", "bf16", "--out", out, "--steps", "2", "--hidden", "32",
		"--layers", "1", "--heads", "2", "--kv-heads", "1", "--intermediate", "64", "--vocab", "320", "--tokenizer-docs", "40",
		"--batch-tokens", "600", "--eval-every", "0", "--eval-problems", "3", "--eval-max-new-tokens", "8")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "step 2/2")
	b, err := os.ReadFile(filepath.Join(out, "pretrain.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"precision": "bf16"`)
	code, _, errs = runCLI(t, "pretrain", "--device", "cpu", "--out", out, "--resume", "--precision", "f32")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "--precision")
	data := filepath.Join(loader.RepoRoot(), "engine", "task", "arith", "data", "eval500.jsonl")
	code, stdout, errs := runCLI(t, "eval", "--device", "cpu", "--precision", "bf16", "--model", filepath.Join(out, "model"), "--data", data,
		"--prompt-mode", "chat", "--limit", "3", "--max-new-tokens", "8")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, stdout, "pass@1")
}

// serl pretrain --init DIR --lora-rank R adapts an existing model: the adapters come out in PEFT format
// (usable with --adapter over the run's base) beside the merged model; LoRA without --init, and shape
// flags with it, are refused.
func TestPretrainLoRA(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base")
	tinyRun := []string{"--device", "cpu", "--steps", "2", "--batch-tokens", "600", "--eval-every", "0", "--eval-problems", "2",
		"--eval-max-new-tokens", "4"}
	code, _, errs := runCLI(t, append([]string{"pretrain", "--out", base, "--hidden", "32", "--layers", "1", "--heads", "2",
		"--kv-heads", "1", "--intermediate", "64", "--vocab", "320", "--tokenizer-docs", "40"}, tinyRun...)...)
	require.Equal(t, 0, code, errs)

	out := filepath.Join(tmp, "lora")
	code, _, errs = runCLI(t, append([]string{"pretrain", "--out", out, "--init", filepath.Join(base, "model"), "--lora-rank", "4",
		"--lora-targets", "q_proj,v_proj"}, tinyRun...)...)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "LoRA: rank 4")
	for _, f := range []string{"base/model.safetensors", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
		"model/model.safetensors", "model.tar.zst"} {
		_, err := os.Stat(filepath.Join(out, f))
		assert.NoError(t, err, f)
	}
	b, err := os.ReadFile(filepath.Join(out, "pretrain.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"lora_rank": 4`)
	data := filepath.Join(loader.RepoRoot(), "engine", "task", "arith", "data", "eval500.jsonl")
	code, stdout, errs := runCLI(t, "eval", "--device", "cpu", "--model", filepath.Join(out, "base"), "--adapter", filepath.Join(out, "adapter"),
		"--data", data, "--prompt-mode", "chat", "--limit", "2", "--max-new-tokens", "4")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, stdout, "pass@1")

	code, _, errs = runCLI(t, "pretrain", "--device", "cpu", "--out", out, "--resume", "--lora-rank", "8")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "--lora-rank")
	code, _, errs = runCLI(t, "pretrain", "--out", filepath.Join(tmp, "x"), "--lora-rank", "4")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "--lora-rank needs --init")
	code, _, errs = runCLI(t, "pretrain", "--out", filepath.Join(tmp, "y"), "--init", filepath.Join(base, "model"), "--hidden", "64")
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "--hidden with --init")
	code, _, errs = runCLI(t, "pretrain", "--device", "cpu", "--out", filepath.Join(tmp, "z"), "--init", tmp)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, filepath.Join(tmp, "config.json"))
}
