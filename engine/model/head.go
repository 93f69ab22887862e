package model

import "github.com/serl-go/serl/kernels"

// The output head, forward and backward side by side:
//
//   xf = rmsnorm(x_L) · w_norm          [T,H]
//   logits = xf·W_headᵀ                 [T,V]  (W_head = the embedding when tied)
//   logp[t] = log softmax(logits[t])[target[t]]
//
// The logits are never held whole: with a vocabulary of 151,936, [T, V] of a packed batch would take
// GiBs. The head works in chunks of C tokens (fused linear cross-entropy, as Liger does): forward keeps
// only logp and the log-sum-exp per token. A training pass that knows each token's ∂L/∂logp once its
// logp is computed (Grad: the RL step's PPO coefficient depends on nothing else) turns each chunk's
// logits into dlogits while they are in the buffer, and accumulates dW_head and the chunk's rows of
// d(xf) there, from the last chunk to the first as the backward would: one head matmul per chunk, no
// more memory, the same bits. A plain Forward then Backward, whose coefficients may depend on the
// whole batch's logp, recomputes each chunk's logits in the backward (one more head matmul per chunk,
// 2·T·H·V FLOPs, about 9% of a Qwen2.5-0.5B step), except the last chunk forward computed, which is
// still in the buffer.

// headChunkBytes bounds one chunk of logits. 256 MiB keeps the logits a small part of any real model's
// arena while the chunk's matmul still has hundreds of rows (883 tokens of Qwen2.5's vocabulary in bf16,
// 441 in f32), enough to keep a GEMM efficient; a model with a small vocabulary gets one chunk, as
// before. Tests lower it to force several chunks.
var headChunkBytes = 256 << 20

// headChunk is the tokens per logits chunk for batches of up to T tokens in activation dtype act: the
// arena's logits buffer is [headChunk, V], and the memory plan counts it from the same slot list.
func (c Config) headChunk(T int, act kernels.DType) int {
	return max(1, min(T, headChunkBytes/max(c.Vocab*act.Size(), 1)))
}

// With ForwardFrom's selection the head runs on the rows that predict the wanted tokens only:
//
//   xh = xf[rows]                       [R,H]  (R = HeadRows; rows: each sequence's run, copied)
//   logits = xh·W_headᵀ, logp as above  [R,V]
//   ∂L/∂xf = scatter(∂L/∂xh), 0 elsewhere
//
// An RL step's loss reads only the response's log-probs: for its prompts the head's products (one
// forward, two backward), log-softmax and their scratch traffic are all spared, and the final norm stays
// whole (cheap). The rows' values are those the whole batch's head gives them, within the matrix
// products' blocking.

// headIn is the head's input rows [HeadRows, H]: xf, or the selected rows' copy in tmp.
func (a *Activations) headIn() kernels.Tensor {
	if a.segs == nil {
		return rows(a.xf, a.tokens)
	}
	return rows(a.tmp, a.hr)
}

// headDIn is where the chunks' ∂L/∂(head input) go [HeadRows, H]: dln, or rows of dx that headBackward
// scatters into dln.
func (a *Activations) headDIn() kernels.Tensor {
	if a.segs == nil {
		return rows(a.dln, a.tokens)
	}
	return rows(a.dx, a.hr)
}

// copySegs copies each selected run of rows: into the head rows (gather) or back (scatter).
func (p *pass) copySegs(a *Activations, full, head kernels.Tensor, scatter bool) {
	for _, s := range a.segs {
		if s.n == 0 || p.err != nil {
			continue
		}
		f, h := full.MustSlice(s.from, s.from+s.n), head.MustSlice(s.to, s.to+s.n)
		if scatter {
			p.err = p.d.Copy(f, h)
		} else {
			p.err = p.d.Copy(h, f)
		}
	}
}

