package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/engine/selfplay"
)

// distRunArgs is a tiny SeRL run on the built-in model: 1 iteration of 2 steps, 2 problems of 4
// samples each per step, evaluations of 3 problems (maj@2 before and after), one thread per process.
var distRunArgs = []string{"train", "--device", "cpu", "--threads", "1", "--iterations", "1", "--instructions-per-iteration", "4",
	"--rollout-batch", "2", "--samples", "4", "--train-batch", "4", "--eval-limit", "3", "--eval-k", "2",
	"--max-new-tokens", "32", "--instr-max-new-tokens", "64"}

// mpirunCLI runs this test binary as serl under mpirun; each of progs is one program of the job (one
// rank each, with its environment) in MPMD form: "-np 1 -x A=b prog args : -np 1 prog args".
func mpirunCLI(t *testing.T, progs ...[]string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("mpirun")
	require.NoError(t, err, "mpirun is missing: apt-get install openmpi-bin libopenmpi3 (.ci/run does)")
	args := []string{"--allow-run-as-root", "--oversubscribe"}
	for i, p := range progs {
		if i > 0 {
			args = append(args, ":")
		}
		args = append(append(args, "-np", "1"), p...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SERL_TEST_CLI=1")
	return cmd.CombinedOutput()
}

// rank is one rank's program for mpirunCLI: env as -x NAME=VALUE, then serl's arguments.
func rank(env []string, args ...string) []string {
	var p []string
	for _, e := range env {
		p = append(p, "-x", e)
	}
	return append(append(p, os.Args[0]), args...)
}

// relL2 is ‖a − b‖ / ‖a‖ over every tensor of two safetensors files of the same layout.
func relL2(t *testing.T, a, b string) float64 {
	t.Helper()
	fa, err := safetensors.Open(a)
	require.NoError(t, err)
	defer fa.Close()
	fb, err := safetensors.Open(b)
	require.NoError(t, err)
	defer fb.Close()
	require.Equal(t, fa.Names(), fb.Names())
	var diff, norm float64
	for _, name := range fa.Names() {
		info, _ := fa.Tensor(name)
		n := int(info.Size / 4)
		x, y := make([]float32, n), make([]float32, n)
		require.NoError(t, fa.Float32(name, x))
		require.NoError(t, fb.Float32(name, y))
		for i := range x {
			d := float64(x[i]) - float64(y[i])
			diff += d * d
			norm += float64(x[i]) * float64(x[i])
		}
	}
	return math.Sqrt(diff / norm)
}

// Two ranks compute what one process computes: the same generated problems, rewards, kept groups and
// evaluations, the same loss statistics up to summation order, and weights within 1e-5 relative L2
// after the last step — in serl mode with reinforce++, maj with grpo and gt with rloo. A rank killed in
// the middle of step 2 ends the job with an error, not a hang, and --resume on two ranks then continues
// exactly: its run directory equals the uninterrupted two-rank run's byte for byte.
func TestDataParallelEqualsOneProcess(t *testing.T) {
	base := t.TempDir()
	for _, extra := range [][]string{nil, {"--mode", "maj", "--data", builtinTrainName, "--algorithm", "grpo"},
		{"--mode", "gt", "--data", builtinTrainName, "--algorithm", "rloo"}} {
		name := "serl"
		if extra != nil {
			name = extra[1]
		}
		one, two := filepath.Join(base, name+"-one"), filepath.Join(base, name+"-two")
		args := append(append([]string(nil), distRunArgs...), extra...)
		p := startCLI(t, filepath.Join(base, name+"-trace"), nil, append(args, "--run", one)...)
		require.False(t, p.wait(t))
		args = append(args, "--run", two)
		out, err := mpirunCLI(t, rank(nil, args...), rank(nil, args...))
		require.NoError(t, err, "%s", out)
		requireSameWork(t, name, one, two)
	}
	two, part := filepath.Join(base, "serl-two"), filepath.Join(base, "part")

	// Rank 1 is killed when it reaches step 2's training; rank 0 must not wait for it forever.
	args := append(append([]string(nil), distRunArgs...), "--run", part)
	t0 := time.Now()
	out, err := mpirunCLI(t, rank([]string{"SERL_DIST_TIMEOUT=20s"}, args...),
		rank([]string{"SERL_DIST_TIMEOUT=20s", "SERL_CRASH_AT=selfplay.train:2"}, args...))
	require.Error(t, err, "%s", out)
	t.Logf("with rank 1 killed in step 2 the job ended after %s: %s", time.Since(t0).Round(time.Millisecond), firstLine(out, "exited on signal"))
	require.Less(t, time.Since(t0), 20*time.Second+10*time.Second)
	ms, err := selfplay.ReadMetrics(part)
	require.NoError(t, err)
	require.Len(t, ms, 1, "step 1 done and checkpointed, step 2 not")
	resume := []string{"train", "--device", "cpu", "--threads", "1", "--resume", part}
	out, err = mpirunCLI(t, rank(nil, resume...), rank(nil, resume...))
	require.NoError(t, err, "%s", out)
	requireSameRun(t, two, part)
}

// requireSameWork compares a one-process run with a two-rank run of the same settings.
func requireSameWork(t *testing.T, name, one, two string) {
	t.Helper()
	for _, pat := range []string{"keep_train_data_*.jsonl", "filtered_data_*.jsonl", "expired_data_*.jsonl", "eval_iter*.json"} {
		a, _ := filepath.Glob(filepath.Join(one, pat))
		b, _ := filepath.Glob(filepath.Join(two, pat))
		require.Equal(t, len(a), len(b), "%s: %s", name, pat)
		for i := range a {
			x, err := os.ReadFile(a[i])
			require.NoError(t, err)
			y, err := os.ReadFile(b[i])
			require.NoError(t, err)
			require.True(t, bytes.Equal(x, y), "%s: %s differs between one process and two ranks", name, filepath.Base(a[i]))
		}
	}
	ma, err := selfplay.ReadMetrics(one)
	require.NoError(t, err)
	mb, err := selfplay.ReadMetrics(two)
	require.NoError(t, err)
	require.Len(t, ma, 2)
	require.Len(t, mb, 2)
	for i := range ma {
		a, b := ma[i].Deterministic(), mb[i].Deterministic()
		// Exact: what sampling and the rewards decided. Close: sums of floats in another order.
		require.Equal(t, a.Generated, b.Generated, "%s step %d", name, i+1)
		require.Equal(t, a.Accepted, b.Accepted, "%s step %d", name, i+1)
		require.Equal(t, a.Rejected, b.Rejected, "%s step %d", name, i+1)
		require.Equal(t, a.RewardMean, b.RewardMean, "%s step %d", name, i+1)
		require.Equal(t, a.ShareMean, b.ShareMean, "%s step %d", name, i+1)
		require.Equal(t, [3]int{a.GroupsKept, a.GroupsDropped, a.GroupsExpired}, [3]int{b.GroupsKept, b.GroupsDropped, b.GroupsExpired}, "%s step %d", name, i+1)
		require.Equal(t, a.GenTokens, b.GenTokens, "%s step %d", name, i+1)
		t.Logf("%s step %d: loss %.9g / %.9g, grad norm %.9g / %.9g, kl %.6g / %.6g", name, i+1, a.Loss, b.Loss, a.GradNorm, b.GradNorm, a.KL, b.KL)
		// Measured: losses (float32 sums that cancel to near 0, after a step whose weights already differ
		// in summation order) within 1.5e-7, norms within 1.3e-6 relative, KL within 2.2e-10.
		require.InDelta(t, a.Loss, b.Loss, 3e-7, "%s step %d", name, i+1)
		require.InEpsilon(t, a.GradNorm, b.GradNorm, 5e-6, "%s step %d", name, i+1)
		require.InDelta(t, a.KL, b.KL, 6e-10, "%s step %d", name, i+1)
	}
	d := relL2(t, filepath.Join(one, "checkpoint", "model", "model.safetensors"), filepath.Join(two, "checkpoint", "model", "model.safetensors"))
	moved := relL2(t, filepath.Join(one, "reference", "model.safetensors"), filepath.Join(one, "checkpoint", "model", "model.safetensors"))
	t.Logf("%s: weights after step 2: relative L2 between one process and two ranks %.3g (the steps moved them by %.3g)", name, d, moved)
	require.Less(t, d, 1e-5) // issue 19's bound
	require.Less(t, d, 2e-8) // 4× the 5.4e-9 measured here at most (one thread per process)
	require.Greater(t, moved, 100*d)
}

func firstLine(out []byte, containing string) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, containing) {
			return l
		}
	}
	return fmt.Sprintf("(no line with %q)", containing)
}

// serl info names the process group it sees: none alone, MPI with its world size under mpirun.
func TestInfoShowsProcessGroup(t *testing.T) {
	code, out, errs := runCLI(t, "info", "--device", "cpu")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "parallel  none (one process")
	b, err := mpirunCLI(t, rank(nil, "info", "--device", "cpu"), rank(nil, "info", "--device", "cpu"))
	require.NoError(t, err, "%s", b)
	require.Equal(t, 1, strings.Count(string(b), "parallel  mpi, world size 2 (this is rank 0, local rank 0), libmpi.so.40 (Open MPI"), "%s", b)
}
