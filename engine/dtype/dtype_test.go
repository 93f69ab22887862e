package dtype

import (
	"bufio"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func f32(u uint32) float32 { return math.Float32frombits(u) }

func isNaN32(f float32) bool { return f != f }

// Every bf16 value must survive bf16 → f32 → bf16 unchanged, except NaNs,
// which PyTorch canonicalises to 0x7FC0.
func TestBF16RoundTripAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToFloat32(h)
		require.Equal(t, uint32(h)<<16, math.Float32bits(f), "widen %#04x", h)
		back := BF16Bits(f)
		if h&0x7FFF > 0x7F80 {
			require.True(t, isNaN32(f), "%#04x should widen to NaN", h)
			require.Equal(t, uint16(0x7FC0), back, "NaN %#04x", h)
			continue
		}
		require.Equal(t, h, back, "round trip %#04x", h)
	}
}

// Every f16 value must survive f16 → f32 → f16: finite values and quiet NaNs
// bit for bit, signalling NaNs as a NaN of the same sign.
func TestF16RoundTripAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToFloat32(h)
		back := F16Bits(f)
		exp, mant := h>>10&0x1F, h&0x3FF
		if exp == 0x1F && mant != 0 {
			require.True(t, isNaN32(f), "%#04x should widen to NaN", h)
			require.Equal(t, h|0x200, back, "NaN %#04x keeps sign and payload, quieted", h)
			continue
		}
		require.Equal(t, h, back, "round trip %#04x (%g)", h, f)
		// The widened value must be the exact value of the half.
		var want float64
		switch {
		case exp == 0x1F:
			want = math.Inf(1)
		case exp == 0:
			want = float64(mant) * math.Pow(2, -24)
		default:
			want = (1 + float64(mant)/1024) * math.Pow(2, float64(exp)-15)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		require.Equal(t, want, float64(f), "value of %#04x", h)
		require.Equal(t, h&0x8000 != 0, math.Signbit(float64(f)), "sign of %#04x", h)
	}
}

func TestBF16TiesToEven(t *testing.T) {
	// 1.0 is 0x3F800000. Halfway to the next bf16 (0x3F81) is 0x3F808000.
	assert.Equal(t, uint16(0x3F80), BF16Bits(f32(0x3F808000)), "tie, even below")
	assert.Equal(t, uint16(0x3F81), BF16Bits(f32(0x3F808001)), "just above tie")
	assert.Equal(t, uint16(0x3F80), BF16Bits(f32(0x3F807FFF)), "just below tie")
	// 0x3F81 is odd: its tie rounds up to the even 0x3F82.
	assert.Equal(t, uint16(0x3F82), BF16Bits(f32(0x3F818000)), "tie, even above")
	assert.Equal(t, uint16(0x3F81), BF16Bits(f32(0x3F817FFF)))
	// Negative values round symmetrically.
	assert.Equal(t, uint16(0xBF80), BF16Bits(f32(0xBF808000)))
	assert.Equal(t, uint16(0xBF82), BF16Bits(f32(0xBF818000)))
	// Truncation (what some Go packages do) would give 0x3F81 here.
	assert.Equal(t, uint16(0x3F82), BF16Bits(f32(0x3F81C000)))
}

func TestBF16Edges(t *testing.T) {
	assert.Equal(t, uint16(0x7F7F), BF16Bits(f32(0x7F7F0000)), "max finite bf16")
	assert.Equal(t, uint16(0x7F7F), BF16Bits(f32(0x7F7F7FFF)), "just below overflow tie")
	assert.Equal(t, uint16(0x7F80), BF16Bits(f32(0x7F7F8000)), "tie at max rounds to even = inf")
	assert.Equal(t, uint16(0x7F80), BF16Bits(math.MaxFloat32), "max float32 overflows to inf")
	assert.Equal(t, uint16(0xFF80), BF16Bits(-math.MaxFloat32))
	assert.Equal(t, uint16(0x7F80), BF16Bits(float32(math.Inf(1))))
	assert.Equal(t, uint16(0xFF80), BF16Bits(float32(math.Inf(-1))))
	assert.Equal(t, uint16(0x8000), BF16Bits(f32(0x80000000)), "-0")
	// float32 subnormals: bf16 shares float32's exponent range, so they round
	// like any other value; the smallest ones round to ±0 or the smallest bf16.
	assert.Equal(t, uint16(0x0000), BF16Bits(f32(0x00000001)))
	assert.Equal(t, uint16(0x0001), BF16Bits(f32(0x00008001)))
	assert.Equal(t, uint16(0x0000), BF16Bits(f32(0x00008000)), "tie to even 0")
	assert.Equal(t, uint16(0x0080), BF16Bits(f32(0x007FFFFF)), "largest subnormal rounds to smallest normal")
	// All NaNs, whatever sign or payload, become PyTorch's 0x7FC0.
	for _, u := range []uint32{0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FBFFFFF} {
		assert.Equal(t, uint16(0x7FC0), BF16Bits(f32(u)), "NaN %#08x", u)
	}
}

