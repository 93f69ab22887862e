package data

import (
	"math"
	"strconv"
)

// appendFloat32 writes v as JSON: shortest round-trip digits; JSON has no NaN or Inf, so those become
// null (a −Inf log-probability cannot occur for a finite model, but a file must stay valid).
func appendFloat32(b []byte, v float32) []byte {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, float64(v), 'g', -1, 32)
}
