package testenv

import (
	"testing"
	"unsafe"

	"github.com/serl-go/serl/kernels"
)

// Read returns a copy of x's elements through an explicit download, on every device (host visible or
// not). Tests read device memory this way: a direct read (x.F32()) is nil on a device Go cannot read,
// and a loop over nil passes without checking anything.
func Read[T kernels.Elem](t testing.TB, x kernels.Tensor) []T {
	t.Helper()
	if !x.Valid() {
		t.Fatalf("testenv: read of an invalid tensor")
	}
	dst := make([]T, x.Len())
	if err := kernels.Download(dst, x); err != nil {
		t.Fatalf("testenv: download %s: %v", x, err)
	}
	return dst
}

// Write uploads src into x through an explicit upload, on every device.
func Write[T kernels.Elem](t testing.TB, x kernels.Tensor, src []T) {
	t.Helper()
	if err := kernels.Upload(x, src); err != nil {
		t.Fatalf("testenv: upload %s: %v", x, err)
	}
}

// Host returns x's memory itself, for benchmarks that poke device memory between calls without a
// copy. It fails the test on a device that is not host visible instead of handing back nil.
func Host[T kernels.Elem](t testing.TB, x kernels.Tensor) []T {
	t.Helper()
	if d := x.Device(); d == nil || !d.HostVisible() {
		t.Fatalf("testenv: direct host read of %s on a device that is not host visible (use Read)", x)
	}
	var z T
	var p []T
	switch any(z).(type) {
	case float32:
		p = castSlice[T](x.F32())
	case int32:
		p = castSlice[T](x.I32())
	case uint64:
		p = castSlice[T](x.U64())
	default:
		t.Fatalf("testenv: direct host read of %s as %T is not supported", x, z)
	}
	if len(p) != x.Len() {
		t.Fatalf("testenv: direct host read of %s gave %d elements", x, len(p))
	}
	return p
}

func castSlice[T, U any](s []U) []T {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&s[0])), len(s))
}
