package kernels

// The RL step's per-token ops (serl.h, "RL step"; docs/SERL.md §5.2–5.4). A step's per-token data stays
// on the device in two layouts: packed (a forward batch's positions; sequence i's action j is predicted
// at pos[i]+j) and action-packed (the step's actions back to back; sequence i's at actCu[i] ..
// actCu[i+1]). pos and actCu are I32, everything else F32.

// WhitenStats writes Whiten's statistics of x under mask without whitening: stats[0] = μ,
// stats[1] = σ² (biased), stats[2] = Σ mask (F32 [3]). Ranks of a data-parallel step combine theirs on
// the host and whiten with WhitenApply.
func (d *Device) WhitenStats(stats, x, mask Tensor) error {
	return d.whiten(whitenStats, Tensor{}, stats, x, mask, false, 0)
}

// WhitenApply is Whiten with given statistics: μ = stats[0], σ² = stats[1] (F32 [2], device memory),
// y = (x − μ)/sqrt(max(σ², eps)) where mask ≠ 0, else 0 (stdNorm false: y = x − μ).
func (d *Device) WhitenApply(y, stats, x, mask Tensor, stdNorm bool, eps float32) error {
	return d.whiten(whitenApply, y, stats, x, mask, stdNorm, eps)
}

// whiten runs serl_whiten in one of its modes (Whiten, WhitenStats, WhitenApply); y is unused, and stats
// holds three values, in the stats-only mode.
func (d *Device) whiten(mode int32, y, stats, x, mask Tensor, stdNorm bool, eps float32) error {
	const op = "whiten"
	n := x.Len()
	nStats, yErr := 2, error(nil)
	if mode == whitenStats {
		nStats = 3
	} else {
		yErr = d.check(op, "y", y, F32, n)
	}
	if err := firstErr(d.check(op, "x", x, F32, 1), d.check(op, "mask", mask, F32, n), yErr,
		d.check(op, "stats", stats, F32, nStats)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[whitenArgs](d)
	a.mode, a.stdNorm, a.n, a.eps = mode, lpFlag(stdNorm), int64(n), eps
	a.x, a.mask, a.stats = x.addr(), mask.addr(), stats.addr()
	if mode != whitenStats {
		a.y = y.addr()
	}
	// Work per element: the statistics read x and mask twice; applying reads x and mask and writes y.
	flops, bytes := 8.0, 24.0
	switch mode {
	case whitenStats:
		flops, bytes = 4, 16
	case whitenApply:
		flops, bytes = 3, 12
	}
	return d.run(opWhiten, flops*float64(n), bytes*float64(n))
}

// checkSeqs validates the sequence index arrays of nSeqs sequences: pos I32 [nSeqs] (when pos is
// wanted) and actCu I32 [nSeqs+1].
func (d *Device) checkSeqs(op string, nSeqs int, pos, actCu Tensor, wantPos bool) error {
	if nSeqs < 1 {
		return opErr(op, "%d sequences (want ≥ 1)", nSeqs)
	}
	if err := d.check(op, "actCu", actCu, I32, nSeqs+1); err != nil {
		return err
	}
	if wantPos {
		return d.check(op, "pos", pos, I32, nSeqs)
	}
	return nil
}

// GatherActions copies the action log-probs of nSeqs sequences out of a forward's packed per-token
// log-probs: dst[actCu[i]+j] = src[pos[i]+j] for j < actCu[i+1] − actCu[i].
func (d *Device) GatherActions(dst, src, pos, actCu Tensor, nSeqs int) error {
	const op = "gather_actions"
	if err := firstErr(d.checkSeqs(op, nSeqs, pos, actCu, true), d.check(op, "src", src, F32, 1),
		d.check(op, "dst", dst, F32, 1)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[gatherActionsArgs](d)
	a.nSeqs, a.nTokens, a.nActions = int32(nSeqs), int32(src.Len()), int32(dst.Len())
	a.pos, a.actCu, a.src, a.dst = pos.addr(), actCu.addr(), src.addr(), dst.addr()
	return d.run(opGatherActions, 0, 8*float64(dst.Len()))
}

// KLReturns writes the KL-shaped returns of nSeqs sequences (docs/SERL.md §5.2): per sequence i,
// s_u = −beta·(logpOld − logpRef)_u + reward[i]·[u last], ret_t = Σ_{u≥t} s_u, summed in double; and
// kl[i] = Σ_u (logpOld − logpRef)_u. logpOld, logpRef, ret: action-packed; reward, kl: [nSeqs].
func (d *Device) KLReturns(ret, kl, logpOld, logpRef, reward, actCu Tensor, nSeqs int, beta float32) error {
	const op = "kl_returns"
	n := logpOld.Len()
	if err := firstErr(d.checkSeqs(op, nSeqs, Tensor{}, actCu, false), d.check(op, "logpOld", logpOld, F32, 1),
		d.check(op, "logpRef", logpRef, F32, n), d.check(op, "ret", ret, F32, n),
		d.check(op, "reward", reward, F32, nSeqs), d.check(op, "kl", kl, F32, nSeqs)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[klReturnsArgs](d)
	a.nSeqs, a.nActions, a.beta = int32(nSeqs), int32(n), beta
	a.actCu, a.logpOld, a.logpRef, a.reward, a.ret, a.kl = actCu.addr(), logpOld.addr(), logpRef.addr(), reward.addr(), ret.addr(), kl.addr()
	return d.run(opKLReturns, 4*float64(n), 12*float64(n))
}

// PPO holds PPOCoef's coefficients: the clip ε, the KL coefficient β and whether the KL is grpo's k3
// loss term (else k1, logged only).
type PPO struct {
	ClipEps, KLCoef float32
	GRPO            bool
}

// PPOCoef writes the PPO-clip loss coefficients ∂L/∂logp of the packed tokens [t0, t1) of one forward
// batch of nSeqs sequences, out of stepSeqs in the optimizer step (serl.h gives the formula and the tie
// rules): coef[t0:t1] (0 off the actions; the rest of coef is left alone), from logp[t0:t1] alone. A
// token's coefficient depends on nothing else, so the model's head asks for each chunk's while the
// chunk's logits are in its buffer. When sums is a tensor, it also writes per sequence
// sums[3i..3i+2] = the whole sequence's loss (already divided by T·stepSeqs), clipped tokens and Σ KL
// term, whatever the range: t0 = t1 = 0 computes the sums alone. logp, coef: the forward's packed
// per-token values; logpOld, logpRef, adv: action-packed.
func (d *Device) PPOCoef(coef, sums, logp, logpOld, logpRef, adv, pos, actCu Tensor, nSeqs, stepSeqs, t0, t1 int, p PPO) error {
	const op = "ppo_coef"
	n, nt := logpOld.Len(), logp.Len()
	sumsErr := error(nil)
	if sums.Valid() {
		sumsErr = d.check(op, "sums", sums, F32, 3*nSeqs)
	}
	if err := firstErr(d.checkSeqs(op, nSeqs, pos, actCu, true), d.check(op, "logp", logp, F32, 1),
		d.check(op, "coef", coef, F32, nt), d.check(op, "logpOld", logpOld, F32, 1),
		d.check(op, "logpRef", logpRef, F32, n), d.check(op, "adv", adv, F32, n), sumsErr); err != nil {
		return err
	}
	if stepSeqs < nSeqs {
		return opErr(op, "%d sequences as a share of a step of %d", nSeqs, stepSeqs)
	}
	if t0 < 0 || t0 > t1 || t1 > nt {
		return opErr(op, "tokens [%d, %d) outside the batch's [0, %d)", t0, t1, nt)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[ppoCoefArgs](d)
	a.nSeqs, a.nTokens, a.nActions, a.stepSeqs = int32(nSeqs), int32(nt), int32(n), int32(stepSeqs)
	a.grpo, a.clipEps, a.klCoef = lpFlag(p.GRPO), p.ClipEps, p.KLCoef
	a.tokLo, a.tokHi = int32(t0), int32(t1)
	a.pos, a.actCu, a.logp, a.logpOld, a.logpRef = pos.addr(), actCu.addr(), logp.addr(), logpOld.addr(), logpRef.addr()
	a.adv, a.coef = adv.addr(), coef.addr()
	visited := t1 - t0 // tokens the op computes: the range, or every action for the sums
	if sums.Valid() {
		a.sums, visited = sums.addr(), n
	}
	return d.run(opPPOCoef, 30*float64(visited), 20*float64(visited))
}
