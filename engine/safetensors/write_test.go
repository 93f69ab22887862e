package safetensors

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// A write that fails midway leaves the old file intact and no temporary file.
func TestWriteAtomicFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	boom := errors.New("disk on fire")
	err := writeAtomic(path, func(w io.Writer) error {
		_, _ = w.Write(make([]byte, 3<<20)) // past the buffer: bytes reach the temp file
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), path)
	assert.Empty(t, dirNames(t, dir), "no file and no temporary file")

	a, err := FromFloat32("a", F32, []int{1}, []float32{1})
	require.NoError(t, err)
	require.NoError(t, Write(path, []TensorData{a}, nil))
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	err = writeAtomic(path, func(w io.Writer) error {
		_, _ = w.Write([]byte("partial"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the old file survives a failed overwrite")
	assert.Equal(t, []string{"m.safetensors"}, dirNames(t, dir))

	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
}

func TestWriteReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o555))
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	a, err := FromFloat32("a", F32, []int{1}, []float32{1})
	require.NoError(t, err)
	err = Write(filepath.Join(dir, "m.safetensors"), []TensorData{a}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "m.safetensors")
	assert.Empty(t, dirNames(t, dir))
}

func TestWriteRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	a, err := FromFloat32("a", F32, []int{2}, []float32{1, 2})
	require.NoError(t, err)
	cases := []struct {
		name     string
		tensors  []TensorData
		meta     map[string]string
		want     string
		numError bool
	}{
		{"duplicate", []TensorData{a, a}, nil, `duplicate tensor name "a"`, false},
		{"reserved name", []TensorData{{Name: "__metadata__", DType: U8, Shape: []int{0}}}, nil, `"__metadata__" cannot name a tensor`, false},
		{"short data", []TensorData{{Name: "b", DType: F32, Shape: []int{2}, Data: make([]byte, 7)}}, nil, `tensor "b": F32[2] needs 8 bytes, Data has 7`, false},
		{"unknown dtype", []TensorData{{Name: "b", DType: "F8", Shape: []int{1}, Data: make([]byte, 1)}}, nil, `unknown dtype "F8"`, false},
		{"negative dim", []TensorData{{Name: "b", DType: U8, Shape: []int{-1}}}, nil, `shape[0] is -1`, false},
		{"other format", []TensorData{a}, map[string]string{"format": "np"}, `"format" is "np"`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Write(path, c.tensors, c.meta)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), path)
			assert.Empty(t, dirNames(t, dir))
		})
	}

	_, err = FromFloat32("c", F32, []int{3}, []float32{1, 2})
	require.ErrorContains(t, err, `tensor "c": shape [3] has 3 elements, got 2 values`)
	_, err = FromFloat32("c", I32, []int{1}, []float32{1})
	require.ErrorContains(t, err, "only F32, BF16 and F16")
}

func TestWriteEmptyAndMetadata(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.safetensors")
	require.NoError(t, Write(path, nil, map[string]string{"format": "pt", "k": "v"}))
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	assert.Empty(t, f.Names())
	assert.Equal(t, map[string]string{"format": "pt", "k": "v"}, f.Metadata())
	m := f.Metadata()
	m["k"] = "changed"
	assert.Equal(t, "v", f.Metadata()["k"], "Metadata returns a copy")
}
