package kernels

import (
	"fmt"
	"unsafe"
)

// DType is an element type; the constants (F32, I32, U64, BF16, F16) are generated from csrc/serl.h
// into abi_gen.go, so Go and C share one numbering.
type DType int32

//go:generate go run ../tools/genlayout -consts ../csrc/serl.h

// Size is the element size in bytes.
func (t DType) Size() int {
	switch t {
	case F32, I32:
		return 4
	case U64:
		return 8
	case BF16, F16:
		return 2
	}
	return 0
}

func (t DType) String() string {
	switch t {
	case F32:
		return "f32"
	case I32:
		return "i32"
	case U64:
		return "u64"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	}
	return fmt.Sprintf("dtype(%d)", int32(t))
}

// MaxRank is the largest tensor rank.
const MaxRank = 4

// Buffer is one allocation of device memory.
type Buffer struct {
	dev   *Device
	addr  uintptr        // device address
	host  unsafe.Pointer // the same memory as a host pointer where the device is host-visible (CPU), else nil
	bytes int64
}

// Bytes is the allocation's size.
func (b *Buffer) Bytes() int64 { return b.bytes }

// Tensor is a shaped, typed view of a Buffer: row-major and contiguous. It is a small value; views
// (Reshape, Slice, Row) never allocate.
type Tensor struct {
	buf   *Buffer
	off   int64 // bytes from the buffer start
	dtype DType
	rank  int
	dims  [MaxRank]int
}

// Valid reports whether t refers to memory.
func (t Tensor) Valid() bool { return t.buf != nil && t.buf.addr != 0 }

func (t Tensor) DType() DType { return t.dtype }
func (t Tensor) Rank() int    { return t.rank }

// Dim is the size of dimension i; negative i counts from the end.
func (t Tensor) Dim(i int) int {
	if i < 0 {
		i += t.rank
	}
	if i < 0 || i >= t.rank {
		return 0
	}
	return t.dims[i]
}

// Len is the number of elements.
func (t Tensor) Len() int {
	if t.rank == 0 {
		return 0
	}
	n := 1
	for i := 0; i < t.rank; i++ {
		n *= t.dims[i]
	}
	return n
}

// Bytes is the size of the view.
func (t Tensor) Bytes() int64 { return int64(t.Len()) * int64(t.dtype.Size()) }

// Buffer is the underlying allocation.
func (t Tensor) Buffer() *Buffer { return t.buf }

// Device is the device holding the tensor (nil for a zero Tensor).
func (t Tensor) Device() *Device {
	if t.buf == nil {
		return nil
	}
	return t.buf.dev
}

func (t Tensor) addr() uintptr {
	if t.buf == nil {
		return 0
	}
	return t.buf.addr + uintptr(t.off)
}

// Shape returns the dimensions as a new slice (not for hot paths).
func (t Tensor) Shape() []int { return append([]int(nil), t.dims[:t.rank]...) }

func (t Tensor) String() string {
	return fmt.Sprintf("%s%v", t.dtype, t.dims[:t.rank])
}

// Reshape views the same elements with other dimensions; their product must equal Len.
func (t Tensor) Reshape(dims ...int) (Tensor, error) {
	// Errors format a copy of dims, so the variadic slice does not escape and a reshape allocates nothing.
	if len(dims) == 0 || len(dims) > MaxRank {
		return Tensor{}, fmt.Errorf("kernels: reshape %s to rank %d (want 1..%d)", t, len(dims), MaxRank)
	}
	n := 1
	for _, d := range dims {
		if d < 0 {
			return Tensor{}, fmt.Errorf("kernels: reshape %s to %v: negative dimension", t, append([]int(nil), dims...))
		}
		n *= d
	}
	if n != t.Len() {
		return Tensor{}, fmt.Errorf("kernels: reshape %s to %v: %d elements, have %d", t, append([]int(nil), dims...), n, t.Len())
	}
	v := t
	v.rank = len(dims)
	v.dims = [MaxRank]int{}
	copy(v.dims[:], dims)
	return v, nil
}

// MustReshape is Reshape for shapes the caller has already checked.
func (t Tensor) MustReshape(dims ...int) Tensor {
	v, err := t.Reshape(dims...)
	if err != nil {
		panic(err)
	}
	return v
}

// Slice views rows [lo, hi) of the first dimension.
func (t Tensor) Slice(lo, hi int) (Tensor, error) {
	if t.rank == 0 || lo < 0 || hi < lo || hi > t.dims[0] {
		return Tensor{}, fmt.Errorf("kernels: slice [%d:%d] of %s out of range", lo, hi, t)
	}
	row := int64(t.Len()/max(t.dims[0], 1)) * int64(t.dtype.Size())
	v := t
	v.off += int64(lo) * row
	v.dims[0] = hi - lo
	return v, nil
}

// Bitcast views the same bytes as dtype dt (e.g. F32 or U64 values in an I32 buffer, so values of
// several kinds travel in one copy). With another element size the tensor must be rank 1, its bytes a
// whole number of dt's elements, and its start aligned to dt's size.
func (t Tensor) Bitcast(dt DType) (Tensor, error) {
	v := t
	v.dtype = dt
	if dt.Size() == t.dtype.Size() {
		return v, nil
	}
	if t.rank != 1 || t.Bytes()%int64(dt.Size()) != 0 || t.off%int64(dt.Size()) != 0 {
		return Tensor{}, fmt.Errorf("kernels: bitcast %s at byte %d to %s: want a rank-1 tensor of whole, aligned %s elements", t, t.off, dt, dt)
	}
	v.dims[0] = int(t.Bytes() / int64(dt.Size()))
	return v, nil
}

// MustSlice is Slice for ranges the caller has already checked.
func (t Tensor) MustSlice(lo, hi int) Tensor {
	v, err := t.Slice(lo, hi)
	if err != nil {
		panic(err)
	}
	return v
}

// hostSlice returns the tensor's memory as a Go slice of T (nil for a freed or empty tensor). It
// panics on a device that is not host visible: a nil slice there would let a loop over it check
// nothing, so a direct read is a programming error, not an empty result.
func hostSlice[T any](t Tensor) []T {
	if t.buf != nil && t.buf.addr != 0 && !t.buf.dev.hostVisible {
		panic(fmt.Sprintf("kernels: direct host read of %s on a %s device that is not host visible (use Download)", t, t.buf.dev.info.Backend))
	}
	if t.buf == nil || t.buf.host == nil || t.Len() == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Add(t.buf.host, t.off)), t.Len())
}

// F32 is the tensor's memory as a []float32 on host-visible devices (CPU), without copying. Elsewhere
// (a GPU, or the CPU under SERL_CPU_HOST_VISIBLE=0) it panics: check Device.HostVisible first, or use
// Download; tests read through Download (internal/testenv). Panics if the dtype is not F32.
func (t Tensor) F32() []float32 { t.mustBe(F32); return hostSlice[float32](t) }

// I32 is F32 for int32 tensors.
func (t Tensor) I32() []int32 { t.mustBe(I32); return hostSlice[int32](t) }

// U64 is F32 for uint64 tensors.
func (t Tensor) U64() []uint64 { t.mustBe(U64); return hostSlice[uint64](t) }

func (t Tensor) mustBe(d DType) {
	if t.dtype != d {
		panic(fmt.Sprintf("kernels: %s tensor used as %s", t, d))
	}
}
