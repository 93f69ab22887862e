package kernels

import "math"

// Whiten is masked whitening over a token batch (docs/SERL.md §5.2): μ = Σ m·x / Σ m and the biased
// σ² = Σ m·(x−μ)² / Σ m, in double; y = (x − μ)/sqrt(max(σ², eps)) where mask ≠ 0, else 0 (stdNorm
// false: y = x − μ). stats[0] = μ, stats[1] = σ². x, mask, y: F32 [n] (y may be x); stats: F32 [2].
// A mask with Σ m = 0 is an error: at the call on the CPU, at the next synchronisation (Sync, a
// download) on a GPU, which reads nothing back here (so whitening can be captured in a graph).
func (d *Device) Whiten(y, stats, x, mask Tensor, stdNorm bool, eps float32) error {
	return d.whiten(whitenFull, y, stats, x, mask, stdNorm, eps)
}

// GroupMode selects GroupBaseline's formula (docs/SERL.md §5.2); the constants are generated from serl.h:
//
//	GroupZScore  GRPO: (r − mean)/(std + eps), std Bessel-corrected; identical rewards give 0
//	GroupRLOO    RLOO: r − (Σ r − r)/(G − 1)
//	GroupCenter  r − mean
type GroupMode int32

// GroupBaseline applies mode to each group of groupSize consecutive rewards: r, y F32
// [nGroups·groupSize] (y may be r). Z-score and RLOO need groupSize ≥ 2.
func (d *Device) GroupBaseline(y, r Tensor, mode GroupMode, groupSize int, eps float32) error {
	const op = "group_baseline"
	n := r.Len()
	if err := firstErr(d.check(op, "r", r, F32, 0), d.check(op, "y", y, F32, n)); err != nil {
		return err
	}
	if groupSize < 1 || n%groupSize != 0 {
		return opErr(op, "r has %d rewards, not a multiple of groupSize %d", n, groupSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[groupBaselineArgs](d)
	a.mode, a.nGroups, a.groupSize, a.eps = int32(mode), int32(n/groupSize), int32(groupSize), eps
	a.r, a.y = r.addr(), y.addr()
	return d.run(opGroupBaseline, 6*float64(n), 8*float64(n))
}

// GradNorm writes the global L2 norm of g (accumulated in double) to norm[0] (F32 [1]) and, when
// maxNorm > 0 and the norm exceeds it, scales g in place by maxNorm/(norm + 1e-6), as PyTorch's
// clip_grad_norm_. A non-finite norm leaves g unscaled: the caller sees it and skips the step.
func (d *Device) GradNorm(norm, g Tensor, maxNorm float32) error {
	const op = "grad_norm"
	n := g.Len()
	if err := firstErr(d.check(op, "g", g, F32, 0), d.check(op, "norm", norm, F32, 1)); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[gradNormArgs](d)
	a.maxNorm, a.n, a.g, a.out = maxNorm, int64(n), g.addr(), norm.addr()
	return d.run(opGradNorm, 2*float64(n), 4*float64(n))
}

// AdamWParams are one AdamW step's scalars. Step counts from 1. GradScale multiplies g first (e.g. a
// loss-scale inverse); 0 means 1.
//
// The optional fields keep a bf16 training step on the device: GradNorm (F32 [1], as GradNorm wrote it
// with maxNorm 0) and MaxNorm > 0 clip the gradient by MaxNorm/(norm + 1e-6) when the norm is finite and
// above MaxNorm — the scale GradNorm would have applied, with no host round trip in between; PBF16
// (BF16, p's length) receives the updated weights rounded to bf16, the copy bf16 matrix products read.
type AdamWParams struct {
	Step                                          int
	LR, Beta1, Beta2, Eps, WeightDecay, GradScale float32

	GradNorm Tensor  // optional F32 [1]: the gradient's global norm, read on the device
	MaxNorm  float32 // with GradNorm: the clipping threshold (0: no clipping)
	PBF16    Tensor  // optional BF16 copy of p, written after the update
}

// AdamW is one step of PyTorch AdamW (decoupled weight decay) on p with gradient g and moments m, v,
// all F32 [n], updated in place:
//
//	g' = g·GradScale; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²
//	p −= lr·wd·p; p −= lr·(m/(1−β1^step)) / (sqrt(v/(1−β2^step)) + eps)
func (d *Device) AdamW(p, g, m, v Tensor, h AdamWParams) error {
	const op = "adamw"
	n := p.Len()
	if err := firstErr(d.check(op, "p", p, F32, 0), d.check(op, "g", g, F32, n), d.check(op, "m", m, F32, n),
		d.check(op, "v", v, F32, n), d.checkOpt(op, "GradNorm", h.GradNorm, F32, 1), d.checkOpt(op, "PBF16", h.PBF16, BF16, n)); err != nil {
		return err
	}
	if h.PBF16.Valid() && h.PBF16.Len() != n {
		return opErr(op, "PBF16 %s does not match p %s", h.PBF16, p)
	}
	if !(h.MaxNorm >= 0) || math.IsInf(float64(h.MaxNorm), 1) {
		return opErr(op, "MaxNorm = %g (want finite ≥ 0)", h.MaxNorm)
	}
	if h.Step < 1 || h.Step > math.MaxInt32 {
		return opErr(op, "step %d (want ≥ 1)", h.Step)
	}
	gs := h.GradScale
	if gs == 0 {
		gs = 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[adamwArgs](d)
	a.step, a.n = int32(h.Step), int64(n)
	a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, a.gradScale = h.LR, h.Beta1, h.Beta2, h.Eps, h.WeightDecay, gs
	a.p, a.g, a.m, a.v = p.addr(), g.addr(), m.addr(), v.addr()
	a.maxNorm, a.gradNorm, a.pBF16 = h.MaxNorm, h.GradNorm.addr(), h.PBF16.addr()
	by := 28 * float64(n)
	if h.PBF16.Valid() {
		by += 2 * float64(n)
	}
	return d.run(opAdamW, 16*float64(n), by)
}
