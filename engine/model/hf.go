package model

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/serl-go/serl/internal/atomicfile"

	"github.com/serl-go/serl/engine/dtype"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/kernels"
)

// Load reads a Hugging Face model folder (config.json and model.safetensors or its shards) onto d, in
// float32. Every tensor of the layout must be present with its exact shape; F32, BF16 and F16 are
// converted to float32. Errors name the folder, the file and the tensor.
func Load(d *kernels.Device, dir string) (*Model, error) { return LoadWith(d, dir, Options{}) }

// LoadWith is Load in the precision o asks for: under bf16 the float32 master weights are read as Load
// reads them and cast to the bf16 copy (a frozen model gets the copy only, rounded on the host by the
// same rule).
func LoadWith(d *kernels.Device, dir string, o Options) (*Model, error) {
	c, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	st, err := safetensors.OpenModel(dir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	m, err := NewWith(d, c, o)
	if err != nil {
		return nil, err
	}
	m.SourceDir = dir
	if err := m.readWeights(st, dir); err != nil {
		m.Free()
		return nil, err
	}
	if err := m.SyncWeights(); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

func (m *Model) readWeights(st *safetensors.Model, dir string) error {
	known := map[string]bool{}
	var host []float32
	var bits []uint16
	for i, s := range m.Layout.Specs {
		known[s.Name] = true
		info, ok := st.Tensor(s.Name)
		if !ok {
			return fmt.Errorf("%s: missing tensor %s (shape %v)", dir, s.Name, s.Shape)
		}
		if !slices.Equal(info.Shape, s.Shape) {
			return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", dir, s.Name, info.Shape, s.Shape)
		}
		if m.Params == nil {
			// A frozen bf16 model: round on the host and upload the copy only.
			host = append(host[:0], make([]float32, s.Len)...)
			bits = append(bits[:0], make([]uint16, s.Len)...)
			if err := st.Float32(s.Name, host); err != nil {
				return fmt.Errorf("%s: %w", dir, err)
			}
			dtype.F32ToBF16(bits, host)
			if err := kernels.Upload(m.Weights.View(i), bits); err != nil {
				return err
			}
			if nv, ok := m.normAt[i]; ok {
				if err := kernels.Upload(nv, host); err != nil {
					return err
				}
			}
			continue
		}
		dst := m.Params.View(i)
		if m.dev.HostVisible() {
			if err := st.Float32(s.Name, dst.F32()); err != nil {
				return fmt.Errorf("%s: %w", dir, err)
			}
			if err := checkFinite(dir, s.Name, dst.F32()); err != nil {
				return err
			}
			continue
		}
		host = append(host[:0], make([]float32, s.Len)...)
		if err := st.Float32(s.Name, host); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if err := checkFinite(dir, s.Name, host); err != nil {
			return err
		}
		if err := kernels.Upload(dst, host); err != nil {
			return err
		}
	}
	for _, name := range st.Names() {
		switch {
		case known[name]:
		case strings.HasSuffix(name, ".rotary_emb.inv_freq"):
			// Old checkpoints store the rotary table; serl computes it from the config, as transformers does.
		case name == "lm_head.weight" && m.Config.TieEmbedding:
			// transformers ties the head to the embedding after loading and ignores this copy.
		default:
			return fmt.Errorf("%s: unexpected tensor %s: not part of a %s model with this config.json", dir, name, m.Config.Arch)
		}
	}
	return nil
}

// checkFinite refuses a weight tensor holding NaN or ±Inf, naming it: such a weight would otherwise
// surface far from its cause, as "no finite logit" in generation or a NaN loss.
func checkFinite(dir, name string, v []float32) error {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%s: tensor %s: element %d is %v (the weights are not finite)", dir, name, i, x)
		}
	}
	return nil
}

// tokenizerFiles travel with a saved model so the folder loads in transformers and vLLM as it is (and
// serl.json, serl's own record of the prompt format, so it loads in serl as it was trained).
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json",
	"special_tokens_map.json", "vocab.json", "merges.txt", "serl.json"}

