package kernels

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// SERL_CPU_HOST_VISIBLE=0 gives a CPU device Go cannot read directly: direct reads panic instead of
// returning nil, and every copy is an explicit upload or download, counted.
func TestCPUHostVisibility(t *testing.T) {
	for _, visible := range []bool{true, false} {
		env := "1"
		if !visible {
			env = "0"
		}
		t.Setenv("SERL_CPU_HOST_VISIBLE", env)
		d, err := Open("cpu", 1)
		require.NoError(t, err)
		require.Equal(t, visible, d.HostVisible())
		x := d.MustAlloc(F32, 2, 3)
		row := x.MustSlice(1, 2)
		start := d.Transfers()
		require.NoError(t, Upload(x, []float32{0, 1, 2, 3, 4, 5}))
		got := make([]float32, 3)
		require.NoError(t, Download(got, row))
		require.Equal(t, []float32{3, 4, 5}, got)
		if visible {
			require.Equal(t, []float32{3, 4, 5}, row.F32())
		} else {
			require.PanicsWithValue(t, "kernels: direct host read of f32[1 3] on a cpu device that is not host visible (use Download)",
				func() { row.F32() })
			require.Panics(t, func() { d.MustAlloc(I32, 1).I32() })
		}
		// Device-to-device copies are not transfers; uploads and downloads count calls and bytes.
		require.NoError(t, d.Copy(row, x.MustSlice(0, 1)))
		require.Equal(t, Transfers{Uploads: 1, UploadBytes: 24, Downloads: 1, DownloadBytes: 12}, d.Transfers().Sub(start))
		d.Close()
	}
	t.Setenv("SERL_CPU_HOST_VISIBLE", "no")
	_, err := Open("cpu", 1)
	require.ErrorContains(t, err, `SERL_CPU_HOST_VISIBLE="no" (want 0 or 1)`)
}
