package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/train"
	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"
)

const fixture = "../model/testdata/llama_f32"

// TestMain lets a test re-run this binary as a child that saves checkpoints (and is killed by
// SERL_CRASH_AT) or holds a run directory's lock.
func TestMain(m *testing.M) {
	switch os.Getenv("CHECKPOINT_TEST_CHILD") {
	case "save":
		childSave(os.Getenv("CHECKPOINT_TEST_DIR"))
		os.Exit(0)
	case "lock":
		childLock(os.Getenv("CHECKPOINT_TEST_DIR"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type testState struct {
	Step int    `json:"step"`
	Note string `json:"note"`
}

// setup loads the fixture model with an optimizer whose weights and moments hold value v everywhere.
func setup(d *kernels.Device, v float32) (*model.Model, *train.Optimizer, error) {
	m, err := model.Load(d, fixture)
	if err != nil {
		return nil, nil, err
	}
	sched, err := train.NewSchedule(1e-3, 10, 0, 0.1)
	if err != nil {
		return nil, nil, err
	}
	opt, err := train.NewOptimizer(m, train.AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
	if err != nil {
		return nil, nil, err
	}
	return m, opt, setValues(m, opt, v)
}

// setValues gives the weights v, the first moment 2v and the second 3v, and the optimizer 10v steps.
func setValues(m *model.Model, opt *train.Optimizer, v float32) error {
	for i, b := range []*model.Blob{m.Params, opt.M, opt.V} {
		host := make([]float32, b.Layout.Total)
		for j := range host {
			host[j] = v * float32(i+1)
		}
		if err := kernels.Upload(b.Data, host); err != nil {
			return err
		}
	}
	opt.SetSteps(int(10 * v))
	return nil
}

// childSave saves checkpoints 1, 2 and 3 of a run directory; SERL_CRASH_AT kills it on the way.
func childSave(dir string) {
	d, err := kernels.Open("cpu", 1)
	if err != nil {
		panic(err)
	}
	m, opt, err := setup(d, 0)
	if err != nil {
		panic(err)
	}
	for step := 1; step <= 3; step++ {
		if err := setValues(m, opt, float32(step)); err != nil {
			panic(err)
		}
		if err := Save(dir, step, m, opt, testState{Step: step, Note: "s" + strconv.Itoa(step)}); err != nil {
			panic(err)
		}
	}
}

// requireStep checks that dir's current checkpoint is a complete one of step: its state, weights,
// moments and optimizer step count all written at that step.
func requireStep(t *testing.T, d *kernels.Device, dir string, step int) {
	t.Helper()
	c, err := Open(dir)
	require.NoError(t, err)
	require.Equal(t, step, c.Step)
	var st testState
	require.NoError(t, c.ReadState(&st))
	require.Equal(t, testState{Step: step, Note: "s" + strconv.Itoa(step)}, st)
	m, err := model.Load(d, c.ModelDir())
	require.NoError(t, err)
	defer m.Free()
	m2, opt, err := setup(d, -1)
	require.NoError(t, err)
	defer m2.Free()
	defer opt.Free()
	require.NoError(t, c.ReadMoments(opt))
	require.Equal(t, 10*step, opt.Steps())
	for i, b := range []*model.Blob{m.Params, opt.M, opt.V} {
		host := make([]float32, b.Layout.Total)
		require.NoError(t, kernels.Download(host, b.Data))
		want := float32(step * (i + 1))
		require.Equal(t, want, host[0])
		require.Equal(t, want, host[len(host)-1])
	}
}

// requireOnly checks that dir holds exactly the link and the current checkpoint folder: no temporary
// and no older checkpoint.
func requireOnly(t *testing.T, dir string, step int) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{Link, folderName(step)}, names)
}

// A process killed (SIGKILL, through SERL_CRASH_AT) at every point of the swap while saving the
// second checkpoint leaves a run directory whose current checkpoint is complete: the first before the
// link switches, the second from then on. Cleaning removes every temporary, and the run goes on.
func TestKillAtEverySwapPoint(t *testing.T) {
	d := testenv.CPU(t)
	for _, point := range SwapPoints {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "CHECKPOINT_TEST_CHILD=save", "CHECKPOINT_TEST_DIR="+dir,
				"SERL_CRASH_AT="+point+":2")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "the child must be killed: %s", out)
			require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "%s", out)

			want := 1
			if slices.Index(SwapPoints, point) >= slices.Index(SwapPoints, "checkpoint.switched") {
				want = 2
			}
			requireStep(t, d, dir, want)
			require.NoError(t, Clean(dir))
			requireOnly(t, dir, want)
			// The resumed run saves its next checkpoint over whatever the kill left.
			m, opt, err := setup(d, 3)
			require.NoError(t, err)
			defer m.Free()
			defer opt.Free()
			require.NoError(t, Save(dir, 3, m, opt, testState{Step: 3, Note: "s3"}))
			requireStep(t, d, dir, 3)
			requireOnly(t, dir, 3)
		})
	}
	// Without a kill the child saves all three.
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_TEST_CHILD=save", "CHECKPOINT_TEST_DIR="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	requireStep(t, d, dir, 3)
	requireOnly(t, dir, 3)
}