// Save writes the model as a Hugging Face folder: config.json (the source's, with torch_dtype set),
// model.safetensors in dt (F32, BF16 or F16), and the tokenizer files of the folder it was loaded from.
// The folder is assembled beside dir and renamed into place, so dir is never half-written.
func (m *Model) Save(dir string, dt safetensors.DType) error {
	if dt != safetensors.F32 && dt != safetensors.BF16 && dt != safetensors.F16 {
		return fmt.Errorf("model: save %s: dtype %s (want F32, BF16 or F16)", dir, dt)
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	tmp := filepath.Clean(dir) + ".tmp-" + hex.EncodeToString(suffix[:])
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := m.writeFolder(tmp, dt); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("model: save %s: %w", dir, err)
	}
	var old string
	if _, err := os.Stat(dir); err == nil {
		old = filepath.Clean(dir) + ".old-" + hex.EncodeToString(suffix[:])
		if err := os.Rename(dir, old); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		os.RemoveAll(tmp)
		return err
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

func (m *Model) writeFolder(dir string, dt safetensors.DType) error {
	cfg := map[string]any{}
	if len(m.Config.raw) > 0 {
		if err := json.Unmarshal(m.Config.raw, &cfg); err != nil {
			return err
		}
	}
	cfg["torch_dtype"] = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[dt]
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n')); err != nil {
		return err
	}
	if err := m.writeWeights(filepath.Join(dir, "model.safetensors"), dt); err != nil {
		return err
	}
	if m.SourceDir != "" {
		for _, name := range tokenizerFiles {
			if _, mine := m.Files[name]; mine {
				continue
			}
			if err := copyFile(filepath.Join(m.SourceDir, name), filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	for name, b := range m.Files {
		if filepath.Base(name) != name {
			return fmt.Errorf("model: file %q: a plain name is needed", name)
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

// WriteSafetensors writes every tensor of the blob under its Hugging Face name (atomically: temporary
// file, then rename). serl grad uses it for gradients, Save for weights.
func (b *Blob) WriteSafetensors(path string, dt safetensors.DType) error {
	return b.writeSafetensors(path, dt, nil)
}

// writeSafetensors is WriteSafetensors with some tensors taken from elsewhere (a frozen bf16 model's
// float32 RMSNorm weights), by layout index.
func (b *Blob) writeSafetensors(path string, dt safetensors.DType, from map[int]kernels.Tensor) error {
	tensors := make([]safetensors.TensorData, 0, len(b.Layout.Specs))
	var host []float32
	var bits []uint16
	for i, s := range b.Layout.Specs {
		host = append(host[:0], make([]float32, s.Len)...)
		src, ok := from[i]
		if !ok {
			src = b.View(i)
		}
		switch src.DType() {
		case kernels.F32:
			if err := kernels.Download(host, src); err != nil {
				return err
			}
		case kernels.BF16:
			bits = append(bits[:0], make([]uint16, s.Len)...)
			if err := kernels.Download(bits, src); err != nil {
				return err
			}
			dtype.BF16ToF32(host, bits)
		default:
			return fmt.Errorf("model: write %s: tensor %s of dtype %s", path, s.Name, src.DType())
		}
		td, err := safetensors.FromFloat32(s.Name, dt, s.Shape, host)
		if err != nil {
			return err
		}
		tensors = append(tensors, td)
	}
	return safetensors.Write(path, tensors, nil)
}

// writeWeights writes the model's weights: the float32 master weights, or for a frozen bf16 model
// its bf16 copy with the RMSNorm weights it keeps in float32 (so a reload reads back exactly the
// weights the ops read).
func (m *Model) writeWeights(path string, dt safetensors.DType) error {
	if m.Params != nil {
		return m.Params.WriteSafetensors(path, dt)
	}
	return m.Weights.writeSafetensors(path, dt, m.normAt)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
