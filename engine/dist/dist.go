// Package dist holds serl's data parallelism: the process group a run is split over (rank, world size,
// local rank) and its collectives — all-reduce (sum) of float32 device tensors, broadcast, barrier and
// all-gather of small host records. Backends: none (one process, rank 0 of 1: every collective is the
// identity), MPI (Open MPI through loader/mpi) and, for CUDA tensors, NCCL bootstrapped over MPI
// (nccl.go). Every collective is non-blocking underneath and
// polled against a deadline, so a rank that dies or hangs makes the others fail with an error naming
// the call and the rank instead of waiting forever.
package dist

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/serl-go/serl/kernels"
	"github.com/serl-go/serl/loader/mpi"
)

var trace = os.Getenv("SERL_DIST_TRACE") != ""

// Backends.
const (
	BackendNone = "none"
	BackendMPI  = "mpi"
)

// DefaultTimeout bounds every collective: longer than any rank's share of a step is expected to
// differ from another's, short enough that a dead rank ends the job in minutes.
const DefaultTimeout = 10 * time.Minute

// TimeoutEnv overrides DefaultTimeout (a Go duration such as 30s).
const TimeoutEnv = "SERL_DIST_TIMEOUT"

// Comm is this process's place in the group.
type Comm struct {
	backend     string
	rank, size  int
	local       int
	Timeout     time.Duration
	lib         *mpi.Lib
	libVersion  string
	sendF, recv []float32         // all-reduce staging, grown to the largest tensor seen
	nccl        *kernels.NCCLComm // set by UseDevice for CUDA tensors
}

// Single is the one-process group: rank 0 of 1, collectives are the identity.
func Single() *Comm { return &Comm{backend: BackendNone, size: 1, Timeout: DefaultTimeout} }

// Launched reports whether this process was started by an MPI launcher (mpirun, or srun with PMI/PMIx),
// from the variables those set.
func Launched() bool {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// Init joins the process group: MPI when launched by an MPI launcher, else the one-process group.
func Init() (*Comm, error) {
	timeout := DefaultTimeout
	if s := os.Getenv(TimeoutEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("dist: %s=%q is not a positive duration such as 30s", TimeoutEnv, s)
		}
		timeout = d
	}
	if !Launched() {
		c := Single()
		c.Timeout = timeout
		return c, nil
	}
	lib, err := mpi.Open()
	if err != nil {
		return nil, fmt.Errorf("dist: launched by MPI (OMPI_COMM_WORLD_SIZE/PMIX_RANK/PMI_SIZE set) but: %w", err)
	}
	rank, size, err := lib.RankSize()
	if err != nil {
		return nil, fmt.Errorf("dist: %w", err)
	}
	c := &Comm{backend: BackendMPI, rank: rank, size: size, Timeout: timeout, lib: lib, libVersion: lib.Version()}
	if c.local, err = c.localRank(); err != nil {
		return nil, err
	}
	return c, nil
}

// localRank is this rank's index among the ranks on its host: the launcher's LOCAL_RANK-like variable
// when set, else counted from the gathered host names.
func (c *Comm) localRank() (int, error) {
	for _, v := range []string{"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"} {
		if s := os.Getenv(v); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("dist: %s=%q is not a local rank", v, s)
			}
			return n, nil
		}
	}
	host, _ := os.Hostname()
	hosts, err := c.AllGather([]byte(host))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hosts[:c.rank] {
		if string(h) == host {
			n++
		}
	}
	return n, nil
}

// Backend is "none", "mpi", or "mpi+nccl" once UseDevice has set up NCCL.
func (c *Comm) Backend() string { return c.backend }

// Library names the MPI library and its version ("" for none).
func (c *Comm) Library() string {
	if c.lib == nil {
		return ""
	}
	return c.lib.Path + " (" + c.libVersion + ")"
}

// Rank is this process's index in the group, 0 ≤ Rank < Size.
func (c *Comm) Rank() int { return c.rank }

// Size is the number of processes.
func (c *Comm) Size() int { return c.size }

// LocalRank is this process's index among those on its host (the GPU it should use).
func (c *Comm) LocalRank() int { return c.local }

// Split returns this rank's share [lo, hi) of n items split in contiguous blocks, the first n mod Size
// ranks taking one more: concatenating every rank's share in rank order gives 0..n−1.
func (c *Comm) Split(n int) (lo, hi int) { return SplitOf(n, c.rank, c.size) }

// SplitOf is Split for any rank.
func SplitOf(n, rank, size int) (lo, hi int) {
	q, r := n/size, n%size
	lo = rank*q + min(rank, r)
	hi = lo + q
	if rank < r {
		hi++
	}
	return lo, hi
}

