package model

import "github.com/serl-go/serl/kernels"

// pass runs a sequence of device ops and stops at the first error (the errWriter pattern), so the layer
// code reads as the math it implements and nothing runs on a half-computed state after a failure.
type pass struct {
	d   *kernels.Device
	err error
}

func (p *pass) matmul(mm kernels.MatMul) {
	if p.err == nil {
		p.err = p.d.MatMul(mm)
	}
}

func (p *pass) matmulStrided(mm kernels.StridedMatMul) {
	if p.err == nil {
		p.err = p.d.MatMulStrided(mm)
	}
}

// linear computes y = x·Wᵀ (+ b): x [T,in], W [out,in], y [T,out].
func (p *pass) linear(y, x, w, b kernels.Tensor) {
	p.matmul(kernels.MatMul{A: x, B: w, C: y, TransB: true, Alpha: 1})
	p.biasAdd(y, b)
}

// linearPair computes two projections of one input, y0 = x·W0ᵀ and y1 = x·W1ᵀ (k and v, gate and up),
// as one batched product: one launch where there were two. x [T,in]; w holds W0 and W1 [n,in]; y is a
// view from y0's start holding y1 [T,n] yStride elements further. Biases are the caller's.
func (p *pass) linearPair(y kernels.Tensor, yStride int, x kernels.Tensor, w weightPair, n int) {
	T, in := x.Dim(0), x.Dim(1)
	p.matmulStrided(kernels.StridedMatMul{A: x, B: w.w, C: y, TransB: true, M: T, N: n, K: in, LDA: in, LDB: in, LDC: n,
		Batch: 2, StrideB: w.stride, StrideC: yStride, Alpha: 1})
}

func (p *pass) biasAdd(y, b kernels.Tensor) {
	if b.Valid() && p.err == nil {
		p.err = p.d.BiasAdd(y, b)
	}
}

// linearBackward accumulates dW += dyᵀ·x (and db += Σ dy), and computes dx = dy·W — added to dx when
// accumulate is set: dy [T,out], x [T,in], W [out,in]. A frozen weight (dw not Valid) gets no gradient.
func (p *pass) linearBackward(dx, dw, db, dy, x, w kernels.Tensor, accumulate bool) {
	if dw.Valid() {
		p.matmul(kernels.MatMul{A: dy, B: x, C: dw, TransA: true, Alpha: 1, Beta: 1})
	}
	if db.Valid() && p.err == nil {
		p.err = p.d.BiasBwd(db, dy)
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	p.matmul(kernels.MatMul{A: dy, B: w, C: dx, Alpha: 1, Beta: beta})
}

func (p *pass) rmsnorm(y, rstd, x, w kernels.Tensor, eps float32) {
	if p.err == nil {
		p.err = p.d.RMSNormFwd(y, rstd, x, w, eps)
	}
}

// addRMSNorm is add then rmsnorm in one op: sum = x + res, y = rmsnorm(sum)·w (same bits).
func (p *pass) addRMSNorm(sum, y, rstd, x, res, w kernels.Tensor, eps float32) {
	if p.err == nil {
		p.err = p.d.AddRMSNormFwd(sum, y, rstd, x, res, w, eps)
	}
}

func (p *pass) rmsnormBackward(dx, dw, x, w, rstd, dy kernels.Tensor) {
	if p.err == nil {
		p.err = p.d.RMSNormBwd(dx, dw, x, w, rstd, dy)
	}
}

func (p *pass) rope(y, x, pos, invFreq kernels.Tensor, rotDim int, bwd bool) {
	if p.err == nil {
		p.err = p.d.RoPE(y, x, pos, invFreq, rotDim, bwd, false)
	}
}

func (p *pass) attention(at kernels.Attention) {
	if p.err == nil {
		p.err = p.d.AttentionFwd(at)
	}
}

func (p *pass) attentionBackward(ag kernels.AttentionGrad) {
	if p.err == nil {
		p.err = p.d.AttentionBwd(ag)
	}
}

func (p *pass) add(out, x, y kernels.Tensor) {
	if p.err == nil {
		p.err = p.d.Add(out, x, y, 1)
	}
}

func (p *pass) swiglu(out, gate, up kernels.Tensor) {
	if p.err == nil {
		p.err = p.d.SwiGLUFwd(out, gate, up)
	}
}

func (p *pass) swigluBackward(dgate, dup, gate, up, dout kernels.Tensor) {
	if p.err == nil {
		p.err = p.d.SwiGLUBwd(dgate, dup, gate, up, dout)
	}
}

func (p *pass) zero(ts ...kernels.Tensor) {
	for _, t := range ts {
		if p.err == nil {
			p.err = p.d.Zero(t)
		}
	}
}
