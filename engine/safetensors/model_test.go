package safetensors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modelTensors makes n F32 tensors of 4 elements (16 bytes) each.
func modelTensors(t *testing.T, n int) []TensorData {
	var out []TensorData
	for i := range n {
		td, err := FromFloat32(fmt.Sprintf("layers.%d.w", i), F32, []int{2, 2}, []float32{float32(i), 1, 2, 3})
		require.NoError(t, err)
		out = append(out, td)
	}
	return out
}

func TestWriteShardedAndOpenModel(t *testing.T) {
	dir := t.TempDir()
	tensors := modelTensors(t, 5)
	big, err := FromFloat32("embed", BF16, []int{20}, make([]float32, 20)) // 40 bytes > max
	require.NoError(t, err)
	tensors = append(tensors[:2], append([]TensorData{big}, tensors[2:]...)...)
	// 16-byte tensors, max 32: [w0 w1] [embed] [w2 w3] [w4]
	require.NoError(t, WriteSharded(dir, tensors, 32))
	assert.ElementsMatch(t, []string{
		"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
		"model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
		IndexFileName,
	}, dirNames(t, dir))

	raw, err := os.ReadFile(filepath.Join(dir, IndexFileName))
	require.NoError(t, err)
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	require.NoError(t, json.Unmarshal(raw, &idx))
	assert.Equal(t, int64(5*16+40), idx.Metadata["total_size"])
	assert.Equal(t, map[string]string{
		"layers.0.w": "model-00001-of-00004.safetensors",
		"layers.1.w": "model-00001-of-00004.safetensors",
		"embed":      "model-00002-of-00004.safetensors",
		"layers.2.w": "model-00003-of-00004.safetensors",
		"layers.3.w": "model-00003-of-00004.safetensors",
		"layers.4.w": "model-00004-of-00004.safetensors",
	}, idx.WeightMap)

	shard, err := Open(filepath.Join(dir, "model-00003-of-00004.safetensors"))
	require.NoError(t, err)
	assert.Equal(t, "pt", shard.Metadata()["format"], "every shard says format pt")
	require.NoError(t, shard.Close())

	m, err := OpenModel(dir)
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, []string{"layers.0.w", "layers.1.w", "embed", "layers.2.w", "layers.3.w", "layers.4.w"}, m.Names())
	assert.Len(t, m.Files(), 4)
	for i := range 5 {
		name := fmt.Sprintf("layers.%d.w", i)
		got := make([]float32, 4)
		require.NoError(t, m.Float32(name, got))
		assert.Equal(t, []float32{float32(i), 1, 2, 3}, got, name)
		info, ok := m.Tensor(name)
		require.True(t, ok)
		assert.Equal(t, filepath.Join(dir, idx.WeightMap[name]), info.File)
		b, err := m.Bytes(name)
		require.NoError(t, err)
		assert.Len(t, b, 16)
	}
	_, ok := m.Tensor("nope")
	assert.False(t, ok)
	require.ErrorContains(t, m.Float32("nope", nil), `no tensor "nope"`)
}

// Re-saving replaces the previous save's files: a sharded save over a
// single file and the reverse never leave weights OpenModel would mix in.
func TestWriteShardedRemovesStaleFiles(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644))
	require.NoError(t, WriteSharded(dir, modelTensors(t, 3), 1<<20))
	assert.ElementsMatch(t, []string{"config.json", SingleFileName}, dirNames(t, dir))

	require.NoError(t, WriteSharded(dir, modelTensors(t, 3), 16))
	assert.ElementsMatch(t, []string{"config.json", IndexFileName, "model-00001-of-00003.safetensors",
		"model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"}, dirNames(t, dir))

	require.NoError(t, WriteSharded(dir, modelTensors(t, 4), 32))
	assert.ElementsMatch(t, []string{"config.json", IndexFileName, "model-00001-of-00002.safetensors",
		"model-00002-of-00002.safetensors"}, dirNames(t, dir))
	m, err := OpenModel(dir)
	require.NoError(t, err)
	assert.Len(t, m.Names(), 4)
	require.NoError(t, m.Close())

	require.NoError(t, WriteSharded(dir, modelTensors(t, 2), 1<<20))
	assert.ElementsMatch(t, []string{"config.json", SingleFileName}, dirNames(t, dir))
	m, err = OpenModel(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"layers.0.w", "layers.1.w"}, m.Names())
	require.NoError(t, m.Close())

	require.ErrorContains(t, WriteSharded(dir, nil, 0), "maxShardBytes must be positive")
}

