// Package safetensors reads and writes Hugging Face safetensors files and
// sharded model folders, so serl loads models from and saves checkpoints to
// the format transformers and vLLM use.
//
// File layout: an 8-byte little-endian header length N, N bytes of JSON
// header (padded with spaces), then the data region. The header maps each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
// relative to the data region, plus an optional "__metadata__" object of
// strings. Tensors must tile the data region exactly.
package safetensors

import (
	"fmt"
	"math"
	"math/bits"
)

// DType is a safetensors dtype name as it appears in the header.
type DType string

// The dtypes serl accepts. Float32 conversion supports F32, BF16 and F16;
// the others can be read as raw bytes.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size is the number of bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// Info describes one tensor of a file.
type Info struct {
	Name  string
	DType DType
	Shape []int
	// Offset is the tensor's byte offset from the start of File (not from the
	// data region), so callers can read it with their own I/O.
	Offset int64
	// Size is the tensor's length in bytes.
	Size int64
	// File is the path of the safetensors file holding the tensor.
	File string
}

// NumElements is the product of the shape (1 for a scalar).
func (i Info) NumElements() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// MaxHeaderSize bounds the JSON header, so a corrupt length cannot make
// Open allocate or scan gigabytes (the reference implementation uses 100 MB).
const MaxHeaderSize = 100 << 20

// numBytes returns the element count and byte size of a tensor, refusing
// negative dimensions and any product that overflows int64.
func numBytes(dt DType, shape []int) (numel, size int64, err error) {
	es := dt.Size()
	if es == 0 {
		return 0, 0, fmt.Errorf("unknown dtype %q", string(dt))
	}
	n := uint64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, 0, fmt.Errorf("shape[%d] is %d: dimensions must be non-negative", i, d)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, 0, fmt.Errorf("shape %v: element count overflows", shape)
		}
		n = lo
	}
	hi, lo := bits.Mul64(n, uint64(es))
	if hi != 0 || lo > math.MaxInt64 || n > math.MaxInt {
		return 0, 0, fmt.Errorf("shape %v of %s: byte size overflows", shape, dt)
	}
	return int64(n), int64(lo), nil
}
