package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/serl-go/serl/internal/atomicfile"

	"github.com/serl-go/serl/engine/dtype"
)

// TensorData is one tensor to write: Data holds its little-endian bytes.
type TensorData struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// FromFloat32 encodes values as an F32, BF16 or F16 tensor (BF16 and F16
// rounded to nearest even, as PyTorch does).
func FromFloat32(name string, dt DType, shape []int, values []float32) (TensorData, error) {
	numel, _, err := numBytes(dt, shape)
	if err != nil {
		return TensorData{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	if numel != int64(len(values)) {
		return TensorData{}, fmt.Errorf("safetensors: tensor %q: shape %v has %d elements, got %d values", name, shape, numel, len(values))
	}
	t := TensorData{Name: name, DType: dt, Shape: append([]int{}, shape...)}
	switch dt {
	case F32:
		t.Data = make([]byte, 4*len(values))
		dtype.EncodeF32(t.Data, values)
	case BF16:
		t.Data = make([]byte, 2*len(values))
		dtype.EncodeBF16(t.Data, values)
	case F16:
		t.Data = make([]byte, 2*len(values))
		dtype.EncodeF16(t.Data, values)
	default:
		return TensorData{}, fmt.Errorf("safetensors: tensor %q: FromFloat32 encodes only F32, BF16 and F16, not %s", name, dt)
	}
	return t, nil
}

// checkTensors enforces what Open will demand of the file, so Write never
// produces a file serl (or transformers) refuses.
func checkTensors(tensors []TensorData) error {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if t.Name == "__metadata__" {
			return errors.New(`safetensors: "__metadata__" cannot name a tensor`)
		}
		if seen[t.Name] {
			return fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		_, size, err := numBytes(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("safetensors: tensor %q: %w", t.Name, err)
		}
		if int64(len(t.Data)) != size {
			return fmt.Errorf("safetensors: tensor %q: %s%v needs %d bytes, Data has %d", t.Name, t.DType, t.Shape, size, len(t.Data))
		}
	}
	return nil
}

// header builds the padded JSON header, tensors laid out in the given order.
// __metadata__ always carries "format": "pt", which transformers requires
// to load a safetensors checkpoint.
func header(tensors []TensorData, metadata map[string]string) ([]byte, error) {
	if f, ok := metadata["format"]; ok && f != "pt" {
		return nil, fmt.Errorf(`safetensors: metadata "format" is %q; serl writes "pt" files`, f)
	}
	meta := map[string]string{"format": "pt"}
	for k, v := range metadata {
		meta[k] = v
	}
	var b bytes.Buffer
	b.WriteString(`{"__metadata__":`)
	mj, err := json.Marshal(meta) // keys sorted: deterministic files
	if err != nil {
		return nil, err
	}
	b.Write(mj)
	var off int64
	for _, t := range tensors {
		name, err := json.Marshal(t.Name)
		if err != nil {
			return nil, err
		}
		b.WriteByte(',')
		b.Write(name)
		b.WriteString(`:{"dtype":`)
		b.WriteString(strconv.Quote(string(t.DType)))
		b.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	b.WriteByte('}')
	// Pad to 8 bytes so the data region (and every F32 tensor that starts
	// at a multiple of 4 in it) is aligned in the mapping.
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// Write writes a safetensors file with the tensors in the given order. It
// streams the data to a temporary file in path's directory, syncs it and
// renames it over path, so path is either the old file or the complete new
// one, never a partial write.
func Write(path string, tensors []TensorData, metadata map[string]string) error {
	if err := checkTensors(tensors); err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	return writeFile(path, tensors, metadata)
}

func writeFile(path string, tensors []TensorData, metadata map[string]string) error {
	hdr, err := header(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	return writeAtomic(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hdr)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, t := range tensors {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeAtomic writes path through internal/atomicfile: never a half-written file.
func writeAtomic(path string, fill func(io.Writer) error) error {
	if err := atomicfile.Write(path, fill); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return nil
}

// ShardName is Hugging Face's name for shard i (1-based) of n.
func ShardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

var shardPattern = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

// WriteSharded saves tensors into dir as transformers' save_pretrained does:
// one model.safetensors if they fit in maxShardBytes, otherwise shards of at
// most maxShardBytes of tensor data (a larger tensor gets a shard to itself)
// named model-0000i-of-0000N.safetensors plus model.safetensors.index.json.
// Each file is written atomically, the index last; model files of an earlier
// save that the new one does not use are then removed, so OpenModel never
// mixes old and new weights.
func WriteSharded(dir string, tensors []TensorData, maxShardBytes int64) error {
	if maxShardBytes <= 0 {
		return fmt.Errorf("safetensors: maxShardBytes must be positive, got %d", maxShardBytes)
	}
	if err := checkTensors(tensors); err != nil {
		return fmt.Errorf("%w (writing %s)", err, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var shards [][]TensorData
	var cur []TensorData
	var curBytes, total int64
	for _, t := range tensors {
		n := int64(len(t.Data))
		if len(cur) > 0 && curBytes+n > maxShardBytes {
			shards = append(shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, t)
		curBytes += n
		total += n
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}

	keep := map[string]bool{}
	if len(shards) == 1 {
		if err := writeFile(filepath.Join(dir, SingleFileName), tensors, nil); err != nil {
			return err
		}
		keep[SingleFileName] = true
	} else {
		weightMap := map[string]string{}
		for i, s := range shards {
			name := ShardName(i+1, len(shards))
			if err := writeFile(filepath.Join(dir, name), s, nil); err != nil {
				return err
			}
			keep[name] = true
			for _, t := range s {
				weightMap[t.Name] = name
			}
		}
		idx, err := json.MarshalIndent(map[string]any{
			"metadata":   map[string]any{"total_size": total},
			"weight_map": weightMap,
		}, "", "  ")
		if err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
		idx = append(idx, '\n')
		if err := writeAtomic(filepath.Join(dir, IndexFileName), func(w io.Writer) error {
			_, err := w.Write(idx)
			return err
		}); err != nil {
			return err
		}
		keep[IndexFileName] = true
	}
	return removeStale(dir, keep)
}

// removeStale deletes model weight files in dir that the latest save did not
// write, and only those: names matching the single-file, index or shard
// patterns.
func removeStale(dir string, keep map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	var stale []string
	for _, e := range ents {
		n := e.Name()
		if keep[n] || e.IsDir() {
			continue
		}
		if n == SingleFileName || n == IndexFileName || shardPattern.MatchString(n) {
			stale = append(stale, n)
		}
	}
	sort.Strings(stale)
	// The index goes first: without it, stale shards are never read.
	sort.SliceStable(stale, func(i, j int) bool { return stale[i] == IndexFileName && stale[j] != IndexFileName })
	for _, n := range stale {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("safetensors: removing stale %w", err)
		}
	}
	return nil
}
