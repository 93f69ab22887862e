package modelpack

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modelFolder makes a folder with the three required files and one optional one.
func modelFolder(t *testing.T) string {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"config.json":           `{"model_type":"qwen2"}`,
		"model.safetensors":     string(bytes.Repeat([]byte{1, 2, 3, 4}, 5000)),
		"tokenizer.json":        `{"model":{"type":"BPE"}}`,
		"tokenizer_config.json": `{"chat_template":"x"}`,
		"notes.txt":             "not part of a model: left out",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

func pack(t *testing.T, dir string) []byte {
	var b bytes.Buffer
	require.NoError(t, Pack(dir, &b))
	return b.Bytes()
}

func TestPackIsDeterministicAndRoundTrips(t *testing.T) {
	src := modelFolder(t)
	a := pack(t, src)
	// Same bytes from a copy made later (other mtimes) in another folder.
	other := t.TempDir()
	for _, name := range []string{"tokenizer_config.json", "config.json", "tokenizer.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(other, name), b, 0o600))
	}
	assert.Equal(t, a, pack(t, other))

	dst := filepath.Join(t.TempDir(), "m")
	require.NoError(t, Unpack(a, dst))
	got, err := os.ReadDir(dst)
	require.NoError(t, err)
	var names []string
	for _, e := range got {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}, names)
	for _, n := range names {
		want, _ := os.ReadFile(filepath.Join(src, n))
		have, _ := os.ReadFile(filepath.Join(dst, n))
		assert.Equal(t, want, have, n)
	}
	assert.Error(t, Unpack(a, dst), "unpacking over an existing folder")
}

func TestPackNeedsTheRequiredFiles(t *testing.T) {
	dir := modelFolder(t)
	require.NoError(t, os.Remove(filepath.Join(dir, "model.safetensors")))
	err := Pack(dir, &bytes.Buffer{})
	assert.ErrorContains(t, err, "model.safetensors")
}

func TestExtractCachesAndRepairs(t *testing.T) {
	a := pack(t, modelFolder(t))
	cache := t.TempDir()
	dir, err := Extract(a, cache, nil)
	require.NoError(t, err)
	again, err := Extract(a, cache, nil)
	require.NoError(t, err)
	assert.Equal(t, dir, again)

	// A truncated file is noticed and the folder rebuilt.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("cut"), 0o644))
	fixed, err := Extract(a, cache, nil)
	require.NoError(t, err)
	assert.Equal(t, dir, fixed)
	b, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	require.NoError(t, err)
	assert.Len(t, b, 20000)
	left, _ := os.ReadDir(cache)
	assert.Len(t, left, 1, "no temporary or stale folders left behind")
}

// Files an archive lacks are added to its folder, a folder unpacked before they were (an older serl's) is
// rebuilt with them, and a file the archive has keeps the archive's bytes.
func TestExtractAddsMissingFiles(t *testing.T) {
	src := modelFolder(t)
	a := pack(t, src)
	cache := t.TempDir()
	dir, err := Extract(a, cache, nil)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "serl.json"))
	require.ErrorIs(t, err, os.ErrNotExist)

	add := map[string][]byte{"serl.json": []byte(`{"prompt_mode":"chat"}`), "config.json": []byte("not the archive's")}
	again, err := Extract(a, cache, add)
	require.NoError(t, err)
	assert.Equal(t, dir, again)
	b, err := os.ReadFile(filepath.Join(dir, "serl.json"))
	require.NoError(t, err)
	assert.Equal(t, add["serl.json"], b)
	b, err = os.ReadFile(filepath.Join(dir, "config.json"))
	require.NoError(t, err)
	assert.Equal(t, `{"model_type":"qwen2"}`, string(b), "the archive's own file wins")
	left, _ := os.ReadDir(cache)
	assert.Len(t, left, 1, "no temporary or stale folders left behind")

	_, err = Extract(a, cache, map[string][]byte{"../x": nil})
	assert.ErrorContains(t, err, `"../x"`)
}

// tarZst builds an archive by hand, for malformed ones Pack would never write.
func tarZst(t *testing.T, hdrs ...tar.Header) []byte {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, h := range hdrs {
		h := h
		require.NoError(t, tw.WriteHeader(&h))
		if h.Typeflag == tar.TypeReg {
			_, err := tw.Write(make([]byte, h.Size))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	zw, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	return zw.EncodeAll(raw.Bytes(), nil)
}

func TestUnpackRefusesMalformedArchives(t *testing.T) {
	reg := func(name string) tar.Header {
		return tar.Header{Typeflag: tar.TypeReg, Name: name, Size: 3, Mode: 0o644}
	}
	full := []tar.Header{reg("config.json"), reg("model.safetensors"), reg("tokenizer.json")}
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"not zstd", []byte("plain text, not an archive"), "archive"},
		{"path escape", tarZst(t, append(full, reg("../evil"))...), `"../evil"`},
		{"sub folder", tarZst(t, append(full, reg("a/b.json"))...), `"a/b.json"`},
		{"symlink", tarZst(t, append(full, tar.Header{Typeflag: tar.TypeSymlink, Name: "x", Linkname: "/etc/passwd"})...), `"x"`},
		{"duplicate", tarZst(t, append(full, reg("config.json"))...), "twice"},
		{"missing weights", tarZst(t, reg("config.json"), reg("tokenizer.json")), "no model.safetensors"},
		{"truncated", pack(t, modelFolder(t))[:200], "archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "m")
			err := Unpack(tc.archive, dst)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			_, statErr := os.Stat(dst)
			assert.True(t, os.IsNotExist(statErr), "nothing left under the final name")
		})
	}
}

// A folder over MaxUnpacked is refused before anything is read or written: its archive could never be
// unpacked. (A sparse file stands for the large weights.)
func TestPackRefusesWhatCannotBeUnpacked(t *testing.T) {
	dir := modelFolder(t)
	small, err := Size(dir)
	require.NoError(t, err)
	assert.Equal(t, int64(len(`{"model_type":"qwen2"}`)+20000+len(`{"model":{"type":"BPE"}}`)+len(`{"chat_template":"x"}`)), small,
		"the model's files only")
	require.NoError(t, os.Truncate(filepath.Join(dir, "model.safetensors"), MaxUnpacked))
	n, err := Size(dir)
	require.NoError(t, err)
	require.Greater(t, n, int64(MaxUnpacked))
	var b bytes.Buffer
	err = Pack(dir, &b)
	require.ErrorContains(t, err, "over the 1073741824 an archive may unpack to")
	assert.Zero(t, b.Len(), "nothing written")

	require.NoError(t, os.Remove(filepath.Join(dir, "config.json")))
	_, err = Size(dir)
	require.ErrorContains(t, err, "config.json", "a required file is missing")
}
