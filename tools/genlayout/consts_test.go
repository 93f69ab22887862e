package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConstsUpToDate regenerates the Go constants from csrc/serl.h and fails when the committed files
// differ: run `go run ./tools/genlayout -consts csrc/serl.h` from the repository root after editing the
// header.
func TestConstsUpToDate(t *testing.T) {
	header, err := os.ReadFile(filepath.Join("..", "..", "csrc", "serl.h"))
	require.NoError(t, err)
	files, err := genConsts(header)
	require.NoError(t, err)
	for pkg, path := range constFiles {
		have, err := os.ReadFile(filepath.Join("..", "..", path))
		require.NoError(t, err, "%s is missing: run go run ./tools/genlayout -consts csrc/serl.h", path)
		require.Equal(t, string(files[pkg]), string(have),
			"%s is stale against csrc/serl.h: run go run ./tools/genlayout -consts csrc/serl.h", path)
	}
}

// A constant the header adds without a Go group is an error, not a silent omission.
func TestConstsUnknownDefine(t *testing.T) {
	_, err := genConsts([]byte("#define SERL_NEW_THING 3\n"))
	require.ErrorContains(t, err, "SERL_NEW_THING")
	files, err := genConsts([]byte("#define SERL_DTYPE_BF16 3\n#define SERL_E_NOMEM (-3)\n"))
	require.NoError(t, err)
	require.Contains(t, string(files["kernels"]), "BF16 DType = 3")
	require.Contains(t, string(files["loader"]), "StatusNoMem = -3")
}
