package kernels

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// growStack grows the calling goroutine's stack by about n KiB, so that the collector will shrink it.
//
//go:noinline
func growStack(n int) byte {
	var pad [1024]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return growStack(n-1) + pad[(7*n)%len(pad)]
}

// A host slice may live on its caller's stack (a make of constant length that does not escape), and a
// goroutine's stack moves when the collector shrinks it, at the next function entry after a cycle
// has asked to. Upload and Download hand the library the slice's address inside the argument block,
// where the compiler cannot see it, so it must stay valid until the native call returns. Here the
// collector runs without pause while a goroutine with an oversized stack copies through such slices;
// with a stale address a copy lands in the old stack. With the address taken plainly (no hostAddr),
// each of 35 runs lost 2 to 33 of its 200,000 round trips (and engine/rl's finite-difference test saw
// a wrong weight once in about a thousand runs: a download into such a slice read 0).
func TestHostSliceOnAShrinkingStack(t *testing.T) {
	for _, d := range testDevices(t) {
		t.Run(d.Backend(), func(t *testing.T) {
			x, err := d.Alloc(F32, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Free(x)
			var stop atomic.Bool
			gcDone := make(chan struct{})
			go func() {
				defer close(gcDone)
				for !stop.Load() {
					runtime.GC()
				}
			}()
			defer func() { stop.Store(true); <-gcDone }()
			lost := 0
			for round := range 1000 {
				growStack(256)
				for i := range 200 {
					v := float32(round*1000 + i)
					if err := Upload(x, []float32{v}); err != nil {
						t.Fatal(err)
					}
					got := make([]float32, 1)
					if err := Download(got, x); err != nil {
						t.Fatal(err)
					}
					if got[0] != v {
						lost++
					}
				}
			}
			if lost > 0 {
				t.Fatalf("%d of 200,000 round trips through stack slices lost their value", lost)
			}
		})
	}
}

// BenchmarkTransfer is the cost of a small host round trip (an upload, then a download, of one float32),
// the kind a decode step makes for its sampled tokens: through a slice made in the loop (on the stack
// unless Upload and Download move it) and through one made once.
func BenchmarkTransfer(b *testing.B) {
	d := cpuDevice(b)
	x, err := d.Alloc(F32, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Free(x)
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := Upload(x, []float32{float32(i)}); err != nil {
				b.Fatal(err)
			}
			got := make([]float32, 1)
			if err := Download(got, x); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reused", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]float32, 1)
		for i := 0; b.Loop(); i++ {
			buf[0] = float32(i)
			if err := Upload(x, buf); err != nil {
				b.Fatal(err)
			}
			if err := Download(buf, x); err != nil {
				b.Fatal(err)
			}
		}
	})
}
