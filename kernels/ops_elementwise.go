package kernels

// The elementwise ops take F32 or BF16 for every tensor, each its own (they compute in float32 and round
// a BF16 output once); an output aliasing an input must have its dtype.

// Add computes out = x + alpha·y elementwise (the residual add with alpha = 1). out may alias x or y.
func (d *Device) Add(out, x, y Tensor, alpha float32) error {
	const op = "add"
	n := out.Len()
	if err := firstErr(d.checkFloat(op, "out", out, 0), d.checkFloat(op, "x", x, n), d.checkFloat(op, "y", y, n),
		checkAlias(op, "out", out, "x", x), checkAlias(op, "out", out, "y", y)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[addArgs](d)
	a.alpha, a.n, a.x, a.y, a.out = alpha, int64(n), x.addr(), y.addr(), out.addr()
	a.xDT, a.yDT, a.oDT = x.dtype, y.dtype, out.dtype
	return d.run(opAdd, 2*float64(n), float64(x.dtype.Size()+y.dtype.Size()+out.dtype.Size())*float64(n))
}

// Scale computes out = alpha·x. out may alias x.
func (d *Device) Scale(out, x Tensor, alpha float32) error {
	const op = "scale"
	n := out.Len()
	if err := firstErr(d.checkFloat(op, "out", out, 0), d.checkFloat(op, "x", x, n), checkAlias(op, "out", out, "x", x)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[scaleArgs](d)
	a.alpha, a.n, a.x, a.out = alpha, int64(n), x.addr(), out.addr()
	a.xDT, a.oDT = x.dtype, out.dtype
	return d.run(opScale, float64(n), float64(x.dtype.Size()+out.dtype.Size())*float64(n))
}

// Cast converts src into dst elementwise between F32 and BF16 (a copy when the dtypes are equal); both
// have the same length. F32 → BF16 rounds to nearest even, and a NaN stays a (quiet) NaN with its sign,
// as engine/dtype.BF16Bits. dst may be src itself only with the same dtype.
func (d *Device) Cast(dst, src Tensor) error {
	const op = "cast"
	if err := firstErr(d.checkFloat(op, "dst", dst, 0), d.checkFloat(op, "src", src, 0)); err != nil {
		return err
	}
	if src.Len() != dst.Len() {
		return opErr(op, "src %s and dst %s differ in length", src, dst)
	}
	if err := checkAlias(op, "dst", dst, "src", src); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[castArgs](d)
	a.srcDT, a.dstDT, a.n, a.src, a.dst = src.dtype, dst.dtype, int64(src.Len()), src.addr(), dst.addr()
	return d.run(opCast, 0, float64(src.Bytes()+dst.Bytes()))
}

// SwiGLUFwd computes out = silu(gate)·up elementwise.
func (d *Device) SwiGLUFwd(out, gate, up Tensor) error {
	const op = "swiglu_fwd"
	n := out.Len()
	if err := firstErr(d.checkFloat(op, "out", out, 0), d.checkFloat(op, "gate", gate, n), d.checkFloat(op, "up", up, n),
		checkAlias(op, "out", out, "gate", gate), checkAlias(op, "out", out, "up", up)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[swigluFwdArgs](d)
	a.n, a.gate, a.up, a.out = int64(n), gate.addr(), up.addr(), out.addr()
	a.gateDT, a.upDT, a.outDT = gate.dtype, up.dtype, out.dtype
	return d.run(opSwiGLUFwd, 6*float64(n), float64(gate.dtype.Size()+up.dtype.Size()+out.dtype.Size())*float64(n))
}

// SwiGLUBwd writes dgate = ∂/∂gate and dup = ∂/∂up of Σ dout·silu(gate)·up. Unlike the other
// gradients it does not accumulate: nothing else adds to them, and their old contents are not read.
func (d *Device) SwiGLUBwd(dgate, dup, gate, up, dout Tensor) error {
	const op = "swiglu_bwd"
	n := dout.Len()
	if err := firstErr(d.checkFloat(op, "dout", dout, 0), d.checkFloat(op, "gate", gate, n), d.checkFloat(op, "up", up, n),
		d.checkFloat(op, "dgate", dgate, n), d.checkFloat(op, "dup", dup, n)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[swigluBwdArgs](d)
	a.n, a.gate, a.up, a.dout, a.dgate, a.dup = int64(n), gate.addr(), up.addr(), dout.addr(), dgate.addr(), dup.addr()
	a.gateDT, a.upDT, a.doutDT, a.dgateDT, a.dupDT = gate.dtype, up.dtype, dout.dtype, dgate.dtype, dup.dtype
	by := gate.dtype.Size() + up.dtype.Size() + dout.dtype.Size() + dgate.dtype.Size() + dup.dtype.Size()
	return d.run(opSwiGLUBwd, 12*float64(n), float64(by)*float64(n))
}

// BiasAdd adds bias [dim] to every row of y [n, dim] in place.
func (d *Device) BiasAdd(y, bias Tensor) error {
	const op = "bias_add"
	dim := bias.Len()
	if err := firstErr(d.checkFloat(op, "y", y, 0), d.checkFloat(op, "bias", bias, 0)); err != nil {
		return err
	}
	if dim == 0 || y.Dim(-1) != dim {
		return opErr(op, "y %s does not end in the bias length %d", y, dim)
	}
	rows := y.Len() / dim
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[biasAddArgs](d)
	a.n, a.dim, a.bias, a.y = int32(rows), int32(dim), bias.addr(), y.addr()
	a.biasDT, a.yDT = bias.dtype, y.dtype
	return d.run(opBiasAdd, float64(y.Len()), 2*float64(y.dtype.Size())*float64(y.Len()))
}

// BiasBwd accumulates dbias += Σ over rows of dy [n, dim] (dy F32 or BF16; dbias F32).
func (d *Device) BiasBwd(dbias, dy Tensor) error {
	const op = "bias_bwd"
	dim := dbias.Len()
	if err := firstErr(d.checkFloat(op, "dy", dy, 0), d.check(op, "dbias", dbias, F32, 0)); err != nil {
		return err
	}
	if dim == 0 || dy.Dim(-1) != dim {
		return opErr(op, "dy %s does not end in the bias length %d", dy, dim)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[biasBwdArgs](d)
	a.n, a.dim, a.dy, a.dbias = int32(dy.Len()/dim), int32(dim), dy.addr(), dbias.addr()
	a.dyDT = dy.dtype
	return d.run(opBiasBwd, float64(dy.Len()), float64(dy.dtype.Size())*float64(dy.Len()))
}