// headForward computes logp for every head row, chunk by chunk. With coef (a Grad), each chunk then gets
// its coefficients and its backward at once (headChunkBackward), the chunks taken from the last.
func (m *Model) headForward(a *Activations, g tensors, coef CoefFunc) error {
	R, T, C := a.hr, a.tokens, a.logits.Dim(0)
	xf := rows(a.xf, T)
	p := pass{d: m.dev}
	p.rmsnorm(xf, rows(a.rstdf, T), rows(a.xs[len(m.w.layers)], T), m.w.norm, float32(m.Config.RMSNormEps))
	if a.segs != nil {
		p.copySegs(a, xf, a.headIn(), false)
	}
	t0, step := 0, C
	if coef != nil {
		t0, step = (R-1)/C*C, -C
	}
	for ; t0 >= 0 && t0 < R && p.err == nil; t0 += step {
		t1 := min(t0+C, R)
		logits := m.headChunkLogits(&p, a, t0, t1)
		if p.err == nil {
			p.err = m.dev.LogProbFwd(a.logp.MustSlice(t0, t1), kernels.Tensor{}, a.lseLogits.MustSlice(t0, t1), logits,
				a.targets.MustSlice(t0, t1), 1, true)
		}
		if coef != nil && p.err == nil {
			p.err = coef(t0, t1)
			m.headChunkBackward(&p, a, g, t0, t1)
		}
	}
	a.logitsHeld = p.err == nil && coef == nil
	a.headDone = p.err == nil && coef != nil
	return p.err
}

// headChunkLogits computes the logits of the chunk [t0, t1) of head rows into the buffer, (their rows of
// headIn)·W_headᵀ, and returns them.
func (m *Model) headChunkLogits(p *pass, a *Activations, t0, t1 int) kernels.Tensor {
	logits := rows(a.logits, t1-t0)
	p.matmul(kernels.MatMul{A: a.headIn().MustSlice(t0, t1), B: m.w.head, C: logits, TransB: true, Alpha: 1})
	return logits
}

// headChunkBackward turns the logits of the chunk [t0, t1) into dlogits in place from a.coef, writes the
// chunk's rows of ∂L/∂(head input) (headDIn) and accumulates dW_head (beta 1; absent under LoRA, whose
// head is frozen).
func (m *Model) headChunkBackward(p *pass, a *Activations, g tensors, t0, t1 int) {
	logits := rows(a.logits, t1-t0)
	if p.err == nil {
		p.err = m.dev.LogProbBwd(logits, logits, a.targets.MustSlice(t0, t1), a.lseLogits.MustSlice(t0, t1),
			a.coef.MustSlice(t0, t1), 1, true)
	}
	p.linearBackward(a.headDIn().MustSlice(t0, t1), g.head, kernels.Tensor{}, logits, a.headIn().MustSlice(t0, t1),
		m.w.head, false)
}

// headBackward turns coef = ∂L/∂logp into a.dx = ∂L/∂x_L. After a Grad's forward only the final norm is
// left; otherwise chunk by chunk from the last (whose logits forward left in the buffer), recomputing
// each chunk's logits.
func (m *Model) headBackward(a *Activations, g tensors) error {
	R, T, C := a.hr, a.tokens, a.logits.Dim(0)
	p := pass{d: m.dev}
	if !a.headDone && R > 0 {
		held := a.logitsHeld
		for t0 := (R - 1) / C * C; t0 >= 0 && p.err == nil; t0 -= C {
			t1 := min(t0+C, R)
			if !held {
				m.headChunkLogits(&p, a, t0, t1)
			}
			held = false
			m.headChunkBackward(&p, a, g, t0, t1)
		}
	}
	a.logitsHeld, a.headDone = false, false
	if a.segs != nil { // ∂L/∂xf: the head rows' into their rows, zero elsewhere
		p.zero(rows(a.dln, T))
		p.copySegs(a, rows(a.dln, T), a.headDIn(), true)
	}
	dx := rows(a.dx, T)
	p.zero(dx)
	p.rmsnormBackward(dx, g.norm, rows(a.xs[len(m.w.layers)], T), m.w.norm, rows(a.rstdf, T), rows(a.dln, T))
	return p.err
}
