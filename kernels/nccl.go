package kernels

import (
	"runtime"
	"unsafe"
)

// NCCLComm is this process's member of an NCCL communicator on one CUDA device: multi-GPU collectives
// on float32 device tensors (NCCL is loaded by the CUDA library at run time: SERL_NCCL_LIB, a path,
// else libnccl.so.2). Its collectives are enqueued on the device's stream and return at once; Done
// polls for their completion, so a caller can bound the wait and Free(abort) a communicator that a
// dead peer will never complete. The CPU device refuses every NCCL call.
type NCCLComm struct {
	d          *Device
	h          uintptr // ncclComm_t
	rank, size int
	// Host memory the library reads or writes: fields of this heap object, never Go stack memory,
	// which moves when a stack grows.
	id   [NCCLIDBytes]byte
	done int32
}

// NCCLUniqueID returns a fresh NCCL unique id (ncclGetUniqueId): made on one rank, sent to the others
// (over MPI, say), then passed to NCCLInit on every rank.
func (d *Device) NCCLUniqueID() ([]byte, error) {
	id := make([]byte, NCCLIDBytes) // returned, so on the heap
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ncclUniqueIDArgs](d)
	a.id = uintptr(unsafe.Pointer(&id[0]))
	err := d.run(opNCCLUniqueID, 0, 0)
	runtime.KeepAlive(id)
	if err != nil {
		return nil, err
	}
	return id, nil
}

// NCCLInit joins the communicator of size ranks named by id as rank (ncclCommInitRank), blocking
// until every rank has joined.
func (d *Device) NCCLInit(id []byte, rank, size int) (*NCCLComm, error) {
	if len(id) != NCCLIDBytes {
		return nil, opErr("nccl_init", "id has %d bytes, want %d", len(id), NCCLIDBytes)
	}
	if size < 1 || rank < 0 || rank >= size || size > 1<<30 {
		return nil, opErr("nccl_init", "rank %d of %d ranks", rank, size)
	}
	c := &NCCLComm{d: d, rank: rank, size: size}
	copy(c.id[:], id)
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ncclInitArgs](d)
	a.rank, a.nranks = int32(rank), int32(size)
	a.id, a.comm = uintptr(unsafe.Pointer(&c.id[0])), uintptr(unsafe.Pointer(&c.h))
	err := d.run(opNCCLInit, 0, 0)
	runtime.KeepAlive(c)
	if err != nil {
		return nil, err
	}
	if c.h == 0 {
		return nil, opErr("nccl_init", "%s returned no communicator", d.lib.Path)
	}
	return c, nil
}

// Rank is this member's rank, Size the communicator's.
func (c *NCCLComm) Rank() int { return c.rank }
func (c *NCCLComm) Size() int { return c.size }

func (c *NCCLComm) live(op string) error {
	if c == nil || c.h == 0 {
		return opErr(op, "NCCL communicator is freed")
	}
	return nil
}

// AllReduceSum enqueues t ← the sum over ranks of every rank's t (float32, in place, same length on
// every rank). Wait with Done.
func (c *NCCLComm) AllReduceSum(t Tensor) error {
	if err := firstErr(c.live("nccl_all_reduce"), c.d.check("nccl_all_reduce", "x", t, F32, 0)); err != nil {
		return err
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ncclAllReduceArgs](d)
	a.n, a.comm, a.x = int64(t.Len()), c.h, t.addr()
	// a ring all-reduce moves about 2·(N−1)/N of the tensor in and out of each rank
	return d.run(opNCCLAllReduce, float64(t.Len()), 2*float64(t.Bytes()))
}

// Broadcast enqueues t ← root's t (any dtype, same length on every rank). Wait with Done.
func (c *NCCLComm) Broadcast(t Tensor, root int) error {
	if err := firstErr(c.live("nccl_broadcast"), c.d.check("nccl_broadcast", "x", t, t.dtype, 0)); err != nil {
		return err
	}
	if root < 0 || root >= c.size {
		return opErr("nccl_broadcast", "root %d of %d ranks", root, c.size)
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ncclBroadcastArgs](d)
	a.root, a.bytes, a.comm, a.x = int32(root), t.Bytes(), c.h, t.addr()
	return d.run(opNCCLBroadcast, 0, float64(t.Bytes()))
}

// Done reports whether the device's stream has finished everything enqueued so far (the collectives
// included), without blocking; an error when NCCL reports one for the communicator
// (ncclCommGetAsyncError), after which the communicator must be freed with abort.
func (c *NCCLComm) Done() (bool, error) {
	if err := c.live("nccl_poll"); err != nil {
		return false, err
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ncclPollArgs](d)
	a.comm, a.done = c.h, uintptr(unsafe.Pointer(&c.done))
	err := d.run(opNCCLPoll, 0, 0)
	runtime.KeepAlive(c)
	if err != nil {
		return false, err
	}
	return c.done != 0, nil
}

// Free ends the communicator: ncclCommDestroy, or ncclCommAbort when abort is set (after a timeout or
// an error, when a peer may never complete what is pending). Freeing twice is a no-op.
func (c *NCCLComm) Free(abort bool) error {
	if c == nil || c.h == 0 {
		return nil
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ncclFreeArgs](d)
	a.comm = c.h
	if abort {
		a.abort = 1
	}
	err := d.run(opNCCLFree, 0, 0)
	c.h = 0
	return err
}