func TestF16TiesToEven(t *testing.T) {
	// 1.0 = 0x3F800000; one half ulp is 2^-11 = float32 mantissa bit 12.
	assert.Equal(t, uint16(0x3C00), F16Bits(f32(0x3F801000)), "tie, even below")
	assert.Equal(t, uint16(0x3C01), F16Bits(f32(0x3F801001)), "just above tie")
	assert.Equal(t, uint16(0x3C00), F16Bits(f32(0x3F800FFF)), "just below tie")
	assert.Equal(t, uint16(0x3C02), F16Bits(f32(0x3F803000)), "tie, even above")
	assert.Equal(t, uint16(0xBC02), F16Bits(f32(0xBF803000)))
	// Carry out of the mantissa: 2 - 2^-11 (a tie above 0x3FFF, odd) → 2.0.
	assert.Equal(t, uint16(0x4000), F16Bits(f32(0x3FFFF000)))
}

func TestF16Edges(t *testing.T) {
	assert.Equal(t, uint16(0x7BFF), F16Bits(65504), "max finite")
	assert.Equal(t, uint16(0x7BFF), F16Bits(65519.996), "below overflow tie")
	assert.Equal(t, uint16(0x7C00), F16Bits(65520), "tie at max rounds to inf")
	assert.Equal(t, uint16(0xFC00), F16Bits(-65520))
	assert.Equal(t, uint16(0x7C00), F16Bits(1e10))
	assert.Equal(t, uint16(0x7C00), F16Bits(math.MaxFloat32))
	assert.Equal(t, uint16(0x7C00), F16Bits(float32(math.Inf(1))))
	assert.Equal(t, uint16(0xFC00), F16Bits(float32(math.Inf(-1))))

	p := func(e float64) float32 { return float32(math.Pow(2, e)) }
	assert.Equal(t, uint16(0x0400), F16Bits(p(-14)), "smallest normal")
	assert.Equal(t, uint16(0x03FF), F16Bits(p(-14)-p(-24)), "largest subnormal")
	assert.Equal(t, uint16(0x0400), F16Bits(p(-14)-p(-25)), "tie between largest subnormal and smallest normal → even (normal)")
	assert.Equal(t, uint16(0x0001), F16Bits(p(-24)), "smallest subnormal")
	assert.Equal(t, uint16(0x0000), F16Bits(p(-25)), "tie at half the smallest subnormal → 0")
	assert.Equal(t, uint16(0x8000), F16Bits(-p(-25)))
	assert.Equal(t, uint16(0x0001), F16Bits(math.Nextafter32(p(-25), 1)), "just above the tie")
	assert.Equal(t, uint16(0x0000), F16Bits(math.Nextafter32(p(-25), 0)))
	assert.Equal(t, uint16(0x0002), F16Bits(3*p(-25)), "tie 1.5 → even 2")
	assert.Equal(t, uint16(0x0002), F16Bits(5*p(-25)), "tie 2.5 → even 2")
	assert.Equal(t, uint16(0x0000), F16Bits(f32(1)), "float32 subnormal → 0")
	assert.Equal(t, uint16(0x8000), F16Bits(f32(0x80000001)), "-tiny → -0")

	assert.Equal(t, uint16(0x7E00), F16Bits(f32(0x7FC00000)), "canonical NaN")
	assert.Equal(t, uint16(0xFE00), F16Bits(f32(0xFFC00000)), "NaN sign kept")
	assert.Equal(t, uint16(0x7E00), F16Bits(f32(0x7F800001)), "signalling NaN with low payload stays NaN, quieted")
	assert.Equal(t, uint16(0x7FFF), F16Bits(f32(0x7FFFFFFF)), "payload top bits kept")
}

