package kernels

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
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

// The CPU library asks for transparent huge pages on allocations of 2 MiB and more (csrc/cpu/alloc.c), so
// that a fresh tensor faults in 2 MiB at a time. The kernel's smaps says whether a mapping may have them
// (THPeligible); under THP "madvise", Debian's default, only the advice makes it 1, so a lost madvise or a
// misaligned range fails here. A small allocation is not advised, nor does it land where a freed large
// one was: large tensors are mappings of their own, unmapped when freed. When they came from malloc, a
// freed one raised malloc's mmap threshold, the next came from malloc's heap and left its advice there,
// and small tensors carved from that range later were eligible (this test failed when addresses fell
// that way; the churn below made it fail every time).
func TestHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || bytes.Contains(mode, []byte("[never]")) {
		t.Skipf("skipped: transparent huge pages are off here (%q, %v)", mode, err)
	}
	d := cpuDevice(t)
	big, small := d.MustAlloc(F32, 3<<20), d.MustAlloc(F32, 1024) // 12 MiB, 4 KiB
	defer d.Free(big)
	defer d.Free(small)
	if big.addr()%(2<<20) != 0 {
		t.Fatalf("a 12 MiB tensor at %#x is not 2 MiB-aligned", big.addr())
	}
	if got := thpEligible(t, big.addr()); got != "1" {
		t.Errorf("a 12 MiB tensor's mapping is not eligible for huge pages (THPeligible %s, THP mode %q)", got, bytes.TrimSpace(mode))
	}
	madvise := bytes.Contains(mode, []byte("[madvise]"))
	if madvise && thpEligible(t, small.addr()) == "1" {
		t.Errorf("a 4 KiB tensor's mapping is eligible for huge pages: it was advised, or shares a mapping that was")
	}

	// Large tensors freed (a 24 MiB one first, which raised malloc's threshold past the rest), each
	// followed by a small one so that its range is not the top of a heap; then many small tensors.
	var keep []Tensor
	for _, n := range []int{6 << 20, 1 << 20, 3 << 19, 1 << 20} { // 24, 4, 6 and 4 MiB
		x := d.MustAlloc(F32, n)
		keep = append(keep, d.MustAlloc(F32, 16))
		d.Free(x)
		if got := thpEligible(t, x.addr()); got != "" {
			t.Errorf("a freed %d MiB tensor at %#x is still mapped (THPeligible %s)", n>>18, x.addr(), got)
		}
	}
	for range 2000 {
		keep = append(keep, d.MustAlloc(F32, 1024))
	}
	defer func() {
		for _, x := range keep {
			d.Free(x)
		}
	}()
	if madvise {
		maps, eligible := thpMappings(t), 0
		for _, x := range keep {
			if maps.eligible(x.addr()) == "1" {
				eligible++
			}
		}
		require.Zero(t, eligible, "small tensors in mappings eligible for huge pages, after large ones were freed")
	}
}

// A large CPU tensor is committed when it is allocated, as device memory is on a GPU (core.c): its
// pages are resident before anything touches them, and a size past the machine's available memory is
// refused with a message that says so, not left to the OOM killer at a later first touch.
func TestLargeAllocationsCommitted(t *testing.T) {
	d := cpuDevice(t)
	x := d.MustAlloc(F32, 4<<20) // 16 MiB
	defer d.Free(x)
	// mincore(2): one byte a 4 KiB page of the range, bit 0 set where the page is resident
	const page = 4096
	vec := make([]byte, x.Bytes()/page)
	if _, _, errno := syscall.Syscall(syscall.SYS_MINCORE, x.addr(), uintptr(x.Bytes()), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	require.Equal(t, len(vec), resident, "pages of a fresh 16 MiB tensor resident before any touch")
	total := d.Info().TotalMemory
	_, err := d.Alloc(F32, int(total/2)) // twice the machine's memory
	require.ErrorContains(t, err, "more than the machine's available memory")
}

// thpEligible is the THPeligible field of the mapping that holds addr in /proc/self/smaps, "" when none
// does.
func thpEligible(t *testing.T, addr uintptr) string { return thpMappings(t).eligible(addr) }

type thpMapping struct {
	lo, hi   uint64
	eligible string
}

type thpTable []thpMapping

// thpMappings reads /proc/self/smaps once: each mapping's range and THPeligible field.
func thpMappings(t *testing.T) thpTable {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	var out thpTable
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		// a mapping's header line starts "lo-hi" in hex; its fields follow it
		if lo, hi, ok := strings.Cut(f[0], "-"); ok {
			if a, err := strconv.ParseUint(lo, 16, 64); err == nil {
				if b, err := strconv.ParseUint(hi, 16, 64); err == nil {
					out = append(out, thpMapping{lo: a, hi: b})
					continue
				}
			}
		}
		if v, ok := strings.CutPrefix(line, "THPeligible:"); ok && len(out) > 0 {
			out[len(out)-1].eligible = strings.TrimSpace(v)
		}
	}
	return out
}

func (m thpTable) eligible(addr uintptr) string {
	for _, r := range m {
		if uint64(addr) >= r.lo && uint64(addr) < r.hi {
			return r.eligible
		}
	}
	return ""
}
