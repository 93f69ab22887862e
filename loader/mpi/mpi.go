// Package mpi is the raw binding to an MPI library (Open MPI's libmpi.so.40) through purego: the few
// calls serl's data parallelism needs, on MPI_COMM_WORLD, with MPI's own types (C ints, opaque
// handles). It knows no tensors; engine/dist builds typed collectives with timeouts on top of it.
//
// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are addresses of global objects
// (ompi_mpi_comm_world, …), so they are found with dlsym, as a C program's macros would take them.
package mpi

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Lib is a loaded and initialised MPI library. Its calls are serialised by a mutex (a goroutine may
// move between OS threads, never two calls are made at once), except Abort.
type Lib struct {
	Path string

	mu     sync.Mutex
	handle uintptr
	fn     map[string]uintptr

	CommWorld, Float, Byte, Int, OpSum uintptr

	// Scratch that MPI writes into, on the heap with the Lib: a uintptr made from a pointer into a
	// goroutine's stack would go stale if the stack moved before the call. Guarded by mu.
	i32 [2]int32
	buf [256]byte
}

// Names are the sonames tried, in order: Open MPI 3 and 4/5 keep libmpi.so.40.
var Names = []string{"libmpi.so.40", "libmpi.so"}

// Thread levels of Open MPI's enum. serl asks for MULTIPLE (MPI_Abort may be called while another
// thread is stuck in a collective that a dead rank never joins) and needs at least SERIALIZED.
const (
	threadSerialized = 2
	threadMultiple   = 3
)

var calls = []string{"MPI_Init_thread", "MPI_Initialized", "MPI_Finalize", "MPI_Comm_rank", "MPI_Comm_size",
	"MPI_Comm_set_errhandler", "MPI_Error_string", "MPI_Abort", "MPI_Ibarrier", "MPI_Test", "MPI_Barrier", "MPI_Bcast",
	"MPI_Allreduce", "MPI_Allgather", "MPI_Allgatherv", "MPI_Get_library_version"}

// Open dlopens the first of names that loads (RTLD_GLOBAL: Open MPI's components, loaded later by
// the library itself, resolve their symbols against it), finds its calls and handles, and calls
// MPI_Init_thread with errors returned to the caller instead of aborting.
func Open(names ...string) (*Lib, error) {
	if len(names) == 0 {
		names = Names
	}
	var tried []string
	var h uintptr
	var path string
	for _, n := range names {
		var err error
		if h, err = purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL); err == nil {
			path = n
			break
		}
		tried = append(tried, fmt.Sprintf("%s (%v)", n, err))
	}
	if path == "" {
		return nil, fmt.Errorf("mpi: cannot load any of:\n  %s\n(Debian: apt-get install openmpi-bin libopenmpi3)", strings.Join(tried, "\n  "))
	}
	// A rank waiting in a collective for a slower one yields its core instead of spinning at full
	// priority: serl's ranks wait for each other's share of generation, and with as many ranks as
	// cores a spinning rank takes the core the native thread pool of another needs. (Read by
	// MPI_Init; an explicit setting wins.)
	if os.Getenv("OMPI_MCA_mpi_yield_when_idle") == "" {
		os.Setenv("OMPI_MCA_mpi_yield_when_idle", "1")
	}
	l := &Lib{Path: path, handle: h, fn: map[string]uintptr{}}
	sym := func(name string) (uintptr, error) {
		p, err := purego.Dlsym(h, name)
		if err != nil || p == 0 {
			return 0, fmt.Errorf("mpi: %s does not export %s (serl needs Open MPI)", path, name)
		}
		return p, nil
	}
	for _, c := range calls {
		p, err := sym(c)
		if err != nil {
			return nil, err
		}
		l.fn[c] = p
	}
	for _, g := range []struct {
		name string
		dst  *uintptr
	}{{"ompi_mpi_comm_world", &l.CommWorld}, {"ompi_mpi_float", &l.Float}, {"ompi_mpi_byte", &l.Byte},
		{"ompi_mpi_int", &l.Int}, {"ompi_mpi_op_sum", &l.OpSum}} {
		p, err := sym(g.name)
		if err != nil {
			return nil, err
		}
		*g.dst = p
	}
	errorsReturn, err := sym("ompi_mpi_errors_return")
	if err != nil {
		return nil, err
	}
	if err := l.call("MPI_Initialized", uintptr(unsafe.Pointer(&l.i32[0]))); err != nil {
		return nil, err
	}
	if l.i32[0] == 0 {
		if err := l.call("MPI_Init_thread", 0, 0, threadMultiple, uintptr(unsafe.Pointer(&l.i32[1]))); err != nil {
			return nil, err
		}
		if l.i32[1] < threadSerialized {
			return nil, fmt.Errorf("mpi: %s provides thread level %d, serl needs MPI_THREAD_SERIALIZED", path, l.i32[1])
		}
	}
	if err := l.call("MPI_Comm_set_errhandler", l.CommWorld, errorsReturn); err != nil {
		return nil, err
	}
	return l, nil
}

// call makes one MPI call and turns a non-zero return into an error naming the call and MPI's message.
// Like purego.SyscallN it is marked uintptrescapes: a pointer converted to uintptr in the call's own
// argument list (uintptr(unsafe.Pointer(&x[0])), or an unsafe.Pointer parameter passed on that way)
// moves to the heap and stays alive through the call. Without it a buffer on the caller's stack could
// move, when the stack grows or shrinks, before MPI writes to it.
//
//go:uintptrescapes
func (l *Lib) call(name string, args ...uintptr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.callLocked(name, args...)
}

