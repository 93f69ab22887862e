package kernels

import "math"

// EmbeddingFwd gathers rows of the table: out[t,:] = table[ids[t],:].
//
//	out: [T, D]   table: [V, D]   ids: I32 [T]      (out and table F32 or BF16, converted on the way)
//
// An id outside [0, V) is an error naming its position; out is then left unwritten.
func (d *Device) EmbeddingFwd(out, table, ids Tensor) error {
	const op = "embedding_fwd"
	if err := firstErr(d.checkFloat(op, "out", out, 0), d.checkFloat(op, "table", table, 0), d.check(op, "ids", ids, I32, 0)); err != nil {
		return err
	}
	n, dim, vocab, err := embeddingShape(op, "out", out, table, ids)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[embeddingFwdArgs](d)
	a.nTokens, a.dim, a.vocab = int32(n), int32(dim), int32(vocab)
	a.ids, a.table, a.out = ids.addr(), table.addr(), out.addr()
	a.tableDT, a.outDT = table.dtype, out.dtype
	return d.run(opEmbeddingFwd, 0, float64(n)*(4+8*float64(dim)))
}

// EmbeddingBwd scatter-adds the output gradient into the table gradient: dtable[ids[t],:] += dout[t,:];
// repeated ids accumulate.
//
//	dtable: F32 [V, D]   dout: [T, D] (F32 or BF16)   ids: I32 [T]
func (d *Device) EmbeddingBwd(dtable, dout, ids Tensor) error {
	const op = "embedding_bwd"
	if err := firstErr(d.check(op, "dtable", dtable, F32, 0), d.checkFloat(op, "dout", dout, 0), d.check(op, "ids", ids, I32, 0)); err != nil {
		return err
	}
	n, dim, vocab, err := embeddingShape(op, "dout", dout, dtable, ids)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[embeddingBwdArgs](d)
	a.nTokens, a.dim, a.vocab = int32(n), int32(dim), int32(vocab)
	a.ids, a.dout, a.dtable = ids.addr(), dout.addr(), dtable.addr()
	a.doutDT = dout.dtype
	return d.run(opEmbeddingBwd, float64(n)*float64(dim), float64(n)*(4+12*float64(dim)))
}

// embeddingShape checks rows [T, D] against table [V, D] and ids [T] and returns T, D, V.
func embeddingShape(op, rowsName string, rows, table, ids Tensor) (n, dim, vocab int, err error) {
	if table.Rank() != 2 || table.Dim(1) == 0 {
		return 0, 0, 0, opErr(op, "table %s is not [V, D] with D > 0", table)
	}
	vocab, dim, n = table.Dim(0), table.Dim(1), ids.Len()
	if rows.Dim(-1) != dim || rows.Len() != n*dim {
		return 0, 0, 0, opErr(op, "%s %s is not [T, D] = [%d, %d] (T from ids %s, D from table %s)", rowsName, rows, n, dim, ids, table)
	}
	if vocab > maxI32 || dim > maxI32 || n > maxI32 {
		return 0, 0, 0, opErr(op, "table %s or ids %s exceeds the int32 range", table, ids)
	}
	return n, dim, vocab, nil
}

const maxI32 = 1<<31 - 1

// RMSNormFwd computes y = x·rstd·w per row, rstd = 1/sqrt(mean(x²) + eps) (Hugging Face Llama/Qwen2
// RMSNorm in float32), and saves rstd when it is given.
//
//	x, y: [N, D] (any rank ≥ 2: the rows are Len/D; F32 or BF16)   w: F32 [D]   rstd: F32 [N] or the zero Tensor
//
// y may alias x (with the same dtype).
func (d *Device) RMSNormFwd(y, rstd, x, w Tensor, eps float32) error {
	return d.rmsnormFwd(y, rstd, x, Tensor{}, Tensor{}, w, eps)
}

