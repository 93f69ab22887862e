package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/tokenizer"
)

// tinyRun trains a 2-step gt run of the fixture model and returns its run directory.
func tinyRun(t *testing.T) string {
	dir := tinyModelDir(t)
	data := writeProblems(t, 8)
	run := filepath.Join(t.TempDir(), "run")
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt", "--data", data,
		"--iterations", "1", "--instructions-per-iteration", "4", "--rollout-batch", "2", "--samples", "2",
		"--train-batch", "2", "--max-new-tokens", "6", "--max-prompt-tokens", "40", "--run", run)
	require.Equal(t, 0, code, errs)
	return run
}

// A lost checkpoint is an error naming what is missing, never a fresh start from step 0 (issue 16 #1):
// the link switched by the swap, or a file of the checkpoint such as state.json.
func TestResumeRefusesLostCheckpoint(t *testing.T) {
	run := tinyRun(t)
	target, err := os.Readlink(filepath.Join(run, "checkpoint"))
	require.NoError(t, err)
	require.Equal(t, "checkpoint-2", target)

	require.NoError(t, os.Remove(filepath.Join(run, "checkpoint-2", "state.json")))
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--resume", run)
	require.Equal(t, 1, code, errs)
	require.Contains(t, errs, filepath.Join(run, "checkpoint-2", "state.json"))
	require.NotContains(t, errs, "resuming")

	run = tinyRun(t)
	require.NoError(t, os.Remove(filepath.Join(run, "checkpoint")))
	code, _, errs = runCLI(t, "train", "--device", "cpu", "--resume", run)
	require.Equal(t, 1, code, errs)
	require.Contains(t, errs, filepath.Join(run, "checkpoint")+" is missing")
	require.Contains(t, errs, "checkpoint-2 on disk")
	require.NotContains(t, errs, "resuming")
}

// --resume refuses every flag that would change the run, --model included, and says which apply
// (issue 16 #9).
func TestResumeRefusesRunFlags(t *testing.T) {
	run := tinyRun(t)
	code, _, errs := runCLI(t, "train", "--resume", run, "--iterations", "5", "--lr", "1")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--iterations, --lr with --resume")
	code, _, errs = runCLI(t, "train", "--resume", run, "--model", "/nonexistent")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--model with --resume")
	code, _, errs = runCLI(t, "train", "--resume", run, "--device", "cpu", "--threads", "1")
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "--device, --threads apply to the resumed run")
	require.Contains(t, errs, "resuming "+run+" at step 2")
}

// Settings, inputs and templates that cannot work are refused before the run directory exists, so the
// same command, corrected, can start it (issue 16 #4).
func TestTrainValidatesBeforeTheRunDirectory(t *testing.T) {
	tmp := t.TempDir()
	one := filepath.Join(tmp, "one.jsonl")
	require.NoError(t, os.WriteFile(one, []byte(`{"problem":"Ann has 2 pens. How many?","answer":"2"}`+"\n"), 0o644))
	empty := filepath.Join(tmp, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	small := []string{"--device", "cpu", "--iterations", "1", "--instructions-per-iteration", "2", "--rollout-batch", "2",
		"--samples", "2", "--train-batch", "4", "--eval-limit", "2"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--seeds", one}, "at least few_shot = 8 seed problems"},
		{[]string{"--seeds", empty}, empty + ": no problems"},
		{[]string{"--eval", empty}, empty + ": no problems"},
		{[]string{"--kl", "-5"}, "kl_coef"},
		{[]string{"--lr", "Inf"}, "lr"},
		{[]string{"--eval-k", "-1"}, "--eval-k -1"},
		{[]string{"--max-prompt-tokens", "3"}, "max_prompt_tokens 3"},
	} {
		run := filepath.Join(tmp, "run")
		args := append(append(append([]string{"train"}, small...), c.args...), "--run", run)
		code, _, errs := runCLI(t, args...)
		require.NotEqual(t, 0, code, "%v", c.args)
		require.Contains(t, errs, c.want, "%v", c.args)
		require.NoDirExists(t, run, "%v", c.args)
	}

	// A chat template that fails to render.
	dir := tinyModelDir(t)
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	require.NoError(t, err)
	require.NoError(t, tok.Save(dir, tokenizer.Config{ChatTemplate: "{{ raise_exception('this template is broken') }}",
		EOSToken: "<|im_end|>", PadToken: "<|endoftext|>"}))
	seeds := writeProblems(t, 10)
	run := filepath.Join(tmp, "run")
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--seeds", seeds, "--run", run,
		"--max-prompt-tokens", "200", "--max-new-tokens", "8", "--instr-max-new-tokens", "8")
	require.Equal(t, 1, code, errs)
	require.Contains(t, errs, "this template is broken")
	require.NoDirExists(t, run)
}
