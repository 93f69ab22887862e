package kernels

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/serl-go/serl/loader"
)

// Alloc allocates a contiguous tensor. Its contents are undefined.
func (d *Device) Alloc(dt DType, dims ...int) (Tensor, error) {
	if dt.Size() == 0 {
		return Tensor{}, fmt.Errorf("kernels: alloc: unknown dtype %s", dt)
	}
	if len(dims) == 0 || len(dims) > MaxRank {
		return Tensor{}, fmt.Errorf("kernels: alloc: rank %d (want 1..%d)", len(dims), MaxRank)
	}
	n := int64(1)
	for _, x := range dims {
		if x < 0 {
			return Tensor{}, fmt.Errorf("kernels: alloc: negative dimension in %v", dims)
		}
		n *= int64(x)
		if n > 1<<46 {
			return Tensor{}, fmt.Errorf("kernels: alloc: %v is too large", dims)
		}
	}
	bytes := n * int64(dt.Size())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Tensor{}, fmt.Errorf("kernels: alloc: device is closed")
	}
	if d.capturing { // (the message is built only then: the hot paths allocate nothing)
		return Tensor{}, d.refuseCapture(fmt.Sprintf("alloc %s%v", dt, dims))
	}
	addr := loader.Call(d.fnAlloc, d.ctx, uintptr(bytes))
	if addr == 0 {
		return Tensor{}, fmt.Errorf("kernels: alloc %s%v (%d bytes) on %s: %s", dt, dims, bytes, d.info.Backend,
			loader.GoString(loader.Call(d.fnLastError, d.ctx)))
	}
	b := &Buffer{dev: d, addr: addr, bytes: bytes}
	if d.hostVisible {
		b.host = loader.Pointer(addr)
	}
	d.live += bytes
	d.peak = max(d.peak, d.live)
	t := Tensor{buf: b, dtype: dt, rank: len(dims)}
	copy(t.dims[:], dims)
	return t, nil
}

// MustAlloc is Alloc for tests and set-up code where failure is fatal.
func (d *Device) MustAlloc(dt DType, dims ...int) Tensor {
	t, err := d.Alloc(dt, dims...)
	if err != nil {
		panic(err)
	}
	return t
}

// Free releases a tensor's whole buffer (every view of it becomes invalid).
func (d *Device) Free(t Tensor) {
	if t.buf == nil || t.buf.addr == 0 || t.buf.dev != d {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.capturing {
		// refused: the capture fails, and the buffer is released when it ends
		_ = d.refuseCapture("free " + t.String())
		d.capFrees = append(d.capFrees, t)
		return
	}
	d.freeLocked(t)
}

// freeLocked releases t's buffer; d.mu must be held.
func (d *Device) freeLocked(t Tensor) {
	if t.buf.addr == 0 {
		return
	}
	if !d.closed {
		loader.Call(d.fnFree, d.ctx, t.buf.addr)
	}
	d.live -= t.buf.bytes
	t.buf.addr, t.buf.host = 0, nil
}

// Elem is a Go element type that maps to a DType.
type Elem interface {
	~float32 | ~int32 | ~uint64 | ~uint16
}

func dtypeOf[T Elem]() (DType, bool) {
	var z T
	switch any(z).(type) {
	case float32:
		return F32, true
	case int32:
		return I32, true
	case uint64:
		return U64, true
	case uint16:
		return BF16, true // bf16 and f16 share the Go representation; the tensor's dtype decides
	}
	return 0, false
}

func checkHost[T Elem](op string, t Tensor, n int) error {
	dt, _ := dtypeOf[T]()
	if !t.Valid() {
		return fmt.Errorf("kernels: %s: nil tensor", op)
	}
	if dt != t.dtype && !(dt == BF16 && t.dtype == F16) {
		return fmt.Errorf("kernels: %s: %s tensor with %s host data", op, t, dt)
	}
	if n != t.Len() {
		return fmt.Errorf("kernels: %s: %s has %d elements, host slice %d", op, t, t.Len(), n)
	}
	return nil
}

// hostAddr hands on the address of host memory that a native call reaches through the argument block,
// where the compiler cannot see it. Marked uintptrescapes (as purego.SyscallN is), it makes the memory
// behind the pointer converted in its argument list escape to the heap, where nothing moves: a slice
// the caller made on its stack would otherwise stay there, and the stack may move (grow, or be shrunk
// by the collector at the next function entry) between taking the address and the call, the copy then
// landing in the old stack. The caller keeps the memory alive through the call (runtime.KeepAlive).
// runtime.Pinner would do the same at 40 ns a call, and it allocates after every collection, which a
// captured decode step may not.
//
//go:uintptrescapes
func hostAddr(p uintptr) uintptr { return p }

// Upload copies host data into a tensor; len(src) must equal t.Len().
func Upload[T Elem](t Tensor, src []T) error {
	if err := checkHost[T]("upload", t, len(src)); err != nil {
		return err
	}
	if len(src) == 0 {
		return nil
	}
	d := t.buf.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.capturing {
		return d.refuseCapture("upload " + t.String())
	}
	a := args[copyArgs](d)
	a.kind, a.bytes, a.dst, a.src = copyH2D, t.Bytes(), t.addr(), hostAddr(uintptr(unsafe.Pointer(&src[0])))
	d.xfer.Uploads++
	d.xfer.UploadBytes += a.bytes
	err := d.run(opCopy, 0, float64(a.bytes))
	runtime.KeepAlive(src)
	return err
}

// Download copies a tensor into host memory; len(dst) must equal t.Len().
func Download[T Elem](dst []T, t Tensor) error {
	if err := checkHost[T]("download", t, len(dst)); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	d := t.buf.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.capturing {
		return d.refuseCapture("download " + t.String())
	}
	a := args[copyArgs](d)
	a.kind, a.bytes, a.dst, a.src = copyD2H, t.Bytes(), hostAddr(uintptr(unsafe.Pointer(&dst[0]))), t.addr()
	d.xfer.Downloads++
	d.xfer.DownloadBytes += a.bytes
	err := d.run(opCopy, 0, float64(a.bytes))
	runtime.KeepAlive(dst)
	return err
}

// Copy copies src into dst on the device; both must have the same dtype and length.
func (d *Device) Copy(dst, src Tensor) error {
	if err := firstErr(d.check("copy", "dst", dst, dst.dtype, 0), d.check("copy", "src", src, dst.dtype, dst.Len())); err != nil {
		return err
	}
	if src.Len() != dst.Len() {
		return opErr("copy", "src %s and dst %s differ in length", src, dst)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[copyArgs](d)
	a.kind, a.bytes, a.dst, a.src = copyD2D, dst.Bytes(), dst.addr(), src.addr()
	return d.run(opCopy, 0, 2*float64(a.bytes))
}

// Zero sets every byte of t to 0.
func (d *Device) Zero(t Tensor) error {
	if err := d.check("memset", "t", t, t.dtype, 0); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[memsetArgs](d)
	a.value, a.bytes, a.dst = 0, t.Bytes(), t.addr()
	return d.run(opMemset, 0, float64(a.bytes))
}