// do runs one blocking collective, bounded by Timeout. The ranks first meet in a non-blocking barrier
// polled with growing sleeps, so a rank that is early for the collective (waiting for another's share of
// generation, say) sleeps instead of spinning in MPI's progress loop on a core that the late rank needs.
// (Only the barrier is non-blocking: Open MPI 4.1's non-blocking all-gather with per-rank sizes failed
// with MPI_ERR_TRUNCATE in 1 of 12 runs under such skew.) The collective itself then runs on a
// goroutine of its own: MPI cannot cancel a collective that a dead or hung rank never joins, so on a
// timeout the call is left blocked and the caller must end the process (Abort). Errors name the call
// and the rank. A collective that follows another with no work between (the data after the lengths)
// skips the barrier (meet false): the ranks are already together.
func (c *Comm) do(call string, f func() error) error { return c.collective(call, true, f) }

func (c *Comm) collective(call string, meet bool, f func() error) error {
	start := time.Now()
	deadline := start.Add(c.Timeout)
	if meet {
		if err := c.arrive(call, deadline); err != nil {
			return err
		}
	}
	if trace {
		// The wait is how long this rank was early: the imbalance of the work before the call. The
		// process's CPU seconds at the call and after it measure each rank's work between calls even
		// on a loaded machine.
		defer func(arrived time.Time, cpu float64) {
			fmt.Fprintf(os.Stderr, "dist trace: rank %d: %.6f %s: waited %.6fs, ran %.6fs, cpu %.6f %.6f\n", c.rank,
				float64(start.UnixNano())/1e9, call, arrived.Sub(start).Seconds(), time.Since(arrived).Seconds(), cpu, cpuSeconds())
		}(time.Now(), cpuSeconds())
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("dist: rank %d of %d: %s: %w", c.rank, c.size, call, err)
		}
		return nil
	case <-t.C:
		return &TimeoutError{Call: call, Rank: c.rank, Size: c.size, After: c.Timeout}
	}
}

// cpuSeconds is the user and system time of the whole process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// maxPause bounds arrive's sleeps: the last rank to arrive waits up to this long for an early one to
// wake and join the collective, and a rank waiting a second wakes 1/maxPause times (a few
// microseconds of CPU each).
const maxPause = 200 * time.Microsecond

