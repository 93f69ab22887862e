package testenv

import (
	"testing"

	"github.com/serl-go/serl/kernels"
)

// Read returns a copy of x's elements through an explicit download, on every device (host visible or
// not). Tests read device memory this way: a direct read (x.F32()) panics on a device Go cannot read.
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
