package model

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/safetensors"
)

// copyFixture copies a fixture folder's config and weights into a temporary folder to be damaged.
func copyFixture(t *testing.T, name string) string {
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join("testdata", name, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	return dir
}

// rewrite rewrites model.safetensors through edit, which may drop or change tensors.
func rewrite(t *testing.T, dir string, edit func([]safetensors.TensorData) []safetensors.TensorData) {
	p := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(p)
	require.NoError(t, err)
	var ts []safetensors.TensorData
	for _, n := range f.Names() {
		info, _ := f.Tensor(n)
		b, err := f.Bytes(n)
		require.NoError(t, err)
		ts = append(ts, safetensors.TensorData{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), b...)})
	}
	f.Close()
	require.NoError(t, safetensors.Write(p, edit(ts), nil))
}

func TestLoadErrors(t *testing.T) {
	d := testDevice(t)
	const victim = "model.layers.1.mlp.up_proj.weight"
	cases := []struct {
		name  string
		setup func(dir string)
		want  []string
	}{
		{"missing tensor", func(dir string) {
			rewrite(t, dir, func(ts []safetensors.TensorData) []safetensors.TensorData {
				for i, x := range ts {
					if x.Name == victim {
						return append(ts[:i], ts[i+1:]...)
					}
				}
				return ts
			})
		}, []string{"missing tensor", victim}},
		{"wrong shape", func(dir string) {
			rewrite(t, dir, func(ts []safetensors.TensorData) []safetensors.TensorData {
				for i := range ts {
					if ts[i].Name == victim {
						ts[i].Shape = []int{ts[i].Shape[1], ts[i].Shape[0]}
					}
				}
				return ts
			})
		}, []string{victim, "shape"}},
		{"unsupported dtype", func(dir string) {
			rewrite(t, dir, func(ts []safetensors.TensorData) []safetensors.TensorData {
				for i := range ts {
					if ts[i].Name == victim {
						ts[i].DType = safetensors.I32
					}
				}
				return ts
			})
		}, []string{victim}},
		{"unexpected tensor", func(dir string) {
			rewrite(t, dir, func(ts []safetensors.TensorData) []safetensors.TensorData {
				return append(ts, safetensors.TensorData{Name: "model.layers.9.extra.weight", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)})
			})
		}, []string{"unexpected tensor", "model.layers.9.extra.weight"}},
		{"truncated file", func(dir string) {
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			require.NoError(t, os.WriteFile(p, b[:len(b)/2], 0o644))
		}, []string{"model.safetensors"}},
		{"corrupt header", func(dir string) {
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			copy(b[8:], []byte("{{{{"))
			require.NoError(t, os.WriteFile(p, b, 0o644))
		}, []string{"model.safetensors"}},
		{"NaN weight", func(dir string) {
			rewrite(t, dir, func(ts []safetensors.TensorData) []safetensors.TensorData {
				for i := range ts {
					if ts[i].Name == victim {
						binary.LittleEndian.PutUint32(ts[i].Data[4*7:], math.Float32bits(float32(math.NaN())))
					}
				}
				return ts
			})
		}, []string{victim, "element 7 is NaN"}},
		{"infinite weight", func(dir string) {
			rewrite(t, dir, func(ts []safetensors.TensorData) []safetensors.TensorData {
				for i := range ts {
					if ts[i].Name == victim {
						binary.LittleEndian.PutUint32(ts[i].Data, math.Float32bits(float32(math.Inf(-1))))
					}
				}
				return ts
			})
		}, []string{victim, "element 0 is -Inf"}},
		{"missing weights", func(dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "model.safetensors")))
		}, []string{"model.safetensors"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyFixture(t, "qwen2_f32")
			c.setup(dir)
			_, err := Load(d, dir)
			require.Error(t, err)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	base := `"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":100`
	cases := map[string]string{
		`{"model_type":"gpt2",` + base + `}`: "model_type",
		`{` + base + `}`:                     "model_type",
		`{"model_type":"qwen2","use_sliding_window":true,` + base + `}`:                                                                                      "use_sliding_window",
		`{"model_type":"llama","rope_scaling":{"rope_type":"yarn","factor":2},` + base + `}`:                                                                 "rope_scaling.rope_type",
		`{"model_type":"llama","hidden_act":"gelu",` + base + `}`:                                                                                            "hidden_act",
		`{"model_type":"llama","architectures":["MistralForCausalLM"],` + base + `}`:                                                                         "architectures",
		`{"model_type":"llama","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":3,"num_hidden_layers":1,"intermediate_size":8,"vocab_size":9}`: "num_key_value_heads",
		`{"model_type":"llama","num_attention_heads":4,"num_hidden_layers":1,"intermediate_size":8,"vocab_size":9}`:                                          "hidden_size",
		`{"model_type":"llama","hidden_size":-64,"num_attention_heads":4,"num_hidden_layers":1,"intermediate_size":8,"vocab_size":9}`:                        "hidden_size",
		`{"model_type":"llama","eos_token_id":500,` + base + `}`:                                                                                             "eos_token_id",
		`{"model_type":"llama",` + base:                     "not a valid config.json",
		`{"model_type":"qwen2","head_dim":32,` + base + `}`: "head_dim",
	}
	for src, field := range cases {
		_, err := ParseConfig([]byte(src), "x/config.json")
		require.Error(t, err, src)
		require.Contains(t, err.Error(), "x/config.json", src)
		require.Contains(t, err.Error(), field, src)
	}
	c, err := ParseConfig([]byte(`{"model_type":"llama","eos_token_id":[5,7],`+base+`}`), "ok")
	require.NoError(t, err)
	require.Equal(t, []int{5, 7}, c.EOS)
	require.Equal(t, 16, c.HeadDim)
}

// Save keeps config fields serl does not use and sets torch_dtype.
func TestSavePreservesConfig(t *testing.T) {
	m, err := Load(testDevice(t), filepath.Join("testdata", "qwen2_f32"))
	require.NoError(t, err)
	defer m.Free()
	out := filepath.Join(t.TempDir(), "m")
	require.NoError(t, m.Save(out, safetensors.BF16))
	b, err := os.ReadFile(filepath.Join(out, "config.json"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(b, &cfg))
	require.Equal(t, "bfloat16", cfg["torch_dtype"])
	require.Equal(t, "4.51.3", cfg["transformers_version"])
	// Saving again over the folder replaces it whole and leaves no temporary folders behind.
	require.NoError(t, m.Save(out, safetensors.F32))
	entries, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range entries {
		require.False(t, strings.Contains(e.Name(), ".tmp-") || strings.Contains(e.Name(), ".old-"), e.Name())
	}
}
