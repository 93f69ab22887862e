package dist

import (
	"fmt"
	"os"
	"time"

	"github.com/serl-go/serl/kernels"
)

// BackendNCCL is MPI for the process group and host records, NCCL for device tensors.
const BackendNCCL = "mpi+nccl"

// GPUEnv chooses how the device tensors of a CUDA run under MPI are all-reduced: "nccl" (the default
// for --device cuda) or "mpi" (through host memory, as on the CPU).
const GPUEnv = "SERL_DIST_GPU"

// UseDevice tells the group which device its tensors live on. Under MPI with a CUDA device it
// bootstraps NCCL, as Horovod does: rank 0 makes the unique id, MPI broadcasts its 128 bytes, every
// rank joins the communicator on its device; from then on AllReduceSum runs through NCCL on the
// device's stream. SERL_DIST_GPU=mpi keeps the host path; SERL_DIST_GPU=nccl asks for NCCL on any
// device (the CPU library refuses it, which tests the failure path). A failure is an error, never a
// silent fall back to the slower path.
func (c *Comm) UseDevice(d *kernels.Device) error {
	mode := os.Getenv(GPUEnv)
	switch mode {
	case "", "nccl", "mpi":
	default:
		return fmt.Errorf("dist: %s=%q: want nccl or mpi", GPUEnv, mode)
	}
	if c.lib == nil || mode == "mpi" || (mode == "" && d.Backend() != "cuda") {
		return nil
	}
	if c.nccl != nil {
		return fmt.Errorf("dist: rank %d: NCCL is already set up", c.rank)
	}
	why := fmt.Sprintf("--device %s under MPI all-reduces gradients through NCCL (%s=mpi: through host memory instead)", d.Backend(), GPUEnv)
	// Rank 0 sends a status byte ahead of the id, so that its failure ends every rank at once with
	// its reason instead of leaving the others to time out.
	buf := make([]byte, 1+kernels.NCCLIDBytes)
	var idErr error
	if c.rank == 0 {
		id, err := d.NCCLUniqueID()
		if err != nil {
			idErr = err
		} else {
			buf[0] = 1
			copy(buf[1:], id)
		}
	}
	if err := c.Broadcast(buf, 0); err != nil {
		return err
	}
	if idErr != nil {
		return fmt.Errorf("dist: rank 0 of %d: %s, but: %w", c.size, why, idErr)
	}
	if buf[0] != 1 {
		return fmt.Errorf("dist: rank %d of %d: %s, but rank 0 could not make an NCCL id (its error ends the job)", c.rank, c.size, why)
	}
	// ncclCommInitRank blocks until every rank joins: bounded like any collective.
	var comm *kernels.NCCLComm
	err := c.do("ncclCommInitRank", func() error {
		var err error
		comm, err = d.NCCLInit(buf[1:], c.rank, c.size)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, why)
	}
	c.nccl, c.backend = comm, BackendNCCL
	return nil
}

// allReduceNCCL is AllReduceSum through NCCL: the ranks meet (as for every collective), the
// all-reduce is enqueued on the device's stream, and its completion polled against the deadline. On
// a timeout or an NCCL error the communicator is aborted (ncclCommAbort), so nothing waits on a dead
// peer; the group is then unusable for device tensors and the caller must end the process (Abort).
func (c *Comm) allReduceNCCL(t kernels.Tensor) error {
	call := fmt.Sprintf("ncclAllReduce of %d floats", t.Len())
	if c.nccl == nil {
		return fmt.Errorf("dist: rank %d of %d: %s: the NCCL communicator was aborted after an earlier failure", c.rank, c.size, call)
	}
	if trace {
		fmt.Fprintf(os.Stderr, "dist trace: rank %d: %s\n", c.rank, call)
	}
	deadline := time.Now().Add(c.Timeout)
	if c.size > 1 {
		if err := c.arrive(call, deadline); err != nil {
			return err
		}
	}
	fail := func(err error) error {
		_ = c.nccl.Free(true) // the error that matters is the one that led here
		c.nccl = nil
		return err
	}
	if err := c.nccl.AllReduceSum(t); err != nil {
		return fail(fmt.Errorf("dist: rank %d of %d: %s: %w", c.rank, c.size, call, err))
	}
	pause := time.Microsecond
	for {
		done, err := c.nccl.Done()
		if err != nil {
			return fail(fmt.Errorf("dist: rank %d of %d: %s: %w", c.rank, c.size, call, err))
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fail(&TimeoutError{Call: call, Rank: c.rank, Size: c.size, After: c.Timeout})
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Microsecond)
	}
}

// ReleaseDevice destroys the NCCL communicator UseDevice made, before its device closes; device
// tensors then go through host memory again. Without one it does nothing.
func (c *Comm) ReleaseDevice() error {
	if c.backend != BackendNCCL {
		return nil
	}
	c.backend = BackendMPI
	if c.nccl == nil { // aborted after a failure
		return nil
	}
	err := c.nccl.Free(false)
	c.nccl = nil
	if err != nil {
		return fmt.Errorf("dist: rank %d: %w", c.rank, err)
	}
	return nil
}
