package ref

import "math"

// Add: out = x + alpha·y.
func Add[T Float](out, x, y []T, alpha T) {
	for i := range out {
		out[i] = x[i] + alpha*y[i]
	}
}

// Scale: out = alpha·x.
func Scale[T Float](out, x []T, alpha T) {
	for i := range out {
		out[i] = alpha * x[i]
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// SwiGLUFwd: out = silu(gate)·up.
func SwiGLUFwd[T Float](out, gate, up []T) {
	for i := range out {
		g := float64(gate[i])
		out[i] = T(g * sigmoid(g) * float64(up[i]))
	}
}

// SwiGLUBwd: dgate = dout·up·silu'(gate), dup = dout·silu(gate) (written, not accumulated).
func SwiGLUBwd[T Float](dgate, dup, gate, up, dout []T) {
	for i := range dout {
		g, u, d := float64(gate[i]), float64(up[i]), float64(dout[i])
		s := sigmoid(g)
		dgate[i] = T(d * u * s * (1 + g*(1-s)))
		dup[i] = T(d * g * s)
	}
}

// BiasAdd: y[r,:] += bias.
func BiasAdd[T Float](y, bias []T) {
	dim := len(bias)
	for r := 0; r < len(y)/dim; r++ {
		for c := 0; c < dim; c++ {
			y[r*dim+c] += bias[c]
		}
	}
}

// BiasBwd: dbias += Σ_r dy[r,:].
func BiasBwd[T Float](dbias, dy []T) {
	dim := len(dbias)
	for c := 0; c < dim; c++ {
		var s float64
		for r := 0; r < len(dy)/dim; r++ {
			s += float64(dy[r*dim+c])
		}
		dbias[c] += T(s)
	}
}