// A lost or damaged checkpoint is an error naming what is wrong, never a fresh start.
func TestOpenRefusesLostOrDamaged(t *testing.T) {
	d := testenv.CPU(t)
	m, opt, err := setup(d, 1)
	require.NoError(t, err)
	defer m.Free()
	defer opt.Free()
	fresh := func(t *testing.T) string {
		dir := t.TempDir()
		require.NoError(t, Save(dir, 1, m, opt, testState{Step: 1, Note: "s1"}))
		return dir
	}

	_, err = Open(t.TempDir())
	require.ErrorContains(t, err, "checkpoint is lost")

	dir := fresh(t)
	require.NoError(t, os.Remove(filepath.Join(dir, Link)))
	_, err = Open(dir)
	require.ErrorContains(t, err, filepath.Join(dir, Link)+" is missing")
	require.ErrorContains(t, err, "checkpoint-1 on disk")

	for _, f := range []string{StateFile, MomentV, "model/model.safetensors", "model/config.json", ManifestFile} {
		dir := fresh(t)
		path := filepath.Join(dir, "checkpoint-1", f)
		require.NoError(t, os.Remove(path))
		_, err = Open(dir)
		require.ErrorContains(t, err, path, "a missing %s", f)
	}

	dir = fresh(t)
	path := filepath.Join(dir, "checkpoint-1", MomentM)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)-1] ^= 1
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, err = Open(dir)
	require.ErrorContains(t, err, path+" is damaged")

	dir = fresh(t)
	man := filepath.Join(dir, "checkpoint-1", ManifestFile)
	var mf manifest
	b, err = os.ReadFile(man)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &mf))
	mf.Files = slices.DeleteFunc(mf.Files, func(f fileSum) bool { return f.Path == StateFile })
	b, _ = json.Marshal(mf)
	require.NoError(t, os.WriteFile(man, b, 0o644))
	_, err = Open(dir)
	require.ErrorContains(t, err, "does not list state.json")

	// A folder of the previous format (checkpoint/ as a folder) is named as such.
	dir = t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, Link), 0o755))
	_, err = Open(dir)
	require.ErrorContains(t, err, "not a link")
}

// childLock holds dir's lock until its stdin closes.
func childLock(dir string) {
	l, err := Acquire(dir)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("locked")
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	l.Release()
}

// Two processes on one run directory: the second fails at once, naming the first's pid; once the
// first is gone (even killed), the directory can be taken again.
func TestLockNamesOwner(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_TEST_CHILD=lock", "CHECKPOINT_TEST_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	buf := make([]byte, 64)
	n, err := stdout.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "locked\n", string(buf[:n]))

	_, err = Acquire(dir)
	var busy *BusyError
	require.ErrorAs(t, err, &busy)
	require.Equal(t, cmd.Process.Pid, busy.PID)
	require.ErrorContains(t, err, fmt.Sprintf("in use by process %d", cmd.Process.Pid))

	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()
	stdin.Close()
	l, err := Acquire(dir)
	require.NoError(t, err, "a killed owner leaves no stale lock")
	l.Release()
}

// Create makes the run directory all at once: a failing fill leaves nothing, a non-empty directory is
// refused, and the temporary folder of a killed start is removed by the next.
func TestCreate(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "run")
	_, err := Create(path, func(dir string) error { return fmt.Errorf("boom") })
	require.ErrorContains(t, err, "boom")
	entries, _ := os.ReadDir(parent)
	require.Empty(t, entries)

	stale := filepath.Join(parent, ".run.new-123")
	require.NoError(t, os.MkdirAll(filepath.Join(stale, "reference"), 0o755))
	l, err := Create(path, func(dir string) error { return os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644) })
	require.NoError(t, err)
	require.Equal(t, path, l.Dir())
	require.FileExists(t, filepath.Join(path, "config.json"))
	require.NoDirExists(t, stale)
	_, err = Acquire(path)
	require.ErrorAs(t, err, new(*BusyError), "the created directory stays locked across the rename")
	l.Release()

	_, err = Create(path, func(string) error { return nil })
	require.ErrorContains(t, err, "not empty")
}
