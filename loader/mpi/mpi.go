// Package mpi is the raw binding to an MPI library (Open MPI's libmpi.so.40) through purego: the few
// calls serl's data parallelism needs, on MPI_COMM_WORLD, with MPI's own types (C ints, opaque
// handles). It knows no tensors; engine/dist builds typed collectives with timeouts on top of it.
//
// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are addresses of global objects
// (ompi_mpi_comm_world, …), so they are found with dlsym, as a C program's macros would take them.
package mpi

import (
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Lib is a loaded and initialised MPI library. Its calls are serialised by a mutex (MPI is initialised
// with MPI_THREAD_SERIALIZED: a goroutine may move between OS threads, never two calls at once).
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

const threadSerialized = 2 // MPI_THREAD_SERIALIZED in Open MPI's enum

var calls = []string{"MPI_Init_thread", "MPI_Initialized", "MPI_Finalize", "MPI_Comm_rank", "MPI_Comm_size",
	"MPI_Comm_set_errhandler", "MPI_Error_string", "MPI_Abort", "MPI_Test", "MPI_Ibarrier", "MPI_Ibcast",
	"MPI_Iallreduce", "MPI_Iallgather", "MPI_Iallgatherv", "MPI_Get_library_version"}

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
		if err := l.call("MPI_Init_thread", 0, 0, threadSerialized, uintptr(unsafe.Pointer(&l.i32[1]))); err != nil {
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
func (l *Lib) call(name string, args ...uintptr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.callLocked(name, args...)
}

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

// Request is a pending non-blocking operation. Its buffers must stay alive (and unmoved: heap memory)
// until Test reports it done; the caller keeps them.
type Request struct {
	req  uintptr // MPI_Request, written by MPI
	flag int32
}

func newRequest() *Request { return new(Request) }

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

// Ibarrier starts MPI_Ibarrier.
func (l *Lib) Ibarrier() (*Request, error) {
	r := newRequest()
	return r, l.call("MPI_Ibarrier", l.CommWorld, uintptr(unsafe.Pointer(&r.req)))
}

// Ibcast starts MPI_Ibcast of count elements of datatype at buf from root.
func (l *Lib) Ibcast(buf unsafe.Pointer, count int32, datatype uintptr, root int) (*Request, error) {
	r := newRequest()
	return r, l.call("MPI_Ibcast", uintptr(buf), uintptr(count), datatype, uintptr(root), l.CommWorld, uintptr(unsafe.Pointer(&r.req)))
}

// IallreduceSum starts MPI_Iallreduce(MPI_SUM) of count elements from send into recv.
func (l *Lib) IallreduceSum(send, recv unsafe.Pointer, count int32, datatype uintptr) (*Request, error) {
	r := newRequest()
	return r, l.call("MPI_Iallreduce", uintptr(send), uintptr(recv), uintptr(count), datatype, l.OpSum, l.CommWorld, uintptr(unsafe.Pointer(&r.req)))
}

// Iallgather starts MPI_Iallgather of count elements of datatype from every rank.
func (l *Lib) Iallgather(send unsafe.Pointer, count int32, datatype uintptr, recv unsafe.Pointer) (*Request, error) {
	r := newRequest()
	return r, l.call("MPI_Iallgather", uintptr(send), uintptr(count), datatype, uintptr(recv), uintptr(count), datatype, l.CommWorld, uintptr(unsafe.Pointer(&r.req)))
}

// Iallgatherv starts MPI_Iallgatherv of bytes: count from this rank, counts[i] at displs[i] from rank i.
func (l *Lib) Iallgatherv(send unsafe.Pointer, count int32, recv unsafe.Pointer, counts, displs []int32) (*Request, error) {
	r := newRequest()
	return r, l.call("MPI_Iallgatherv", uintptr(send), uintptr(count), l.Byte, uintptr(recv),
		uintptr(unsafe.Pointer(&counts[0])), uintptr(unsafe.Pointer(&displs[0])), l.Byte, l.CommWorld, uintptr(unsafe.Pointer(&r.req)))
}

// Abort calls MPI_Abort on MPI_COMM_WORLD: every rank of the job is terminated.
func (l *Lib) Abort(code int) {
	purego.SyscallN(l.fn["MPI_Abort"], l.CommWorld, uintptr(code))
}

// Finalize calls MPI_Finalize.
func (l *Lib) Finalize() error { return l.call("MPI_Finalize") }
