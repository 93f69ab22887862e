package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/checkpoint"
	"github.com/serl-go/serl/engine/selfplay"
)

// TestMain lets a test run this binary as the serl command (SERL_TEST_CLI=1), so that it can kill a
// real `serl train` process and run a second one beside it.
func TestMain(m *testing.M) {
	if os.Getenv("SERL_TEST_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// killRunArgs is a tiny SeRL run on the built-in model: 3 iterations of 2 steps, 2 problems of 4
// samples per step, evaluations of 3 problems (maj@2 before and after), on one thread so that two
// runs compute bit for bit the same.
var killRunArgs = []string{"train", "--device", "cpu", "--threads", "1", "--iterations", "3", "--instructions-per-iteration", "4",
	"--rollout-batch", "2", "--samples", "4", "--train-batch", "4", "--eval-limit", "3", "--eval-k", "2",
	"--max-new-tokens", "32", "--instr-max-new-tokens", "64"}

type cliProcess struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	trace  string
}

// startCLI starts serl (this test binary) with args; env adds variables (SERL_CRASH_AT, …).
func startCLI(t *testing.T, trace string, env []string, args ...string) *cliProcess {
	t.Helper()
	p := &cliProcess{trace: trace}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(append(os.Environ(), "SERL_TEST_CLI=1", "SERL_CRASH_TRACE="+trace), env...)
	p.cmd.Stderr = &p.stderr
	require.NoError(t, p.cmd.Start())
	return p
}

// wait returns whether the process was killed by SIGKILL; any other end but success fails the test.
func (p *cliProcess) wait(t *testing.T) (killed bool) {
	t.Helper()
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
		return true
	}
	require.NoError(t, err, "serl %s:\n%s", strings.Join(p.cmd.Args[1:], " "), p.stderr.String())
	return false
}

// lastPoint is the last crash point the process reached (where a kill after it landed).
func (p *cliProcess) lastPoint() string {
	b, _ := os.ReadFile(p.trace)
	lines := strings.Fields(string(b))
	if len(lines) == 0 {
		return "startup"
	}
	return lines[len(lines)-1]
}

// phase names the work a kill after the crash point interrupted.
func phase(point string) string {
	switch {
	case point == "startup" || point == "rundir.filled":
		return "start"
	case strings.HasPrefix(point, "selfplay.eval"):
		return "evaluation"
	case point == "selfplay.generate" || point == "selfplay.rollout":
		return "generation"
	case point == "selfplay.train" || point == "selfplay.metrics":
		return "training"
	case point == "selfplay.iteration" || strings.HasPrefix(point, "checkpoint."):
		return "checkpoint writing"
	}
	return point
}

// serl train killed at least 20 times — at every point of the checkpoint swap, in every phase of the
// loop through SERL_CRASH_AT, then with SIGKILL at random moments — and resumed each time leaves a run
// directory equal to an uninterrupted run's: weights, moments and every record file byte for byte,
// metrics apart from their timing fields, and no temporaries.
func TestKillAndResumeEqualsUninterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serl train about 30 times on the built-in model")
	}
	t0 := time.Now()
	base := t.TempDir()
	whole, part := filepath.Join(base, "whole"), filepath.Join(base, "part")
	traces := 0
	newTrace := func() string {
		traces++
		return filepath.Join(base, fmt.Sprintf("trace%d", traces))
	}
	p := startCLI(t, newTrace(), nil, append(killRunArgs, "--run", whole)...)
	require.False(t, p.wait(t))
	wholeTime := time.Since(t0)

	landed := map[string]int{}
	var log []string
	kills := 0
	// Each process is killed the first time (or the n-th) it reaches the point; while the run
	// directory does not exist yet the command is a new start, afterwards a resume.
	points := []string{
		"checkpoint.model", // a start killed while writing checkpoint-0 into its hidden folder
		"rundir.filled",    // … and once that folder is complete, before it is renamed into place
		"selfplay.eval", "selfplay.eval.written", "selfplay.generate", "selfplay.rollout", "selfplay.train", "selfplay.metrics",
	}
	points = append(points, checkpoint.SwapPoints...)
	points = append(points, "selfplay.iteration", "selfplay.eval", "checkpoint.linked:2")
	command := func() []string {
		if _, err := os.Stat(part); errors.Is(err, os.ErrNotExist) {
			return append(append([]string(nil), killRunArgs...), "--run", part)
		}
		return []string{"train", "--device", "cpu", "--threads", "1", "--resume", part}
	}
	for i, at := range points {
		args := command()
		p := startCLI(t, newTrace(), []string{"SERL_CRASH_AT=" + at}, args...)
		require.True(t, p.wait(t), "serl was to be killed at %s but finished:\n%s", at, p.stderr.String())
		kills++
		landed[phase(p.lastPoint())]++
		log = append(log, at)
		if i < 2 {
			require.NoDirExists(t, part, "a start killed before its directory is complete leaves none")
		}
	}
	// SIGKILL at random moments once the process is at work (its first crash point reached).
	rng := rand.New(rand.NewPCG(16, 1))
	finished := false
	for i := 0; i < 12 && !finished; i++ {
		p := startCLI(t, newTrace(), nil, command()...)
		done := make(chan bool, 1)
		go func() { done <- p.wait(t) }()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if fi, err := os.Stat(p.trace); err == nil && fi.Size() > 0 {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		if <-done {
			kills++
			landed[phase(p.lastPoint())]++
			log = append(log, "random after "+p.lastPoint())
		} else {
			finished = true // it ended before the kill: the run is complete
		}
	}
	if !finished {
		p := startCLI(t, newTrace(), nil, command()...)
		require.False(t, p.wait(t))
		require.Contains(t, p.stderr.String(), "serl: finished steps")
	}
	t.Logf("%d kills in %s (the uninterrupted run took %s); by phase: %v", kills, time.Since(t0).Round(time.Millisecond),
		wholeTime.Round(time.Millisecond), landed)
	t.Logf("kills, in order: %s", strings.Join(log, ", "))
	require.GreaterOrEqual(t, kills, 20)
	for _, ph := range []string{"evaluation", "generation", "training", "checkpoint writing"} {
		require.Positive(t, landed[ph], "no kill landed in %s", ph)
	}
	requireSameRun(t, whole, part)
	entries, err := os.ReadDir(base)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), "."), "temporary %s left beside the run", e.Name())
	}
}

