package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"

	"github.com/serl-go/serl/engine/dtype"
)

// File is an open safetensors file. Its methods may be called from several
// goroutines at once, but not concurrently with Close.
type File struct {
	path      string
	data      []byte // the whole file, mapped read-only
	unmap     func([]byte) error
	dataStart int64
	entries   []entry // sorted by offset
	index     map[string]int
	meta      map[string]string
}

// Open maps the file at path and validates its header and layout. Every
// error names the file, and the tensor or field at fault.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s: not a regular file", path)
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("safetensors: %s: file is %d bytes, shorter than the 8-byte header length", path, size)
	}
	data, unmap, err := mapFile(fh, size)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f, err := parseFile(path, data)
	if err != nil {
		_ = unmap(data)
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

func parseFile(path string, data []byte) (*File, error) {
	size := int64(len(data))
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: %s: header length %d exceeds the %d-byte limit", path, n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("safetensors: %s: header length %d runs past the end of the file (%d bytes): truncated?", path, n, size)
	}
	dataStart := 8 + int64(n)
	entries, meta, err := parseHeader(data[8:dataStart], size-dataStart)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f := &File{path: path, data: data, dataStart: dataStart, entries: entries, meta: meta,
		index: make(map[string]int, len(entries))}
	for i, e := range entries {
		f.index[e.name] = i
	}
	return f, nil
}

// Path is the file's path as given to Open.
func (f *File) Path() string { return f.path }

// Names lists the tensors in the order of their data in the file.
func (f *File) Names() []string {
	out := make([]string, len(f.entries))
	for i, e := range f.entries {
		out[i] = e.name
	}
	return out
}

// Tensor describes the named tensor.
func (f *File) Tensor(name string) (Info, bool) {
	i, ok := f.index[name]
	if !ok {
		return Info{}, false
	}
	return f.info(&f.entries[i]), true
}

func (f *File) info(e *entry) Info {
	return Info{Name: e.name, DType: e.dtype, Shape: append([]int{}, e.shape...),
		Offset: f.dataStart + e.begin, Size: e.end - e.begin, File: f.path}
}

// Metadata returns a copy of the header's __metadata__ (empty if absent).
func (f *File) Metadata() map[string]string { return maps.Clone(f.meta) }

var errClosed = errors.New("file is closed")

// Bytes returns the tensor's raw little-endian bytes, sharing the file's
// read-only mapping: do not write to it, and do not use it after Close.
func (f *File) Bytes(name string) ([]byte, error) {
	if f.data == nil {
		return nil, fmt.Errorf("safetensors: %s: %w", f.path, errClosed)
	}
	i, ok := f.index[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", f.path, name)
	}
	e := &f.entries[i]
	lo, hi := f.dataStart+e.begin, f.dataStart+e.end
	return f.data[lo:hi:hi], nil
}

// Float32 converts the named F32, BF16 or F16 tensor into dst, which must
// have exactly as many elements as the tensor.
func (f *File) Float32(name string, dst []float32) error {
	b, err := f.Bytes(name)
	if err != nil {
		return err
	}
	e := &f.entries[f.index[name]]
	if len(dst) != e.numel {
		return fmt.Errorf("safetensors: %s: tensor %q has %d elements (%s%v), dst has %d", f.path, name, e.numel, e.dtype, e.shape, len(dst))
	}
	return decodeFloat32(f.path, e, dst, b)
}

func decodeFloat32(path string, e *entry, dst []float32, b []byte) error {
	switch e.dtype {
	case F32:
		dtype.DecodeF32(dst, b)
	case BF16:
		dtype.DecodeBF16(dst, b)
	case F16:
		dtype.DecodeF16(dst, b)
	default:
		return fmt.Errorf("safetensors: %s: tensor %q is %s; Float32 converts only F32, BF16 and F16", path, e.name, e.dtype)
	}
	return nil
}

// Close releases the mapping; slices from Bytes become invalid.
func (f *File) Close() error {
	if f.data == nil {
		return nil
	}
	data := f.data
	f.data = nil
	if err := f.unmap(data); err != nil {
		return fmt.Errorf("safetensors: %s: unmap: %w", f.path, err)
	}
	return nil
}
