//go:build !linux

package safetensors

import (
	"fmt"
	"io"
	"math"
	"os"
)

// mapFile reads the whole file where serl does not use mmap; the API is the
// same, only the memory is the heap's.
func mapFile(f *os.File, size int64) ([]byte, func([]byte) error, error) {
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to read", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return data, func([]byte) error { return nil }, nil
}