// callLocked is call with l.mu held.
//
//go:uintptrescapes
func (l *Lib) callLocked(name string, args ...uintptr) error {
	r, _, _ := purego.SyscallN(l.fn[name], args...)
	if int32(r) != 0 {
		return fmt.Errorf("%s: %s", name, l.errorString(int32(r)))
	}
	return nil
}

// errorString is MPI_Error_string (mu held).
func (l *Lib) errorString(code int32) string {
	r, _, _ := purego.SyscallN(l.fn["MPI_Error_string"], uintptr(code), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(unsafe.Pointer(&l.i32[0])))
	n := l.i32[0]
	if int32(r) != 0 || n <= 0 || int(n) > len(l.buf) {
		return fmt.Sprintf("MPI error %d", code)
	}
	return string(l.buf[:n])
}

// Version is MPI_Get_library_version's first line.
func (l *Lib) Version() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.callLocked("MPI_Get_library_version", uintptr(unsafe.Pointer(&l.buf[0])), uintptr(unsafe.Pointer(&l.i32[0]))) != nil || l.i32[0] <= 0 {
		return "unknown"
	}
	s, _, _ := strings.Cut(strings.TrimRight(string(l.buf[:min(int(l.i32[0]), len(l.buf))]), "\x00"), ",")
	return strings.TrimSpace(strings.TrimSuffix(s, ","))
}

// RankSize returns this process's rank in MPI_COMM_WORLD and its size.
func (l *Lib) RankSize() (rank, size int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.callLocked("MPI_Comm_rank", l.CommWorld, uintptr(unsafe.Pointer(&l.i32[0]))); err != nil {
		return 0, 0, err
	}
	if err := l.callLocked("MPI_Comm_size", l.CommWorld, uintptr(unsafe.Pointer(&l.i32[1]))); err != nil {
		return 0, 0, err
	}
	return int(l.i32[0]), int(l.i32[1]), nil
}

// The collectives below block until every rank has joined; the caller bounds the wait (engine/dist
// runs them on a goroutine of their own and gives up after its timeout). Buffers must be Go heap
// memory, alive until the call returns.

// Request is a pending MPI_Ibarrier. It lives on the Go heap (MPI writes its handle and the flag).
type Request struct {
	req  uintptr // MPI_Request
	flag int32
}

// Ibarrier starts MPI_Ibarrier: with Test, a barrier that a waiting rank can sleep through instead of
// spinning in MPI's progress loop.
func (l *Lib) Ibarrier() (*Request, error) {
	r := new(Request)
	return r, l.call("MPI_Ibarrier", l.CommWorld, uintptr(unsafe.Pointer(&r.req)))
}

// Test reports whether the request is complete (MPI_Test; a completed request is freed by MPI).
func (l *Lib) Test(r *Request) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.flag = 0
	if err := l.callLocked("MPI_Test", uintptr(unsafe.Pointer(&r.req)), uintptr(unsafe.Pointer(&r.flag)), 0); err != nil {
		return false, err
	}
	return r.flag != 0, nil
}

// Barrier is MPI_Barrier.
func (l *Lib) Barrier() error { return l.call("MPI_Barrier", l.CommWorld) }

// Bcast is MPI_Bcast of count elements of datatype at buf from root.
func (l *Lib) Bcast(buf unsafe.Pointer, count int32, datatype uintptr, root int) error {
	return l.call("MPI_Bcast", uintptr(buf), uintptr(count), datatype, uintptr(root), l.CommWorld)
}

// AllreduceSum is MPI_Allreduce(MPI_SUM) of count elements from send into recv.
func (l *Lib) AllreduceSum(send, recv unsafe.Pointer, count int32, datatype uintptr) error {
	return l.call("MPI_Allreduce", uintptr(send), uintptr(recv), uintptr(count), datatype, l.OpSum, l.CommWorld)
}

// Allgather is MPI_Allgather of count elements of datatype from every rank.
func (l *Lib) Allgather(send unsafe.Pointer, count int32, datatype uintptr, recv unsafe.Pointer) error {
	return l.call("MPI_Allgather", uintptr(send), uintptr(count), datatype, uintptr(recv), uintptr(count), datatype, l.CommWorld)
}

// Allgatherv is MPI_Allgatherv of bytes: count from this rank, counts[i] at displs[i] from rank i.
func (l *Lib) Allgatherv(send unsafe.Pointer, count int32, recv unsafe.Pointer, counts, displs []int32) error {
	return l.call("MPI_Allgatherv", uintptr(send), uintptr(count), l.Byte, uintptr(recv),
		uintptr(unsafe.Pointer(&counts[0])), uintptr(unsafe.Pointer(&displs[0])), l.Byte, l.CommWorld)
}

// Abort calls MPI_Abort on MPI_COMM_WORLD: every rank of the job is terminated.
func (l *Lib) Abort(code int) {
	purego.SyscallN(l.fn["MPI_Abort"], l.CommWorld, uintptr(code))
}

// Finalize calls MPI_Finalize.
func (l *Lib) Finalize() error { return l.call("MPI_Finalize") }
