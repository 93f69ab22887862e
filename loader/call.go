package loader

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Caller makes native calls without allocating: its argument array lives as long as the caller, so
// purego's variadic slice never escapes. A Caller is not safe for concurrent use.
type Caller struct {
	argv [2]uintptr
}

// Call2 calls fn(a0, a1) and returns its int32 result — the shape of every serl op export.
func (c *Caller) Call2(fn, a0, a1 uintptr) int32 {
	c.argv[0], c.argv[1] = a0, a1
	r, _, _ := purego.SyscallN(fn, c.argv[:]...)
	return int32(r)
}

// Call makes a call of any other shape (setup paths only: it allocates).
func Call(fn uintptr, args ...uintptr) uintptr {
	r, _, _ := purego.SyscallN(fn, args...)
	return r
}

// Pointer turns a native address into an unsafe.Pointer. Native memory is outside the Go heap, so the
// collector ignores it; the double indirection keeps vet's unsafeptr check quiet about a conversion that
// is deliberate here.
func Pointer(addr uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&addr))
}

// GoString copies a NUL-terminated C string.
func GoString(addr uintptr) string {
	if addr == 0 {
		return ""
	}
	p := Pointer(addr)
	n := 0
	for *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(p), n))
}

// StatusError is a failed native call: its status and the library's message.
type StatusError struct {
	Status int32
	Msg    string
}

func (e *StatusError) Error() string {
	kind := map[int32]string{StatusArg: "invalid argument", StatusABI: "ABI mismatch", StatusNoMem: "out of memory",
		StatusDevice: "device error", StatusUnsupported: "unsupported", StatusState: "not allowed now"}[e.Status]
	if kind == "" {
		kind = fmt.Sprintf("status %d", e.Status)
	}
	if e.Msg == "" {
		return kind
	}
	return kind + ": " + e.Msg
}