// TestGolden checks every row of testdata/golden.txt, which
// testdata/gen_golden.py computed by exact rational rounding and
// cross-checked for f16 against CPython's own half-precision packing.
func TestGolden(t *testing.T) {
	fh, err := os.Open("testdata/golden.txt")
	require.NoError(t, err)
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		fields := strings.Fields(line)
		require.Len(t, fields, 3, line)
		u, err1 := strconv.ParseUint(fields[0], 16, 32)
		h, err2 := strconv.ParseUint(fields[1], 16, 16)
		b, err3 := strconv.ParseUint(fields[2], 16, 16)
		require.NoError(t, err1)
		require.NoError(t, err2)
		require.NoError(t, err3)
		f := f32(uint32(u))
		require.Equal(t, uint16(h), F16Bits(f), "f16 of %#08x (%g)", u, f)
		require.Equal(t, uint16(b), BF16Bits(f), "bf16 of %#08x (%g)", u, f)
		n++
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 5000)
}

// The byte and slice converters must agree with the scalar ones.
func TestSliceAndByteConverters(t *testing.T) {
	src := []float32{0, -0.0, 1, -1.5, 3.14159, 65504, 70000, 1e-8, float32(math.NaN()), float32(math.Inf(-1)), 0.1}

	bf := make([]uint16, len(src))
	F32ToBF16(bf, src)
	hf := make([]uint16, len(src))
	F32ToF16(hf, src)
	bfBytes := make([]byte, 2*len(src))
	EncodeBF16(bfBytes, src)
	hfBytes := make([]byte, 2*len(src))
	EncodeF16(hfBytes, src)
	f32Bytes := make([]byte, 4*len(src))
	EncodeF32(f32Bytes, src)
	for i, f := range src {
		require.Equal(t, BF16Bits(f), bf[i])
		require.Equal(t, F16Bits(f), hf[i])
		require.Equal(t, BF16Bits(f), uint16(bfBytes[2*i])|uint16(bfBytes[2*i+1])<<8, "little-endian bf16")
		require.Equal(t, F16Bits(f), uint16(hfBytes[2*i])|uint16(hfBytes[2*i+1])<<8, "little-endian f16")
	}

	bits := func(fs []float32) []uint32 {
		out := make([]uint32, len(fs))
		for i, f := range fs {
			out[i] = math.Float32bits(f)
		}
		return out
	}
	got := make([]float32, len(src))
	DecodeF32(got, f32Bytes)
	require.Equal(t, bits(src), bits(got), "F32 bytes round trip bit-exactly")

	want := make([]float32, len(src))
	for i := range src {
		want[i] = BF16ToFloat32(bf[i])
	}
	BF16ToF32(got, bf)
	require.Equal(t, bits(want), bits(got))
	DecodeBF16(got, bfBytes)
	require.Equal(t, bits(want), bits(got))

	for i := range src {
		want[i] = F16ToFloat32(hf[i])
	}
	F16ToF32(got, hf)
	require.Equal(t, bits(want), bits(got))
	DecodeF16(got, hfBytes)
	require.Equal(t, bits(want), bits(got))
}

func TestLengthMismatchPanics(t *testing.T) {
	assert.Panics(t, func() { F32ToBF16(make([]uint16, 2), make([]float32, 3)) })
	assert.Panics(t, func() { F16ToF32(make([]float32, 3), make([]uint16, 2)) })
	assert.Panics(t, func() { DecodeBF16(make([]float32, 2), make([]byte, 3)) })
	assert.Panics(t, func() { EncodeF32(make([]byte, 7), make([]float32, 2)) })
}

// Tensors after an odd-sized one sit at odd offsets in a file mapping.
func TestDecodeUnaligned(t *testing.T) {
	src := []float32{1.5, -2, 3e-40, float32(math.Inf(1))}
	buf := make([]byte, 1+4*len(src))
	EncodeF32(buf[1:], src)
	got := make([]float32, len(src))
	DecodeF32(got, buf[1:])
	assert.Equal(t, src, got)
	EncodeBF16(buf[1:1+2*len(src)], src)
	DecodeBF16(got, buf[1:1+2*len(src)])
	assert.Equal(t, float32(1.5), got[0])
	assert.Equal(t, float32(-2), got[1])
}
