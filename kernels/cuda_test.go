package kernels

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCUDADevice checks what the conformance suite takes for granted of the CUDA backend: it reports a
// device with memory, and memory round-trips through it. Skipped where no GPU answers.
func TestCUDADevice(t *testing.T) {
	d := cudaDevice(t)
	in := d.Info()
	t.Logf("cuda: %s, %.1f GiB total, %.1f GiB free, %s", in.Name, float64(in.TotalMemory)/(1<<30),
		float64(in.FreeMemory)/(1<<30), in.Library)
	require.Equal(t, "cuda", in.Backend)
	require.NotEmpty(t, in.Name)
	require.Positive(t, in.TotalMemory)
	require.False(t, d.HostVisible(), "device memory is not host memory")
	x, err := d.Alloc(F32, 1000)
	require.NoError(t, err)
	defer d.Free(x)
	want := make([]float32, 1000)
	for i := range want {
		want[i] = float32(i) * 0.5
	}
	require.NoError(t, Upload(x, want))
	got := make([]float32, 1000)
	require.NoError(t, Download(got, x))
	require.Equal(t, want, got)
}

// TestCUDAMatchesCPU runs one training-shaped chain of ops on both backends from the same inputs and
// requires the same results within float32 rounding: a check across backends beside the suite's
// checks against the reference.
func TestCUDAMatchesCPU(t *testing.T) {
	g := cudaDevice(t)
	c := cpuDevice(t)
	const m, n, k = 37, 53, 129
	run := func(d *Device) []float32 {
		hA := make([]float32, m*k)
		hB := make([]float32, k*n)
		for i := range hA {
			hA[i] = float32((i*7919)%201-100) / 100
		}
		for i := range hB {
			hB[i] = float32((i*104729)%199-99) / 99
		}
		A, B, C := d.MustAlloc(F32, m, k), d.MustAlloc(F32, k, n), d.MustAlloc(F32, m, n)
		defer d.Free(A)
		defer d.Free(B)
		defer d.Free(C)
		require.NoError(t, Upload(A, hA))
		require.NoError(t, Upload(B, hB))
		require.NoError(t, d.MatMul(MatMul{A: A, B: B, C: C, Alpha: 1}))
		out := make([]float32, m*n)
		require.NoError(t, Download(out, C))
		return out
	}
	requireClose(t, "matmul cuda vs cpu", run(g), run(c), 1e-5)
}

// TestCUDASampleMatchesCPU: the same logits and seeds give the same token on both devices (the CPU
// sampler's generator and rule on the GPU), over greedy, temperature, top-k, top-p and penalties, for
// every row whose decision the CPU's own float32 weights leave clear (the reference's margin).
func TestCUDASampleMatchesCPU(t *testing.T) {
	g := cudaDevice(t)
	c := cpuDevice(t)
	h := newHarness(t, c)
	for _, vocab := range []int{1, 7, 257, 4099, 151936} {
		n := 96
		if vocab > 10000 {
			n = 16
		}
		b := newBatch(h, n, vocab, 3)
		for r := 0; r < n; r++ {
			b.temp[r] = []float32{0, 0.7, 1, 1.3}[r%4]
			b.topK[r] = []int32{0, 1, 5, 50}[(r/4)%4]
			b.topP[r] = []float32{1, 0.9, 0.5}[(r/16)%3]
			if r%5 == 0 {
				b.pen[r] = 1.5
			}
		}
		b.hist = make([][]int32, n)
		for r := range b.hist {
			for i := 0; i < r%6; i++ {
				b.hist[r] = append(b.hist[r], int32((r*31+i*17)%vocab))
			}
		}
		tc, lc := b.run(t, c)
		tg, lg := b.run(t, g)
		diff := 0
		for r := 0; r < n; r++ {
			if b.ref(r).Margin < 1e-6 {
				continue
			}
			if tc[r] != tg[r] {
				diff++
				t.Errorf("vocab %d row %d: cpu token %d, cuda token %d", vocab, r, tc[r], tg[r])
			}
		}
		require.Zero(t, diff, "vocab %d: tokens differ", vocab)
		requireClose(t, "sample logp cuda vs cpu", lg, lc, 1e-5)
	}
}
