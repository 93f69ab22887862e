package dtype

import (
	"math/rand/v2"
	"testing"
)

const benchN = 1 << 20

func benchInput() []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, benchN)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	return src
}

// Throughput is reported over the float32 side (4 bytes per element).

func BenchmarkF32ToBF16(b *testing.B) {
	src := benchInput()
	dst := make([]uint16, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		F32ToBF16(dst, src)
	}
}

func BenchmarkBF16ToF32(b *testing.B) {
	src := make([]uint16, benchN)
	F32ToBF16(src, benchInput())
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		BF16ToF32(dst, src)
	}
}

func BenchmarkDecodeBF16(b *testing.B) {
	src := make([]byte, 2*benchN)
	EncodeBF16(src, benchInput())
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		DecodeBF16(dst, src)
	}
}

func BenchmarkF32ToF16(b *testing.B) {
	src := benchInput()
	dst := make([]uint16, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		F32ToF16(dst, src)
	}
}

func BenchmarkF16ToF32(b *testing.B) {
	src := make([]uint16, benchN)
	F32ToF16(src, benchInput())
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		F16ToF32(dst, src)
	}
}

func BenchmarkDecodeF32(b *testing.B) {
	src := make([]byte, 4*benchN)
	EncodeF32(src, benchInput())
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		DecodeF32(dst, src)
	}
}

func BenchmarkDecodeF16(b *testing.B) {
	src := make([]byte, 2*benchN)
	EncodeF16(src, benchInput())
	dst := make([]float32, benchN)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		DecodeF16(dst, src)
	}
}
