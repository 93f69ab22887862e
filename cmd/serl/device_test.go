package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
)

// --device cuda where no GPU answers (or no CUDA library is built) is one line on stderr that says
// what was tried, and --device auto then runs on the CPU and says so. Where a GPU answers, both take it.
func TestDeviceCUDAWithoutGPU(t *testing.T) {
	if d, err := kernels.Open("cuda", 0); err == nil {
		d.Close()
		var out, errb bytes.Buffer
		require.Equal(t, 0, run([]string{"info", "--device", "auto"}, &out, &errb), errb.String())
		require.Contains(t, errb.String(), "serl: device cuda")
		t.Skip("skipped: a GPU answers here (--device auto took it)")
	}
	var out, errb bytes.Buffer
	require.Equal(t, 1, run([]string{"info", "--device", "cuda"}, &out, &errb))
	msg := strings.TrimRight(errb.String(), "\n")
	require.Contains(t, msg, "serl info:")
	if strings.Contains(msg, "cannot find libserl_cuda.so") {
		return // no CUDA library in this build (no nvcc): the loader lists every place it looked
	}
	require.NotContains(t, msg, "\n", "one line")
	require.Contains(t, msg, "libcuda.so.1", "names the driver it tried")
	require.Contains(t, msg, "cuBLAS", "names cuBLAS")
	out.Reset()
	errb.Reset()
	require.Equal(t, 0, run([]string{"info", "--device", "auto"}, &out, &errb), errb.String())
	require.Contains(t, errb.String(), "serl: device cpu")
	require.NotContains(t, errb.String(), "took the CPU", "no GPU at all is not worth a line")
}
