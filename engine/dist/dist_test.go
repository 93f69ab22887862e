package dist

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
)

// workerEnv marks a test binary started by mpirun from TestMPI: it runs the collectives instead.
const workerEnv = "SERL_DIST_TEST_WORKER"

func TestSplitCoversInOrder(t *testing.T) {
	for _, size := range []int{1, 2, 3, 7} {
		for _, n := range []int{0, 1, 5, 16, 17} {
			next := 0
			for r := range size {
				lo, hi := SplitOf(n, r, size)
				require.Equal(t, next, lo, "n %d size %d rank %d", n, size, r)
				require.LessOrEqual(t, hi-lo, (n+size-1)/size)
				next = hi
			}
			require.Equal(t, n, next)
		}
	}
}

func TestSingleIsIdentity(t *testing.T) {
	c := Single()
	require.Equal(t, BackendNone, c.Backend())
	require.Equal(t, 0, c.Rank())
	require.Equal(t, 1, c.Size())
	x := []float32{1, 2}
	require.NoError(t, c.AllReduceSumHost(x))
	require.Equal(t, []float32{1, 2}, x)
	g, err := c.AllGather([]byte("a"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("a")}, g)
	require.NoError(t, c.Barrier())
}

func TestInitRefusesBadTimeout(t *testing.T) {
	t.Setenv(TimeoutEnv, "soon")
	_, err := Init()
	require.ErrorContains(t, err, TimeoutEnv)
}

func mpirun(t *testing.T, np int, env ...string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("mpirun")
	require.NoError(t, err, "mpirun is missing: apt-get install openmpi-bin libopenmpi3 (.ci/run does)")
	cmd := exec.Command(bin, "--allow-run-as-root", "--oversubscribe", "-np", fmt.Sprint(np), os.Args[0], "-test.run", "^TestMPIWorker$", "-test.v")
	cmd.Env = append(append(os.Environ(), workerEnv+"=1"), env...)
	return cmd.CombinedOutput()
}

// TestMPI runs TestMPIWorker on 3 ranks under mpirun: every collective against what it must give.
func TestMPI(t *testing.T) {
	out, err := mpirun(t, 3)
	require.NoError(t, err, "%s", out)
	require.Equal(t, 3, strings.Count(string(out), "--- PASS: TestMPIWorker"), "%s", out)
}

// TestMPIHungRank: rank 1 never joins (it sleeps); rank 0's barrier must fail with a timeout error
// naming the call and rank, not hang. (A rank that dies outright is mpirun's to notice: it kills the
// others at once.)
func TestMPIHungRank(t *testing.T) {
	t0 := time.Now()
	out, err := mpirun(t, 2, "SERL_DIST_TEST_DEAD=1", TimeoutEnv+"=3s")
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), "rank 0 of 2: MPI_Barrier did not complete within 3s", "%s", out)
	require.Less(t, time.Since(t0), time.Minute)
}

// TestNCCLBootstrapFails: NCCL asked for on a device that cannot give it (here the CPU library, as a
// machine without a GPU or NCCL would) ends every rank with one line naming what was tried: rank 0
// its own error, the others that rank 0 failed — none waits for a timeout.
func TestNCCLBootstrapFails(t *testing.T) {
	t0 := time.Now()
	out, err := mpirun(t, 2, "SERL_DIST_TEST_NCCL=1", GPUEnv+"=nccl", TimeoutEnv+"=2m")
	require.NoError(t, err, "%s", out)
	require.Equal(t, 2, strings.Count(string(out), "--- PASS: TestMPIWorker"), "%s", out)
	require.Contains(t, string(out), "UseDevice: dist: rank 0 of 2: --device cpu under MPI all-reduces gradients through NCCL (SERL_DIST_GPU=mpi: through host memory instead), but: kernels: nccl_unique_id: ", "%s", out)
	require.Contains(t, string(out), "serl_nccl_unique_id: NCCL needs the CUDA library (--device cuda)", "%s", out)
	require.Contains(t, string(out), "UseDevice: dist: rank 1 of 2: --device cpu under MPI all-reduces gradients through NCCL (SERL_DIST_GPU=mpi: through host memory instead), but rank 0 could not make an NCCL id", "%s", out)
	require.Less(t, time.Since(t0), time.Minute)
}

// Without MPI, or on the CPU by default, or with SERL_DIST_GPU=mpi, UseDevice changes nothing; a
// value it does not know is refused by name.
func TestUseDeviceChoice(t *testing.T) {
	d, err := kernels.Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	c := Single()
	t.Setenv(GPUEnv, "nccl")
	require.NoError(t, c.UseDevice(d)) // one process, no MPI: nothing to all-reduce over
	require.Equal(t, BackendNone, c.Backend())
	t.Setenv(GPUEnv, "gloo")
	require.ErrorContains(t, c.UseDevice(d), `dist: SERL_DIST_GPU="gloo": want nccl or mpi`)
}

func TestMPIWorker(t *testing.T) {
	if os.Getenv(workerEnv) == "" {
		t.Skip("runs only under mpirun, started by TestMPI")
	}
	c, err := Init()
	require.NoError(t, err)
	require.Equal(t, BackendMPI, c.Backend())
	if os.Getenv("SERL_DIST_TEST_NCCL") != "" {
		d, err := kernels.Open("cpu", 1)
		require.NoError(t, err)
		err = c.UseDevice(d)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "\n")
		fmt.Println("UseDevice:", err)
		require.Equal(t, BackendMPI, c.Backend())
		require.NoError(t, c.Close())
		return
	}
	if os.Getenv("SERL_DIST_TEST_DEAD") != "" {
		if c.Rank() == 1 {
			time.Sleep(time.Minute) // rank 0 waits for it in vain; mpirun ends it when rank 0 fails
		}
		err := c.Barrier()
		require.True(t, IsTimeout(err), "%v", err)
		fmt.Println(err)
		os.Exit(3)
	}
	n := c.Size()
	require.Equal(t, 3, n)
	require.Equal(t, c.Rank(), c.LocalRank()) // one host
	x := make([]float32, 1000)
	for i := range x {
		x[i] = float32(i*(c.Rank()+1)) + 0.5
	}
	require.NoError(t, c.AllReduceSumHost(x))
	for i := range x {
		require.Equal(t, float32(i*(1+2+3))+1.5, x[i], "element %d", i)
	}
	// The same through a device tensor (download, all-reduce, upload).
	d, err := kernels.Open("cpu", 1)
	require.NoError(t, err)
	defer d.Close()
	dt := d.MustAlloc(kernels.F32, len(x))
	defer d.Free(dt)
	for i := range x {
		x[i] = float32(i*(c.Rank()+1)) + 0.5
	}
	require.NoError(t, kernels.Upload(dt, x))
	require.NoError(t, c.AllReduceSum(dt))
	require.NoError(t, kernels.Download(x, dt))
	for i := range x {
		require.Equal(t, float32(i*(1+2+3))+1.5, x[i], "element %d of the tensor", i)
	}
	buf := []byte("......")
	if c.Rank() == 2 {
		copy(buf, "from 2")
	}
	require.NoError(t, c.Broadcast(buf, 2))
	require.Equal(t, "from 2", string(buf))
	rec := bytes.Repeat([]byte{byte('a' + c.Rank())}, c.Rank()) // rank 0 sends nothing
	all, err := c.AllGather(rec)
	require.NoError(t, err)
	require.Equal(t, [][]byte{{}, []byte("b"), []byte("cc")}, all)
	require.NoError(t, c.Barrier())
	require.NoError(t, c.Close())
}
