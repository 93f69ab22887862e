package kernels

// Add computes out = x + alpha·y elementwise (the residual add with alpha = 1). out may alias x or y.
func (d *Device) Add(out, x, y Tensor, alpha float32) error {
	const op = "add"
	n := out.Len()
	if err := firstErr(d.check(op, "out", out, F32, 0), d.check(op, "x", x, F32, n), d.check(op, "y", y, F32, n)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[addArgs](d)
	a.alpha, a.n, a.x, a.y, a.out = alpha, int64(n), x.addr(), y.addr(), out.addr()
	return d.run(opAdd, 2*float64(n), 12*float64(n))
}

// Scale computes out = alpha·x. out may alias x.
func (d *Device) Scale(out, x Tensor, alpha float32) error {
	const op = "scale"
	n := out.Len()
	if err := firstErr(d.check(op, "out", out, F32, 0), d.check(op, "x", x, F32, n)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[scaleArgs](d)
	a.alpha, a.n, a.x, a.out = alpha, int64(n), x.addr(), out.addr()
	return d.run(opScale, float64(n), 8*float64(n))
}

// SwiGLUFwd computes out = silu(gate)·up elementwise.
func (d *Device) SwiGLUFwd(out, gate, up Tensor) error {
	const op = "swiglu_fwd"
	n := out.Len()
	if err := firstErr(d.check(op, "out", out, F32, 0), d.check(op, "gate", gate, F32, n), d.check(op, "up", up, F32, n)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[swigluFwdArgs](d)
	a.n, a.gate, a.up, a.out = int64(n), gate.addr(), up.addr(), out.addr()
	return d.run(opSwiGLUFwd, 6*float64(n), 12*float64(n))
}

// SwiGLUBwd accumulates dgate += ∂/∂gate and dup += ∂/∂up of Σ dout·silu(gate)·up.
func (d *Device) SwiGLUBwd(dgate, dup, gate, up, dout Tensor) error {
	const op = "swiglu_bwd"
	n := dout.Len()
	if err := firstErr(d.check(op, "dout", dout, F32, 0), d.check(op, "gate", gate, F32, n), d.check(op, "up", up, F32, n),
		d.check(op, "dgate", dgate, F32, n), d.check(op, "dup", dup, F32, n)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[swigluBwdArgs](d)
	a.n, a.gate, a.up, a.dout, a.dgate, a.dup = int64(n), gate.addr(), up.addr(), dout.addr(), dgate.addr(), dup.addr()
	return d.run(opSwiGLUBwd, 12*float64(n), 28*float64(n))
}

// BiasAdd adds bias [dim] to every row of y [n, dim] in place.
func (d *Device) BiasAdd(y, bias Tensor) error {
	const op = "bias_add"
	dim := bias.Len()
	if err := firstErr(d.check(op, "y", y, F32, 0), d.check(op, "bias", bias, F32, 0)); err != nil {
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
	return d.run(opBiasAdd, float64(y.Len()), 8*float64(y.Len()))
}

// BiasBwd accumulates dbias += Σ over rows of dy [n, dim].
func (d *Device) BiasBwd(dbias, dy Tensor) error {
	const op = "bias_bwd"
	dim := dbias.Len()
	if err := firstErr(d.check(op, "dy", dy, F32, 0), d.check(op, "dbias", dbias, F32, 0)); err != nil {
		return err
	}
	if dim == 0 || dy.Dim(-1) != dim {
		return opErr(op, "dy %s does not end in the bias length %d", dy, dim)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[biasBwdArgs](d)
	a.n, a.dim, a.dy, a.dbias = int32(dy.Len()/dim), int32(dim), dy.addr(), dbias.addr()
	return d.run(opBiasBwd, float64(dy.Len()), 4*float64(dy.Len()))
}
