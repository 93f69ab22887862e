package kernels

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMemoryInfo: every device reports free memory within its total, and asks anew each call.
func TestMemoryInfo(t *testing.T) {
	for _, d := range testDevices(t) {
		free, total, err := d.MemoryInfo()
		require.NoError(t, err, d.Backend())
		require.Positive(t, free, d.Backend())
		require.LessOrEqual(t, free, total, d.Backend())
		_, err = d.Capture(func() error { _, _, err := d.MemoryInfo(); return err })
		require.ErrorIs(t, err, ErrCapturing, "refused during capture")
	}
}

// TestCUDAMemoryInfo: on a GPU, allocating 1 GiB takes it from the free memory reported, and freeing it
// gives it back (the caching allocator keeps it, and counts it as free).
func TestCUDAMemoryInfo(t *testing.T) {
	d := cudaDevice(t)
	free0, total, err := d.MemoryInfo()
	require.NoError(t, err)
	t.Logf("cuda: %.2f GiB free of %.2f GiB", float64(free0)/(1<<30), float64(total)/(1<<30))
	const gib = 1 << 30
	x, err := d.Alloc(F32, gib/4)
	require.NoError(t, err)
	free1, _, err := d.MemoryInfo()
	require.NoError(t, err)
	d.Free(x)
	free2, _, err := d.MemoryInfo()
	require.NoError(t, err)
	require.LessOrEqual(t, free1, free0-gib+(64<<20), "1 GiB allocated")
	require.GreaterOrEqual(t, free2, free1+gib-(64<<20), "1 GiB freed into the cache")
}
