package ref

import "math"

// BF16Bits rounds a float32 to bfloat16 bits, to nearest even: the rule of serl_cast and of
// engine/dtype (u += 0x7FFF + lsb). A NaN becomes a quiet NaN that keeps its sign and top payload bits.
// (kernels may not import engine/, so the rule lives here too; the conformance suite pins them equal
// through the native cast.)
func BF16Bits(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7FFFFFFF > 0x7F800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7FFF + (u>>16)&1
	return uint16(u >> 16)
}

// BF16Float widens bfloat16 bits to float32 (exact).
func BF16Float(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// RoundBF16 is x rounded to the nearest bfloat16 value, as a float32.
func RoundBF16(x float32) float32 { return BF16Float(BF16Bits(x)) }

// RoundedBF16 returns a copy of x with every element rounded to bfloat16: the values a bf16 tensor
// holds after x is stored in it, which the reference then computes on in float64.
func RoundedBF16(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = RoundBF16(v)
	}
	return out
}