// requireSameRun compares two run directories: the same entries, links to the same names, every file
// byte for byte except the lock (a pid) and metrics.jsonl (compared without its timing fields).
func requireSameRun(t *testing.T, want, got string) {
	t.Helper()
	list := func(root string) map[string]fs.DirEntry {
		out := map[string]fs.DirEntry{}
		require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out[rel] = d
			return nil
		}))
		return out
	}
	w, g := list(want), list(got)
	names := func(m map[string]fs.DirEntry) []string {
		var s []string
		for k := range m {
			s = append(s, k)
		}
		return s
	}
	require.ElementsMatch(t, names(w), names(g), "the same files, and no temporaries")
	files := 0
	for rel, d := range w {
		a, b := filepath.Join(want, rel), filepath.Join(got, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			la, err := os.Readlink(a)
			require.NoError(t, err)
			lb, err := os.Readlink(b)
			require.NoError(t, err)
			require.Equal(t, la, lb, rel)
		case d.IsDir() || rel == checkpoint.LockFile:
		case rel == selfplay.MetricsFile:
			ma, err := selfplay.ReadMetrics(want)
			require.NoError(t, err)
			mb, err := selfplay.ReadMetrics(got)
			require.NoError(t, err)
			require.Len(t, mb, len(ma))
			for i := range ma {
				require.Equal(t, ma[i].Deterministic(), mb[i].Deterministic(), "metrics line %d", i+1)
			}
			files++
		default:
			ba, err := os.ReadFile(a)
			require.NoError(t, err)
			bb, err := os.ReadFile(b)
			require.NoError(t, err)
			require.True(t, bytes.Equal(ba, bb), "%s differs", rel)
			files++
		}
	}
	require.Greater(t, files, 20)
}

// Two serl train processes on one run directory: the second fails at once, naming the first's pid.
func TestTrainRunDirectoryLock(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serl train on the built-in model")
	}
	run := filepath.Join(t.TempDir(), "run")
	p := startCLI(t, filepath.Join(t.TempDir(), "trace"), nil, append(killRunArgs, "--run", run)...)
	defer p.cmd.Process.Kill()
	pid := strconv.Itoa(p.cmd.Process.Pid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the first process never took the lock:\n%s", p.stderr.String())
		if b, err := os.ReadFile(filepath.Join(run, checkpoint.LockFile)); err == nil && strings.TrimSpace(string(b)) == pid {
			break
		}
	}
	t0 := time.Now()
	code, _, errs := runCLI(t, "train", "--device", "cpu", "--resume", run)
	took := time.Since(t0)
	require.Equal(t, 1, code, errs)
	require.Contains(t, errs, "in use by process "+pid)
	_, err := checkpoint.Acquire(run) // the kernel drops a lock when its process ends: it still runs
	require.ErrorContains(t, err, "in use by process "+pid)
	t.Logf("the second process was refused after %s: %s", took.Round(time.Millisecond), lastLine(errs))
	p.cmd.Process.Kill()
	p.cmd.Wait()
	// Once the owner is gone, even killed, the run resumes.
	code, _, errs = runCLI(t, "train", "--device", "cpu", "--threads", "1", "--resume", run)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "--threads apply to the resumed run")
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

// With --checkpoint-every 2 (one iteration of 3 steps: checkpoints after steps 2 and 3), a kill in
// step 2's training loses step 1, which no checkpoint holds: the resumed run starts again from step 0,
// cuts step 1's records back, and ends equal to an uninterrupted run, byte for byte.
func TestKillBetweenCheckpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serl train three times on the built-in model")
	}
	args := []string{"train", "--device", "cpu", "--threads", "1", "--iterations", "1", "--instructions-per-iteration", "6",
		"--rollout-batch", "2", "--samples", "4", "--train-batch", "4", "--eval-limit", "3",
		"--max-new-tokens", "32", "--instr-max-new-tokens", "64", "--checkpoint-every", "2"}
	base := t.TempDir()
	whole, part := filepath.Join(base, "whole"), filepath.Join(base, "part")
	p := startCLI(t, filepath.Join(base, "trace0"), nil, append(args, "--run", whole)...)
	require.False(t, p.wait(t))
	p = startCLI(t, filepath.Join(base, "trace1"), []string{"SERL_CRASH_AT=selfplay.train:2"}, append(args, "--run", part)...)
	require.True(t, p.wait(t), "serl was to be killed in step 2's training:\n%s", p.stderr.String())
	ms, err := selfplay.ReadMetrics(part)
	require.NoError(t, err)
	require.Len(t, ms, 1, "step 1 was trained")
	link, err := os.Readlink(filepath.Join(part, checkpoint.Link))
	require.NoError(t, err)
	require.Equal(t, "checkpoint-0", link, "and not checkpointed")
	p = startCLI(t, filepath.Join(base, "trace2"), nil, "train", "--device", "cpu", "--threads", "1", "--resume", part)
	require.False(t, p.wait(t))
	require.Contains(t, p.stderr.String(), "resuming "+part+" at step 0")
	requireSameRun(t, whole, part)
}
