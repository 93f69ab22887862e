package selfplay

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/rl"
)

// Resuming from the checkpoint of step 2 at iteration boundary 1 removes every record written after
// it: metrics lines of steps 3 and 4 (and a line cut short by a kill), data files of ticks at steps
// ≥ 2, the evaluation and model of boundary 2. What the checkpoint contains stays.
func TestCutBack(t *testing.T) {
	dir := t.TempDir()
	d := &runDir{path: dir}
	var metrics strings.Builder
	for s := 1; s <= 4; s++ {
		fmt.Fprintf(&metrics, "{\"step\":%d,\"loss\":0.5}\n", s)
	}
	metrics.WriteString(`{"step":5,"lo`) // a kill in the middle of an append
	require.NoError(t, os.WriteFile(d.file(MetricsFile), []byte(metrics.String()), 0o644))
	for n := 0; n <= 4; n++ {
		for _, kind := range []string{"filtered_data", "expired_data", "keep_train_data"} {
			require.NoError(t, os.WriteFile(d.file(fmt.Sprintf("%s_%d.jsonl", kind, n)), []byte("{}\n"), 0o644))
		}
	}
	for k := 0; k <= 2; k++ {
		require.NoError(t, os.WriteFile(d.file(fmt.Sprintf("eval_iter%d.json", k)), []byte("{}"), 0o644))
		if k > 0 {
			require.NoError(t, os.MkdirAll(d.file(fmt.Sprintf("iter%d", k)), 0o755))
		}
	}
	require.NoError(t, os.WriteFile(d.file("seeds.jsonl"), []byte("{}\n"), 0o644))

	require.NoError(t, d.cutBack(State{Steps: 2, Evaluated: 2}))
	b, err := os.ReadFile(d.file(MetricsFile))
	require.NoError(t, err)
	require.Equal(t, "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"loss\":0.5}\n", string(b))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{MetricsFile, "seeds.jsonl", "eval_iter0.json", "eval_iter1.json", "iter1",
		"filtered_data_0.jsonl", "expired_data_0.jsonl", "keep_train_data_0.jsonl",
		"filtered_data_1.jsonl", "expired_data_1.jsonl", "keep_train_data_1.jsonl"}, names)

	// A damaged line that is not the last one is an error naming the file and line.
	require.NoError(t, os.WriteFile(d.file(MetricsFile), []byte("{\"step\":1}\nnot json\n{\"step\":2}\n"), 0o644))
	require.ErrorContains(t, d.cutBack(State{Steps: 2}), filepath.Join(dir, MetricsFile)+":2")
}

// A run directory has one owner: while a runner holds it, OpenRun fails at once naming this process.
func TestOpenRunWhileOwned(t *testing.T) {
	tok := tinyTokenizer(t)
	dir := filepath.Join(t.TempDir(), "run")
	in := Inputs{Policy: loadModel(t, fixture), Reference: loadModel(t, fixture), Tokenizer: tok, Train: trainSet()}
	r, err := Start(dir, tinyConfig(ModeMaj, rl.GRPO), in)
	require.NoError(t, err)
	_, err = OpenRun(dir)
	require.ErrorContains(t, err, fmt.Sprintf("in use by process %d", os.Getpid()))
	r.Free()
	st, err := OpenRun(dir)
	require.NoError(t, err)
	require.Equal(t, 0, st.Step, "a new run's directory holds the checkpoint of step 0")
	st.Close()
}

// Resuming what is not a run directory fails naming it, worded once (the single-process agreement
// hands this process's error back as it was, with no second "selfplay:").
func TestOpenRunMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nowhere")
	_, err := OpenRun(dir)
	require.EqualError(t, err, "selfplay: checkpoint: run directory "+dir+" does not exist")
	empty := t.TempDir()
	_, err = OpenRun(empty)
	require.ErrorContains(t, err, "selfplay: "+empty+" is not a run directory")
	require.NotContains(t, err.Error(), "selfplay: selfplay:")
}
