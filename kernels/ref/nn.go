package ref

import "math"

// EmbeddingFwd: out[t,:] = table[ids[t],:], rows of length dim.
func EmbeddingFwd[T Float](out, table []T, ids []int32, dim int) {
	for t, id := range ids {
		copy(out[t*dim:(t+1)*dim], table[int(id)*dim:(int(id)+1)*dim])
	}
}

// EmbeddingBwd: dtable[ids[t],:] += dout[t,:], summed per id in float64 then added once.
func EmbeddingBwd[T Float](dtable, dout []T, ids []int32, dim int) {
	acc := map[int32][]float64{}
	for t, id := range ids {
		s := acc[id]
		if s == nil {
			s = make([]float64, dim)
			acc[id] = s
		}
		for c := 0; c < dim; c++ {
			s[c] += float64(dout[t*dim+c])
		}
	}
	for id, s := range acc {
		for c := 0; c < dim; c++ {
			dtable[int(id)*dim+c] += T(s[c])
		}
	}
}

// RMSNormFwd: y[r,:] = x[r,:]·rstd[r]·w, rstd[r] = 1/sqrt(mean(x[r,:]²) + eps); rstd may be nil.
func RMSNormFwd[T Float](y, rstd, x, w []T, eps float64) {
	dim := len(w)
	for r := 0; r < len(x)/dim; r++ {
		row := x[r*dim : (r+1)*dim]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		rs := 1 / math.Sqrt(ss/float64(dim)+eps)
		if rstd != nil {
			rstd[r] = T(rs)
		}
		for c, v := range row {
			y[r*dim+c] = T(float64(v) * rs * float64(w[c]))
		}
	}
}

// RMSNormBwd: dx += ∂L/∂x and dw += ∂L/∂w of L = Σ dy·y, from the saved rstd. With r = rstd:
// dx_k = r·(w_k·dy_k − x_k·r²·mean_j(dy_j·w_j·x_j)),  dw_j = Σ_rows dy_j·x_j·r.
func RMSNormBwd[T Float](dx, dw, x, w, rstd, dy []T) {
	dim := len(w)
	gw := make([]float64, dim)
	for r := 0; r < len(x)/dim; r++ {
		rs := float64(rstd[r])
		var m float64
		for c := 0; c < dim; c++ {
			m += float64(dy[r*dim+c]) * float64(w[c]) * float64(x[r*dim+c])
		}
		m /= float64(dim)
		for c := 0; c < dim; c++ {
			i := r*dim + c
			xv, g := float64(x[i]), float64(dy[i])
			dx[i] += T(rs * (float64(w[c])*g - xv*rs*rs*m))
			gw[c] += g * xv * rs
		}
	}
	for c := range gw {
		dw[c] += T(gw[c])
	}
}

// RoPEAngle is Hugging Face's rotary angle: pos·invFreq formed in float32 (`pos.float() @ inv_freq`).
func RoPEAngle(pos int32, invFreq float32) float32 { return float32(pos) * invFreq }

// RoPE: the half-split rotation of the first rotDim dims of every head of x [T, H, Dh] into y (bwd: the
// transpose, −sin); dims ≥ rotDim pass through. accumulate adds into y. y must not alias x.
func RoPE[T Float](y, x []T, pos []int32, invFreq []float32, heads, headDim, rotDim int, bwd, accumulate bool) {
	half := rotDim / 2
	sign := 1.0
	if bwd {
		sign = -1
	}
	for t, p := range pos {
		for h := 0; h < heads; h++ {
			base := (t*heads + h) * headDim
			out := make([]float64, headDim)
			for i := 0; i < half; i++ {
				a := float64(RoPEAngle(p, invFreq[i]))
				c, s := math.Cos(a), sign*math.Sin(a)
				x1, x2 := float64(x[base+i]), float64(x[base+half+i])
				out[i] = x1*c - x2*s
				out[half+i] = x2*c + x1*s
			}
			for i := rotDim; i < headDim; i++ {
				out[i] = float64(x[base+i])
			}
			for i, v := range out {
				if accumulate {
					y[base+i] += T(v)
				} else {
					y[base+i] = T(v)
				}
			}
		}
	}
}