func writeIndex(t *testing.T, dir string, weightMap map[string]string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": weightMap})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, IndexFileName), b, 0o644))
}

func TestOpenModelErrors(t *testing.T) {
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		require.NoError(t, WriteSharded(dir, modelTensors(t, 2), 16))
		return dir
	}
	s1, s2 := "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"

	t.Run("neither file", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, "has neither model.safetensors nor model.safetensors.index.json")
	})
	t.Run("shard missing", func(t *testing.T) {
		dir := setup(t)
		require.NoError(t, os.Remove(filepath.Join(dir, s2)))
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, s2)
		require.ErrorContains(t, err, `"layers.1.w"`)
	})
	t.Run("name mapped to shard that lacks it", func(t *testing.T) {
		dir := setup(t)
		writeIndex(t, dir, map[string]string{"layers.0.w": s1, "layers.1.w": s2, "extra": s1})
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, `maps tensor "extra" to `+filepath.Join(dir, s1)+`, which lacks it`)
	})
	t.Run("shard holds unindexed tensor", func(t *testing.T) {
		dir := setup(t)
		extra := modelTensors(t, 3)[2]
		require.NoError(t, Write(filepath.Join(dir, s1), []TensorData{modelTensors(t, 1)[0], extra}, nil))
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, `holds tensor "layers.2.w", which `)
		require.ErrorContains(t, err, "does not list")
	})
	t.Run("tensor indexed to another shard", func(t *testing.T) {
		dir := setup(t)
		require.NoError(t, Write(filepath.Join(dir, s1), modelTensors(t, 2), nil))
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, `holds tensor "layers.1.w", which `)
		require.ErrorContains(t, err, "maps to "+s2)
	})
	t.Run("duplicate key in index", func(t *testing.T) {
		dir := setup(t)
		raw := `{"weight_map":{"layers.0.w":"` + s1 + `","layers.1.w":"` + s2 + `","layers.0.w":"` + s2 + `"}}`
		require.NoError(t, os.WriteFile(filepath.Join(dir, IndexFileName), []byte(raw), 0o644))
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, `duplicate key "layers.0.w"`)
	})
	t.Run("path outside folder", func(t *testing.T) {
		dir := setup(t)
		writeIndex(t, dir, map[string]string{"layers.0.w": "../" + s1})
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, "not a file name in the folder")
	})
	t.Run("bad index JSON", func(t *testing.T) {
		dir := setup(t)
		require.NoError(t, os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map":[`), 0o644))
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, IndexFileName)
	})
	t.Run("empty weight_map", func(t *testing.T) {
		dir := setup(t)
		writeIndex(t, dir, map[string]string{})
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, "weight_map is missing or empty")
	})
	t.Run("corrupt single file", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, SingleFileName), []byte{1}, 0o644))
		_, err := OpenModel(dir)
		require.ErrorContains(t, err, SingleFileName)
	})
}

func TestCheckDuplicateKeys(t *testing.T) {
	for doc, dup := range map[string]string{
		`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`: "",
		`{"a":1,"b":{"x":2,"x":3}}`:                 "x",
		`[{"k":[1,{"k":1,"k":2}]}]`:                 "k",
		`{"a":[],"a":{}}`:                           "a",
		`{"a":{"b":[]},"c":{"b":1}}`:                "",
	} {
		err := checkDuplicateKeys([]byte(doc))
		if dup == "" {
			assert.NoError(t, err, doc)
		} else {
			assert.ErrorContains(t, err, `duplicate key "`+dup+`"`, doc)
		}
	}
}
