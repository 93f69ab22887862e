// Package dtype converts between float32 and the 16-bit float formats that
// model weights are stored in (bfloat16 and IEEE binary16), bit-exactly as
// PyTorch does, so a checkpoint written by serl reads back in transformers with
// the same bits that torch would have produced.
package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// littleEndian allows F32 bytes to be moved with one memmove; viewing a
// []float32 as bytes is valid at any alignment, unlike the reverse.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func f32AsBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// BF16Bits rounds f to bfloat16 with round-to-nearest-even, exactly as
// PyTorch's c10::round_to_nearest_even: every NaN becomes the canonical quiet
// NaN 0x7FC0 (sign dropped), overflow rounds to ±inf.
func BF16Bits(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7FFFFFFF > 0x7F800000 {
		return 0x7FC0
	}
	// Adding 0x7FFF plus the lowest kept bit rounds ties to even; a carry out
	// of the mantissa bumps the exponent, which is the correct rounding.
	u += 0x7FFF + (u>>16)&1
	return uint16(u >> 16)
}

// BF16ToFloat32 widens a bfloat16 value; it is exact (bf16 is the top half of
// a float32), NaN payloads included.
func BF16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F16Bits rounds f to IEEE binary16 with round-to-nearest-even, producing
// subnormals where the value is below 2^-14 and ±inf above the largest finite
// half (65504; values from 65520 up round to inf). A NaN stays a NaN with its
// sign and the top 10 payload bits kept and the quiet bit set, as the x86
// F16C and ARM conversions (and so numpy and torch on those CPUs) do.
func F16Bits(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	exp := int(u>>23) & 0xFF
	mant := u & 0x7FFFFF

	if exp == 0xFF {
		if mant == 0 {
			return sign | 0x7C00
		}
		return sign | 0x7E00 | uint16(mant>>13)
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1F {
		return sign | 0x7C00
	}
	if e <= 0 {
		// Half subnormal (or zero). Below 2^-25 everything rounds to zero;
		// exactly 2^-25 is a tie that goes to the even value 0.
		if e < -10 {
			return sign
		}
		m := mant | 0x800000 // implicit leading one
		shift := uint(14 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++ // may carry into the smallest normal (0x0400): still correct
		}
		return sign | uint16(h)
	}
	// Branch-free ties-to-even (the bf16 trick, at bit 13): a data-dependent
	// branch here mispredicts half the time on real weights. A carry out of
	// the mantissa adds one to the exponent, up to 0x7C00 = inf: correct.
	r := mant + 0xFFF + (mant>>13)&1
	return sign | uint16(uint32(e)<<10+r>>13)
}

// F16ToFloat32 widens an IEEE binary16 value; it is exact, and a NaN keeps its
// sign and payload (shifted into the float32 mantissa), as numpy does.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F:
		return math.Float32frombits(sign | 0x7F800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: normalise, since every half subnormal is a normal float32.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3FF)<<13)
}

// f16Table holds every binary16 value widened, so F16ToF32 over large slices
// is a lookup instead of a branchy decode.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = F16ToFloat32(uint16(i))
	}
	return &t
}()

func checkLen(op string, dst, src int) {
	if dst != src {
		panic(fmt.Sprintf("dtype.%s: len(dst)=%d != len(src)=%d", op, dst, src))
	}
}

// F32ToBF16 rounds src into dst; the lengths must be equal (a mismatch is a
// programming error and panics).
func F32ToBF16(dst []uint16, src []float32) {
	checkLen("F32ToBF16", len(dst), len(src))
	for i, f := range src {
		dst[i] = BF16Bits(f)
	}
}

// BF16ToF32 widens src into dst; the lengths must be equal.
func BF16ToF32(dst []float32, src []uint16) {
	checkLen("BF16ToF32", len(dst), len(src))
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// F32ToF16 rounds src into dst; the lengths must be equal.
func F32ToF16(dst []uint16, src []float32) {
	checkLen("F32ToF16", len(dst), len(src))
	for i, f := range src {
		dst[i] = F16Bits(f)
	}
}

// F16ToF32 widens src into dst; the lengths must be equal.
func F16ToF32(dst []float32, src []uint16) {
	checkLen("F16ToF32", len(dst), len(src))
	t := f16Table
	for i, h := range src {
		dst[i] = t[h]
	}
}

// The byte-level variants below work on little-endian storage (the layout of
// safetensors and of torch on every CPU serl runs on) and do not depend on the
// alignment of src or dst.

// DecodeF32 reads len(dst) little-endian float32 values from src, which must
// be 4·len(dst) bytes.
func DecodeF32(dst []float32, src []byte) {
	checkLen("DecodeF32", 4*len(dst), len(src))
	if littleEndian {
		copy(f32AsBytes(dst), src)
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// DecodeBF16 widens len(dst) little-endian bfloat16 values from src, which
// must be 2·len(dst) bytes.
func DecodeBF16(dst []float32, src []byte) {
	checkLen("DecodeBF16", 2*len(dst), len(src))
	// Four values per 8-byte load: this is the hot path of loading a bf16
	// checkpoint into float32.
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		v := binary.LittleEndian.Uint64(src[2*i:])
		d := dst[i : i+4 : i+4]
		d[0] = math.Float32frombits(uint32(v) << 16)
		d[1] = math.Float32frombits(uint32(v>>16) << 16)
		d[2] = math.Float32frombits(uint32(v>>32) << 16)
		d[3] = math.Float32frombits(uint32(v>>48) << 16)
	}
	for ; i < len(dst); i++ {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// DecodeF16 widens len(dst) little-endian binary16 values from src, which
// must be 2·len(dst) bytes.
func DecodeF16(dst []float32, src []byte) {
	checkLen("DecodeF16", 2*len(dst), len(src))
	t := f16Table
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		v := binary.LittleEndian.Uint64(src[2*i:])
		d := dst[i : i+4 : i+4]
		d[0] = t[uint16(v)]
		d[1] = t[uint16(v>>16)]
		d[2] = t[uint16(v>>32)]
		d[3] = t[uint16(v>>48)]
	}
	for ; i < len(dst); i++ {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// EncodeF32 writes src as little-endian float32 into dst (4·len(src) bytes).
func EncodeF32(dst []byte, src []float32) {
	checkLen("EncodeF32", len(dst), 4*len(src))
	if littleEndian {
		copy(dst, f32AsBytes(src))
		return
	}
	for i, f := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
	}
}

// EncodeBF16 rounds src to little-endian bfloat16 into dst (2·len(src) bytes).
func EncodeBF16(dst []byte, src []float32) {
	checkLen("EncodeBF16", len(dst), 2*len(src))
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], BF16Bits(f))
	}
}

// EncodeF16 rounds src to little-endian binary16 into dst (2·len(src) bytes).
func EncodeF16(dst []byte, src []float32) {
	checkLen("EncodeF16", len(dst), 2*len(src))
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F16Bits(f))
	}
}
