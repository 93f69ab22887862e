package selfplay

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/rl"
)

// requireTimeSplit checks one metrics line's time split: every phase's time is non-negative, the
// generation time is the self-instruction's plus the rollouts', scoring and the update lie inside the
// training time, and the step's wall time holds every phase.
func requireTimeSplit(t *testing.T, m StepMetrics) {
	t.Helper()
	for name, v := range map[string]float64{"instruct": m.InstructSec, "filter": m.FilterSec, "rollout": m.RolloutSec,
		"reward": m.RewardSec, "score": m.ScoreSec, "update": m.UpdateSec, "checkpoint": m.CheckpointSec} {
		require.GreaterOrEqual(t, v, 0.0, "time of %s", name)
	}
	require.Positive(t, m.RolloutSec, "every step rolls out")
	require.Positive(t, m.ScoreSec)
	require.Positive(t, m.UpdateSec)
	require.InDelta(t, m.GenSec, m.InstructSec+m.RolloutSec, 1e-9, "generation = self-instruction + rollouts")
	require.LessOrEqual(t, m.ScoreSec+m.UpdateSec, m.TrainSec, "scoring and the update are parts of training")
	require.LessOrEqual(t, m.GenSec+m.FilterSec+m.RewardSec+m.TrainSec, m.StepSec, "the step's wall time holds its phases")
	require.LessOrEqual(t, m.InstructTokens, m.GenTokens)
	require.Positive(t, m.TrainTokens)
}

// The metrics line of every step carries the time split under its keys, with the earlier keys kept, and
// every step of a fresh run reports the checkpoint it started from (the start's, then its
// predecessor's).
func TestStepTimeSplit(t *testing.T) {
	tok := tinyTokenizer(t)
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 4 // 2 steps
	dir := filepath.Join(t.TempDir(), "run")
	r, err := Start(dir, cfg, Inputs{Policy: loadModel(t, fixture), Reference: loadModel(t, fixture), Tokenizer: tok, Train: trainSet()})
	require.NoError(t, err)
	defer r.Free()
	require.NoError(t, r.Run(context.Background(), nil))
	ms, err := ReadMetrics(dir)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	for _, m := range ms {
		requireTimeSplit(t, m)
		require.Zero(t, m.InstructTokens, "maj mode writes no problems")
		require.Zero(t, m.InstructSec)
		require.Positive(t, m.CheckpointSec, "step %d: the checkpoint it started from was written here", m.Step)
		// Each sequence trained is a prompt and one response: at least one new token each.
		require.GreaterOrEqual(t, m.TrainTokens, m.GenTokens+cfg.RolloutBatch*cfg.Samples)
	}

	f, err := os.Open(filepath.Join(dir, MetricsFile))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		for _, k := range []string{"gen_tokens", "gen_tokens_per_s", "time_generation_s", "time_reward_s", "time_train_s",
			"instruct_tokens", "train_tokens", "time_instruct_s", "time_filter_s", "time_rollout_s", "time_score_s",
			"time_update_s", "time_step_s", "time_checkpoint_s"} {
			require.Contains(t, line, k)
		}
	}
	require.NoError(t, sc.Err())
}

// A resumed run's first step reports no checkpoint time: the checkpoint it started from was written by
// the process before.
func TestStepTimeSplitResumed(t *testing.T) {
	tok := tinyTokenizer(t)
	cfg := tinyConfig(ModeMaj, rl.ReinforcePP)
	cfg.Iterations, cfg.InstructionsPerIteration = 1, 4
	dir := filepath.Join(t.TempDir(), "run")
	runUntil(t, dir, cfg, Inputs{Policy: loadModel(t, fixture), Reference: loadModel(t, fixture), Tokenizer: tok, Train: trainSet()}, 1)
	st, err := OpenRun(dir)
	require.NoError(t, err)
	rr, err := st.Resume(Inputs{Policy: loadModel(t, st.PolicyDir), Reference: loadModel(t, st.ReferenceDir), Tokenizer: tok, Train: trainSet()})
	require.NoError(t, err)
	defer rr.Free()
	require.NoError(t, rr.Run(context.Background(), nil))
	ms, err := ReadMetrics(dir)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	requireTimeSplit(t, ms[1])
	require.Positive(t, ms[0].CheckpointSec)
	require.Zero(t, ms[1].CheckpointSec)
}

// Deterministic clears every time, rate and memory field (keys ending in _s or _bytes, and time), so
// that a resumed step compares equal to the uninterrupted one, and nothing else.
func TestDeterministicClearsEveryClockField(t *testing.T) {
	var m StepMetrics
	v := reflect.ValueOf(&m).Elem()
	for i := 0; i < v.NumField(); i++ {
		switch f := v.Field(i); f.Kind() {
		case reflect.Float64:
			f.SetFloat(1.5)
		case reflect.Int, reflect.Int64:
			f.SetInt(3)
		case reflect.Uint64:
			f.SetUint(3)
		case reflect.String:
			f.SetString("x")
		}
	}
	b, err := json.Marshal(m.Deterministic())
	require.NoError(t, err)
	var line map[string]any
	require.NoError(t, json.Unmarshal(b, &line))
	for k, val := range line {
		clock := k == "time" || strings.HasSuffix(k, "_s") || strings.HasSuffix(k, "_bytes")
		switch val := val.(type) {
		case float64:
			if clock {
				require.Zero(t, val, "%s is cleared", k)
			} else {
				require.NotZero(t, val, "%s is kept", k)
			}
		case string:
			require.Equal(t, clock, val == "", "%s", k)
		}
	}
}

// A model that writes no problem the filters pass never reaches a step: the run gives up after
// MaxTicksNoStep rounds with an error that says what the rounds produced.
func TestNoUsableProblemsIsReported(t *testing.T) {
	r, _ := noProblemsRun(t, 3)
	err := r.Run(context.Background(), nil)
	require.ErrorContains(t, err, "4 rollouts and generation rounds without enough medium-difficulty groups")
	require.ErrorContains(t, err, "0 passed the filters; 0 groups kept, 0 dropped")
	require.Zero(t, r.State().Steps)
}
