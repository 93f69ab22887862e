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
// only logp and the log-sum-exp per token; backward recomputes each chunk's logits (one more head
// matmul per chunk, except the last chunk forward computed, which is still in the buffer) and turns them
// into dlogits in place. An arena with ArenaOptions.HoldLogits keeps every chunk's logits, each in a
// buffer of its own aligned as the one chunk's, and the backward recomputes none: memory for one head
// matmul a step.

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

// chunkLogits is the logits buffer of the chunk of tokens [t0, t1), [t1−t0, V].
func (a *Activations) chunkLogits(t0, t1 int) kernels.Tensor {
	if a.holdLogits {
		i := t0 / a.chunk
		return a.logits.MustSlice(i, i+1).MustReshape(a.logits.Dim(1)).MustSlice(0, (t1-t0)*a.vocab).MustReshape(t1-t0, a.vocab)
	}
	return rows(a.logits, t1-t0)
}

func (m *Model) headForward(a *Activations) error {
	T, C := a.tokens, a.chunk
	xf := rows(a.xf, T)
	p := pass{d: m.dev}
	a.logitsHeld = false
	p.rmsnorm(xf, rows(a.rstdf, T), rows(a.xs[len(m.w.layers)], T), m.w.norm, float32(m.Config.RMSNormEps))
	for t0 := 0; t0 < T && p.err == nil; t0 += C {
		t1 := min(t0+C, T)
		logits := a.chunkLogits(t0, t1)
		p.matmul(kernels.MatMul{A: xf.MustSlice(t0, t1), B: m.w.head, C: logits, TransB: true, Alpha: 1})
		if p.err == nil {
			p.err = m.dev.LogProbFwd(a.logp.MustSlice(t0, t1), kernels.Tensor{}, a.lseLogits.MustSlice(t0, t1), logits,
				a.targets.MustSlice(t0, t1), 1, true)
		}
	}
	a.logitsHeld = p.err == nil
	return p.err
}

// headBackward turns coef = ∂L/∂logp into a.dx = ∂L/∂x_L, chunk by chunk from the last (whose logits
// forward left in the buffer, as it did every chunk's with holdLogits), the dlogits overwriting each
// chunk's logits in place.
func (m *Model) headBackward(a *Activations, g tensors) error {
	T, C := a.tokens, a.chunk
	xf, dln, dx := rows(a.xf, T), rows(a.dln, T), rows(a.dx, T)
	p := pass{d: m.dev}
	held := a.logitsHeld
	a.logitsHeld = false
	for t0 := (T - 1) / C * C; t0 >= 0 && p.err == nil; t0 -= C {
		t1 := min(t0+C, T)
		logits, xc := a.chunkLogits(t0, t1), xf.MustSlice(t0, t1)
		if !held {
			p.matmul(kernels.MatMul{A: xc, B: m.w.head, C: logits, TransB: true, Alpha: 1})
		}
		held = held && a.holdLogits
		if p.err == nil {
			p.err = m.dev.LogProbBwd(logits, logits, a.targets.MustSlice(t0, t1), a.lseLogits.MustSlice(t0, t1),
				a.coef.MustSlice(t0, t1), 1, true)
		}
		// dW_head accumulates over the chunks (beta 1; absent under LoRA, whose head is frozen)
		p.linearBackward(dln.MustSlice(t0, t1), g.head, kernels.Tensor{}, logits, xc, m.w.head, false)
	}
	p.zero(dx)
	p.rmsnormBackward(dx, g.norm, rows(a.xs[len(m.w.layers)], T), m.w.norm, rows(a.rstdf, T), dln)
	return p.err
}
