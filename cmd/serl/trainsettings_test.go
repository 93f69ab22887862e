package main

import (
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/evaluate"
)

// train -h says which defaults it shows and lists the other set where it differs.
func TestTrainHelpNamesBothDefaults(t *testing.T) {
	code, _, errs := runCLI(t, "train", "-h")
	require.Equal(t, 0, code)
	require.Contains(t, errs, "The defaults shown are the built-in model's (no --model).")
	require.Regexp(t, `-iterations int\n\s+.*\(default 2\)`, errs)
	require.Contains(t, errs, "with --model DIR, SeRL's official defaults apply instead")
	require.Contains(t, errs, "--iterations 3")
	require.Contains(t, errs, "--instructions-per-iteration 2000")
	require.Contains(t, errs, "--max-new-tokens 1024")

	code, _, errs = runCLI(t, "train", "--model", "some/dir", "-h")
	require.Equal(t, 0, code)
	require.Contains(t, errs, "The defaults shown are SeRL's official ones (--model).")
	require.Contains(t, errs, "--iterations 2")
}

// Before a run starts, every setting is printed with its source, then an estimated time with its
// formula.
func TestTrainPrintsSettingsAndEstimate(t *testing.T) {
	dir := tinyModelDir(t)
	data := writeProblems(t, 4)
	run := filepath.Join(t.TempDir(), "run")
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--model", dir, "--mode", "gt", "--data", data, "--iterations", "1",
		"--instructions-per-iteration", "2", "--rollout-batch", "2", "--samples", "2", "--train-batch", "2",
		"--max-new-tokens", "4", "--max-prompt-tokens", "40", "--run", run)
	require.Equal(t, 0, code, errs)
	pc, ok, err := evaluate.ReadPromptConfig(filepath.Join(run, "reference"))
	require.NoError(t, err)
	require.True(t, ok, "the run's reference records the prompt format it was prompted in")
	require.Equal(t, evaluate.ModeRaw, pc.Mode)
	for _, re := range []string{
		`--iterations +1 +\(flag\)`,
		`--lr +5e-07 +\(SeRL default\)`,
		`--kl +0.001 +\(SeRL default\)`,
		`--max-batch +64 +\(SeRL default; on a GPU, the largest that free memory holds\)`,
		`--prompt-mode +raw +\(the official default\)`,
		`--data +\S+data.jsonl +\(flag\)`,
		`serl: estimated time at most ~\S+: .* generated .* at 2·params FLOPs and [0-9.]+ GFLOP/s, .* trained tokens at 10·params and [0-9.]+ GFLOP/s \(measured matrix products\), every response at its token limit`,
	} {
		require.Regexp(t, regexp.MustCompile(re), errs)
	}
	require.Less(t, regexp.MustCompile(`effective settings`).FindStringIndex(errs)[0],
		regexp.MustCompile(`memory plan`).FindStringIndex(errs)[0], "settings come first")
}