// AddRMSNormFwd is a residual add and the RMSNorm after it in one op, as a decoder layer has them
// (x + attn·Woᵀ, then the MLP's norm; a layer's output, then the next layer's norm): sum = x + res,
// rounded to sum's dtype, and y = RMSNormFwd of that sum — the bits of Add (alpha 1) then RMSNormFwd,
// with one pass over the rows where they took two.
//
//	x, res, sum, y: [N, D] (F32 or BF16 each)   w: F32 [D]   rstd: F32 [N] or the zero Tensor
//
// sum may alias x or res (with the same dtype; the residual stream updated in place); y is separate.
func (d *Device) AddRMSNormFwd(sum, y, rstd, x, res, w Tensor, eps float32) error {
	const op = "rmsnorm_fwd"
	if !sum.Valid() || !res.Valid() {
		return opErr(op, "a residual add needs res %s and sum %s", res, sum)
	}
	return d.rmsnormFwd(y, rstd, x, res, sum, w, eps)
}

func (d *Device) rmsnormFwd(y, rstd, x, res, sum, w Tensor, eps float32) error {
	const op = "rmsnorm_fwd"
	rows, dim, err := d.rmsnormShape(op, x, w)
	if err != nil {
		return err
	}
	if err := firstErr(d.checkFloat(op, "y", y, 0), d.checkOpt(op, "rstd", rstd, F32, rows), checkAlias(op, "y", y, "x", x)); err != nil {
		return err
	}
	if y.Len() != x.Len() {
		return opErr(op, "y %s does not match x %s", y, x)
	}
	if !(eps >= 0) || math.IsInf(float64(eps), 1) {
		return opErr(op, "eps = %g", eps)
	}
	if res.Valid() {
		n := x.Len()
		if err := firstErr(d.checkFloat(op, "res", res, n), d.checkFloat(op, "sum", sum, n),
			checkAlias(op, "sum", sum, "x", x), checkAlias(op, "sum", sum, "res", res)); err != nil {
			return err
		}
		for _, in := range []Tensor{x, res, sum} {
			if y.addr() == in.addr() {
				return opErr(op, "y %s aliases an input or sum of the residual add: it must be separate", y)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[rmsnormFwdArgs](d)
	a.n, a.dim, a.eps = int32(rows), int32(dim), eps
	a.x, a.w, a.y, a.rstd = x.addr(), w.addr(), y.addr(), rstd.addr()
	a.xDT, a.yDT = x.dtype, y.dtype
	a.res, a.sum = res.addr(), sum.addr()
	n := float64(x.Len())
	flops, bytes := 4*n, float64(x.dtype.Size()+y.dtype.Size())*n+4*float64(dim+rows)
	if res.Valid() {
		a.resDT, a.sumDT = res.dtype, sum.dtype
		flops, bytes = flops+n, bytes+float64(res.dtype.Size()+sum.dtype.Size())*n
	}
	return d.run(opRMSNormFwd, flops, bytes)
}

// RMSNormBwd accumulates dx += ∂L/∂x and dw += ∂L/∂w from dy and the rstd saved by RMSNormFwd.
//
//	x, dy, dx: [N, D] (F32 or BF16)   w, dw: F32 [D]   rstd: F32 [N]
func (d *Device) RMSNormBwd(dx, dw, x, w, rstd, dy Tensor) error {
	const op = "rmsnorm_bwd"
	rows, dim, err := d.rmsnormShape(op, x, w)
	if err != nil {
		return err
	}
	if err := firstErr(d.checkFloat(op, "dx", dx, 0), d.check(op, "dw", dw, F32, 0), d.check(op, "rstd", rstd, F32, rows),
		d.checkFloat(op, "dy", dy, 0)); err != nil {
		return err
	}
	if dy.Len() != x.Len() || dx.Len() != x.Len() || dw.Len() != dim {
		return opErr(op, "dx %s, dy %s, dw %s do not match x %s, w %s", dx, dy, dw, x, w)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[rmsnormBwdArgs](d)
	a.n, a.dim = int32(rows), int32(dim)
	a.x, a.w, a.rstd, a.dy, a.dx, a.dw = x.addr(), w.addr(), rstd.addr(), dy.addr(), dx.addr(), dw.addr()
	a.xDT, a.dyDT, a.dxDT = x.dtype, dy.dtype, dx.dtype
	n := float64(x.Len())
	return d.run(opRMSNormBwd, 10*n, 16*n+4*float64(rows+2*dim))
}

// rmsnormShape checks x [N, D] against w [D] and returns N and D.
func (d *Device) rmsnormShape(op string, x, w Tensor) (rows, dim int, err error) {
	if err := firstErr(d.checkFloat(op, "x", x, 0), d.check(op, "w", w, F32, 0)); err != nil {
		return 0, 0, err
	}
	dim = w.Len()
	if x.Rank() < 2 || dim == 0 || x.Dim(-1) != dim {
		return 0, 0, opErr(op, "x %s is not [N, D] with D = len(w) = %d", x, dim)
	}
	rows = x.Len() / dim
	if rows > maxI32 || dim > maxI32 {
		return 0, 0, opErr(op, "x %s exceeds the int32 range", x)
	}
	return rows, dim, nil
}

// RoPE applies rotary position embeddings in the Hugging Face half-split layout (rotate_half) to the
// first rotDim dimensions of every head; the rest pass through. For i < rotDim/2 and angle
// pos[t]·invFreq[i] (float32, as HF):
//
//	y[i] = x[i]·cos − x[i+rotDim/2]·sin,   y[i+rotDim/2] = x[i+rotDim/2]·cos + x[i]·sin
//
// bwd applies the transpose (−sin), the gradient of the forward; accumulate adds the result into y
// (y must then not alias x), otherwise y is overwritten and may be x itself.
//
//	x, y: [T, H, Dh] (F32 or BF16; in place: the same dtype)   pos: I32 [T] (≥ 0; packed sequences
//	restart at 0)   invFreq: F32 [rotDim/2]
func (d *Device) RoPE(y, x, pos, invFreq Tensor, rotDim int, bwd, accumulate bool) error {
	const op = "rope"
	if err := firstErr(d.checkFloat(op, "y", y, 0), d.checkFloat(op, "x", x, 0), checkAlias(op, "y", y, "x", x)); err != nil {
		return err
	}
	if x.Rank() != 3 {
		return opErr(op, "x %s is not [T, H, Dh]", x)
	}
	n, heads, hd := x.Dim(0), x.Dim(1), x.Dim(2)
	if y.Len() != x.Len() || y.Dim(-1) != hd {
		return opErr(op, "y %s does not match x %s", y, x)
	}
	if rotDim <= 0 || rotDim%2 != 0 || rotDim > hd {
		return opErr(op, "rotDim = %d must be even and in [2, head_dim = %d]", rotDim, hd)
	}
	if err := firstErr(d.check(op, "pos", pos, I32, n), d.check(op, "invFreq", invFreq, F32, rotDim/2)); err != nil {
		return err
	}
	if x.Len() > maxI32 {
		return opErr(op, "x %s exceeds the int32 range", x)
	}
	if accumulate && y.addr() == x.addr() {
		return opErr(op, "accumulate needs y distinct from x")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ropeArgs](d)
	a.nTokens, a.nHeads, a.headDim, a.rotDim = int32(n), int32(heads), int32(hd), int32(rotDim)
	a.bwd, a.accumulate = b2i(bwd), b2i(accumulate)
	a.pos, a.invFreq, a.x, a.y = pos.addr(), invFreq.addr(), x.addr(), y.addr()
	a.xDT, a.yDT = x.dtype, y.dtype
	e := float64(x.Len())
	by := float64(x.dtype.Size()+y.dtype.Size()) * e
	if accumulate {
		by += float64(y.dtype.Size()) * e
	}
	return d.run(opRoPE, 3*e, by+4*float64(n))
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
