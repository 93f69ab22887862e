package kernels

// LogProbFwd computes, for each row t of logits [n, vocab] with z = logits·invTemp,
//
//	logp[t] = z[targets[t]] − logsumexp(z)    logp: F32 [n]
//	entropy[t] = −Σ p log p                   entropy: F32 [n], optional (zero Tensor)
//	lse[t] = logsumexp(z)                     lse: F32 [n], optional; LogProbBwd needs it
//
// logits: F32 or BF16 [n, vocab]; targets: I32 [n] in [0, vocab); with ignoreNegative a negative target gives logp 0 (and a zero
// gradient in LogProbBwd). logp is optional too, but at least one output must be given.
func (d *Device) LogProbFwd(logp, entropy, lse, logits, targets Tensor, invTemp float32, ignoreNegative bool) error {
	return d.logProbFwd(logp, entropy, lse, logits, targets, invTemp, ignoreNegative, logits.Dim(-1))
}

// logProbFwd is LogProbFwd over the first vocab columns of logits [n, ld] (ld ≥ vocab).
func (d *Device) logProbFwd(logp, entropy, lse, logits, targets Tensor, invTemp float32, ignoreNegative bool, vocab int) error {
	const op = "logprob_fwd"
	if err := d.checkFloat(op, "logits", logits, 0); err != nil {
		return err
	}
	if logits.Rank() != 2 {
		return opErr(op, "logits %s: want rank 2 [n, vocab]", logits)
	}
	n, ld := logits.Dim(0), logits.Dim(1)
	if vocab < 1 || vocab > ld {
		return opErr(op, "vocab %d outside [1, %d]", vocab, ld)
	}
	if err := firstErr(d.check(op, "targets", targets, I32, n), d.checkOpt(op, "logp", logp, F32, n),
		d.checkOpt(op, "entropy", entropy, F32, n), d.checkOpt(op, "lse", lse, F32, n)); err != nil {
		return err
	}
	if !logp.Valid() && !entropy.Valid() && !lse.Valid() {
		return opErr(op, "no output: logp, entropy and lse are all absent")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[logprobFwdArgs](d)
	a.n, a.vocab, a.ld, a.invTemp = int32(n), int32(vocab), int32(ld), invTemp
	a.ignoreNegative = lpFlag(ignoreNegative)
	a.logits, a.targets, a.logp, a.entropy, a.lse = logits.addr(), targets.addr(), logp.addr(), entropy.addr(), lse.addr()
	a.logitsDT = logits.dtype
	nv := float64(n) * float64(vocab)
	return d.run(opLogProbFwd, 8*nv, float64(logits.dtype.Size())*nv+16*float64(n))
}

// LogProbBwd writes dlogits[t,:] = coef[t]·invTemp·(onehot(targets[t]) − softmax(z)), the gradient of
// Σ_t coef[t]·logp[t], from the forward's lse. It OVERWRITES dlogits (it does not accumulate), and
// dlogits may be logits itself, so the gradient can replace the logits in place.
// logits, dlogits: [n, vocab], F32 or BF16 each (the same when aliased); targets: I32 [n]; lse, coef: F32 [n].
func (d *Device) LogProbBwd(dlogits, logits, targets, lse, coef Tensor, invTemp float32, ignoreNegative bool) error {
	return d.logProbBwd(dlogits, logits, targets, lse, coef, invTemp, ignoreNegative, logits.Dim(-1))
}

func (d *Device) logProbBwd(dlogits, logits, targets, lse, coef Tensor, invTemp float32, ignoreNegative bool, vocab int) error {
	const op = "logprob_bwd"
	if err := firstErr(d.checkFloat(op, "logits", logits, 0), d.checkFloat(op, "dlogits", dlogits, 0),
		checkAlias(op, "dlogits", dlogits, "logits", logits)); err != nil {
		return err
	}
	if logits.Rank() != 2 || dlogits.Rank() != 2 || logits.Dim(0) != dlogits.Dim(0) || logits.Dim(1) != dlogits.Dim(1) {
		return opErr(op, "logits %s and dlogits %s: want the same rank-2 shape [n, vocab]", logits, dlogits)
	}
	n, ld := logits.Dim(0), logits.Dim(1)
	if vocab < 1 || vocab > ld {
		return opErr(op, "vocab %d outside [1, %d]", vocab, ld)
	}
	if err := firstErr(d.check(op, "targets", targets, I32, n), d.check(op, "lse", lse, F32, n),
		d.check(op, "coef", coef, F32, n)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[logprobBwdArgs](d)
	a.n, a.vocab, a.ld, a.invTemp = int32(n), int32(vocab), int32(ld), invTemp
	a.ignoreNegative = lpFlag(ignoreNegative)
	a.logits, a.targets, a.lse, a.coef, a.dlogits = logits.addr(), targets.addr(), lse.addr(), coef.addr(), dlogits.addr()
	a.logitsDT, a.dlogitsDT = logits.dtype, dlogits.dtype
	nv := float64(n) * float64(vocab)
	return d.run(opLogProbBwd, 6*nv, float64(logits.dtype.Size()+dlogits.dtype.Size())*nv+16*float64(n))
}

func lpFlag(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
