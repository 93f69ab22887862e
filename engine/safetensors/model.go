package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// File names of a Hugging Face model folder.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Model is a model folder's weights, from one file or from shards, with one
// lookup across all of them.
type Model struct {
	dir   string
	files []*File
	owner map[string]*File
	names []string
}

// index is model.safetensors.index.json.
type index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenModel opens dir/model.safetensors or, if that is absent, the shards
// that dir/model.safetensors.index.json lists (the order transformers tries
// them in). The index and the shards must agree exactly: every indexed tensor
// is in the shard it names, and every shard tensor is indexed to that shard.
func OpenModel(dir string) (*Model, error) {
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		m := &Model{dir: dir, files: []*File{f}, owner: map[string]*File{}, names: f.Names()}
		for _, n := range m.names {
			m.owner[n] = f
		}
		return m, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}

	idxPath := filepath.Join(dir, IndexFileName)
	raw, err := os.ReadFile(idxPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %s has neither %s nor %s", dir, SingleFileName, IndexFileName)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if err := checkDuplicateKeys(raw); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", idxPath, err)
	}
	var idx index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: weight_map is missing or empty", idxPath)
	}

	// Open each shard once, in name order so Names is deterministic.
	byShard := map[string][]string{}
	for name, shard := range idx.WeightMap {
		if shard == "" || shard == "." || shard == ".." || filepath.Base(shard) != shard {
			return nil, fmt.Errorf("safetensors: %s: tensor %q maps to %q, which is not a file name in the folder", idxPath, name, shard)
		}
		byShard[shard] = append(byShard[shard], name)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)

	m := &Model{dir: dir, owner: make(map[string]*File, len(idx.WeightMap))}
	fail := func(err error) (*Model, error) {
		_ = m.Close()
		return nil, err
	}
	for _, s := range shards {
		names := byShard[s]
		sort.Strings(names)
		f, err := Open(filepath.Join(dir, s))
		if err != nil {
			return fail(fmt.Errorf("%w (%s maps %d tensors to it, e.g. %q)", err, IndexFileName, len(names), names[0]))
		}
		m.files = append(m.files, f)
		for _, n := range names {
			if _, ok := f.Tensor(n); !ok {
				return fail(fmt.Errorf("safetensors: %s maps tensor %q to %s, which lacks it", idxPath, n, f.path))
			}
		}
		for _, n := range f.Names() {
			want, ok := idx.WeightMap[n]
			switch {
			case !ok:
				return fail(fmt.Errorf("safetensors: %s holds tensor %q, which %s does not list", f.path, n, idxPath))
			case want != s:
				return fail(fmt.Errorf("safetensors: %s holds tensor %q, which %s maps to %s", f.path, n, idxPath, want))
			}
			m.owner[n] = f
			m.names = append(m.names, n)
		}
	}
	return m, nil
}

// Names lists every tensor: shard by shard, each in file order.
func (m *Model) Names() []string { return append([]string{}, m.names...) }

// Files lists the paths of the open safetensors files.
func (m *Model) Files() []string {
	out := make([]string, len(m.files))
	for i, f := range m.files {
		out[i] = f.path
	}
	return out
}

// Tensor describes the named tensor; Info.File says which shard holds it.
func (m *Model) Tensor(name string) (Info, bool) {
	f, ok := m.owner[name]
	if !ok {
		return Info{}, false
	}
	return f.Tensor(name)
}

// Bytes returns the tensor's raw bytes, as File.Bytes.
func (m *Model) Bytes(name string) ([]byte, error) {
	f, ok := m.owner[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: model %s has no tensor %q", m.dir, name)
	}
	return f.Bytes(name)
}

// Float32 converts the named tensor into dst, as File.Float32.
func (m *Model) Float32(name string, dst []float32) error {
	f, ok := m.owner[name]
	if !ok {
		return fmt.Errorf("safetensors: model %s has no tensor %q", m.dir, name)
	}
	return f.Float32(name, dst)
}

// Close closes every shard.
func (m *Model) Close() error {
	var errs []error
	for _, f := range m.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
