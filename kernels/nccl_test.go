package kernels

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/loader"
)

// The CPU library exports the NCCL entry points and refuses them with SERL_E_UNSUPPORTED and a
// message naming the op and what it needs.
func TestNCCLUnsupportedOnCPU(t *testing.T) {
	d := cpuDevice(t)
	_, err := d.NCCLUniqueID()
	var se *loader.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, int32(loader.StatusUnsupported), se.Status)
	require.ErrorContains(t, err, "serl_nccl_unique_id: NCCL needs the CUDA library (--device cuda)")
	_, err = d.NCCLInit(make([]byte, NCCLIDBytes), 0, 1)
	require.ErrorContains(t, err, "serl_nccl_init: NCCL needs the CUDA library")
}

// Arguments are checked in Go before the library is called.
func TestNCCLInitArgs(t *testing.T) {
	d := cpuDevice(t)
	_, err := d.NCCLInit(make([]byte, 12), 0, 1)
	require.ErrorContains(t, err, "nccl_init: id has 12 bytes, want 128")
	_, err = d.NCCLInit(make([]byte, NCCLIDBytes), 2, 2)
	require.ErrorContains(t, err, "nccl_init: rank 2 of 2 ranks")
	var c *NCCLComm
	require.NoError(t, c.Free(true))
	_, err = c.Done()
	require.ErrorContains(t, err, "NCCL communicator is freed")
}

// On a GPU: a 1-rank communicator's all-reduce is the identity and its broadcast from rank 0 too;
// where NCCL cannot be loaded, the error names what was tried.
func TestNCCLOneRank(t *testing.T) {
	d := cudaDevice(t)
	id, err := d.NCCLUniqueID()
	if err != nil {
		require.ErrorContains(t, err, "cannot load NCCL (tried ")
		if os.Getenv("SERL_TEST_NCCL") != "" {
			t.Fatalf("SERL_TEST_NCCL is set but: %v", err)
		}
		t.Skipf("skipped: %v", err)
	}
	c, err := d.NCCLInit(id, 0, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Free(false)) }()
	want := []float32{1, -2.5, 3e7, 0.125, 7}
	x := d.MustAlloc(F32, len(want))
	defer d.Free(x)
	require.NoError(t, Upload(x, want))
	require.NoError(t, c.AllReduceSum(x))
	require.NoError(t, c.Broadcast(x, 0))
	for {
		done, err := c.Done()
		require.NoError(t, err)
		if done {
			break
		}
	}
	got := make([]float32, len(want))
	require.NoError(t, Download(got, x))
	require.Equal(t, want, got)
	require.ErrorContains(t, c.Broadcast(x, 1), "root 1 of 1 ranks")
}
