package safetensors

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// benchFile writes a file of one tensor of n float32 values in dt.
func benchFile(b *testing.B, dt DType, n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(r.NormFloat64())
	}
	td, err := FromFloat32("w", dt, []int{n}, vals)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	if err := Write(path, []TensorData{td}, nil); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchRead measures Open + Float32 + Close of a whole file, reported over
// the float32 output; the file is in the page cache after the first round.
func benchRead(b *testing.B, dt DType) {
	const n = 25 << 20 // 100 MiB of float32
	path := benchFile(b, dt, n)
	dst := make([]float32, n)
	b.SetBytes(4 * n)
	b.ResetTimer()
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Float32("w", dst); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

func BenchmarkReadF32File(b *testing.B)  { benchRead(b, F32) }
func BenchmarkReadBF16File(b *testing.B) { benchRead(b, BF16) }

func BenchmarkWriteF32File(b *testing.B) {
	const n = 25 << 20
	td, err := FromFloat32("w", F32, []int{n}, make([]float32, n))
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "w.safetensors")
	b.SetBytes(4 * n)
	for b.Loop() {
		if err := Write(path, []TensorData{td}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