// arrive waits in MPI_Ibarrier until every rank has come to the collective call, or the deadline.
func (c *Comm) arrive(call string, deadline time.Time) error {
	r, err := c.lib.Ibarrier()
	if err != nil {
		return fmt.Errorf("dist: rank %d of %d: before %s: %w", c.rank, c.size, call, err)
	}
	pause := time.Microsecond
	for {
		done, err := c.lib.Test(r)
		if err != nil {
			return fmt.Errorf("dist: rank %d of %d: before %s: %w", c.rank, c.size, call, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return &TimeoutError{Call: call, Rank: c.rank, Size: c.size, After: c.Timeout}
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPause)
	}
}

// TimeoutError is a collective that not every rank joined in time: one has died, hangs, or is far
// behind. MPI cannot cancel the operation, so the process must end (Abort).
type TimeoutError struct {
	Call       string
	Rank, Size int
	After      time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("dist: rank %d of %d: %s did not complete within %v: another rank has died or hangs (%s sets the limit)",
		e.Rank, e.Size, e.Call, e.After, TimeoutEnv)
}

// Barrier returns once every rank has called it.
func (c *Comm) Barrier() error {
	if c.size == 1 {
		return nil
	}
	return c.do("MPI_Barrier", func() error { return nil }) // arriving is the barrier
}

// maxCount keeps element counts inside MPI's C int.
const maxCount = 1 << 30

// AllReduceSumHost replaces x on every rank with the element-wise sum of every rank's x (same length
// everywhere).
func (c *Comm) AllReduceSumHost(x []float32) error {
	if c.size == 1 || len(x) == 0 {
		return nil
	}
	sum, err := c.allReduce(x)
	if err != nil {
		return err
	}
	copy(x, sum)
	return nil
}

// allReduce returns the element-wise sum over ranks of x, in a buffer of the Comm's that the next
// call reuses.
func (c *Comm) allReduce(x []float32) ([]float32, error) {
	if cap(c.recv) < len(x) {
		c.recv = make([]float32, len(x))
	}
	recv := c.recv[:len(x)]
	for lo := 0; lo < len(x); lo += maxCount {
		hi := min(lo+maxCount, len(x))
		err := c.do(fmt.Sprintf("MPI_Allreduce of %d floats", hi-lo), func() error {
			return c.lib.AllreduceSum(unsafe.Pointer(&x[lo]), unsafe.Pointer(&recv[lo]), int32(hi-lo), c.lib.Float)
		})
		if err != nil {
			return nil, err
		}
	}
	return recv, nil
}

// AllReduceSum replaces the float32 device tensor t on every rank with the sum over ranks: through
// NCCL when UseDevice set it up (even on one rank, so that a 1-rank run exercises it), else through
// host memory (download, MPI, upload).
func (c *Comm) AllReduceSum(t kernels.Tensor) error {
	if t.DType() != kernels.F32 {
		return fmt.Errorf("dist: all-reduce of a %v tensor: only float32 is supported", t.DType())
	}
	if c.backend == BackendNCCL {
		return c.allReduceNCCL(t)
	}
	if c.size == 1 || t.Len() == 0 {
		return nil
	}
	n := t.Len()
	if cap(c.sendF) < n {
		c.sendF = make([]float32, n)
	}
	x := c.sendF[:n]
	if err := kernels.Download(x, t); err != nil {
		return err
	}
	sum, err := c.allReduce(x)
	if err != nil {
		return err
	}
	return kernels.Upload(t, sum)
}

// Broadcast copies root's buf into every rank's buf (same length everywhere).
func (c *Comm) Broadcast(buf []byte, root int) error {
	if c.size == 1 || len(buf) == 0 {
		return nil
	}
	for lo := 0; lo < len(buf); lo += maxCount {
		hi := min(lo+maxCount, len(buf))
		err := c.do(fmt.Sprintf("MPI_Bcast of %d bytes from rank %d", hi-lo, root), func() error {
			return c.lib.Bcast(unsafe.Pointer(&buf[lo]), int32(hi-lo), c.lib.Byte, root)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// AllGather returns every rank's rec, indexed by rank, on every rank. Records are small (problems,
// rewards, metrics): together under 2 GiB.
func (c *Comm) AllGather(rec []byte) ([][]byte, error) {
	if c.size == 1 {
		return [][]byte{append([]byte(nil), rec...)}, nil
	}
	if len(rec) >= maxCount {
		return nil, fmt.Errorf("dist: rank %d: a gathered record of %d bytes is too large", c.rank, len(rec))
	}
	n := []int32{int32(len(rec))}
	counts := make([]int32, c.size)
	err := c.do("MPI_Allgather of record lengths", func() error {
		return c.lib.Allgather(unsafe.Pointer(&n[0]), 1, c.lib.Int, unsafe.Pointer(&counts[0]))
	})
	if err != nil {
		return nil, err
	}
	displs := make([]int32, c.size)
	total := int64(0)
	for i, k := range counts {
		if k < 0 {
			return nil, fmt.Errorf("dist: rank %d: rank %d sent a record length of %d", c.rank, i, k)
		}
		displs[i] = int32(total)
		total += int64(k)
	}
	if total >= maxCount {
		return nil, fmt.Errorf("dist: rank %d: gathered records of %d bytes are too large", c.rank, total)
	}
	all := make([]byte, total+1) // +1: never a zero-length buffer to take the address of
	send := append(rec[:len(rec):len(rec)], 0)
	err = c.collective(fmt.Sprintf("MPI_Allgatherv of %d bytes", total), false, func() error {
		return c.lib.Allgatherv(unsafe.Pointer(&send[0]), int32(len(rec)), unsafe.Pointer(&all[0]), counts, displs)
	})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, c.size)
	for i := range out {
		out[i] = all[displs[i] : displs[i]+counts[i] : displs[i]+counts[i]]
	}
	return out, nil
}

// Abort ends every process of the group (MPI_Abort): the way out after a failed collective, which MPI
// cannot cancel. With one process it does nothing.
func (c *Comm) Abort(code int) {
	if c.lib != nil && c.size > 1 {
		c.lib.Abort(code)
	}
}

// Close leaves the group (MPI_Finalize) after a barrier, so no rank finalizes while another still
// needs it.
func (c *Comm) Close() error {
	if c.lib == nil {
		return nil
	}
	err := c.Barrier()
	if nerr := c.ReleaseDevice(); err == nil {
		err = nerr
	}
	if ferr := c.lib.Finalize(); err == nil && ferr != nil {
		err = fmt.Errorf("dist: rank %d: %w", c.rank, ferr)
	}
	c.lib = nil
	return err
}

// IsTimeout reports a collective timeout.
func IsTimeout(err error) bool {
	var t *TimeoutError
	return errors.As(err, &t)
}
