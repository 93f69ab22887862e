package model

import "github.com/serl-go/serl/kernels"

// The output head, forward and backward side by side:
//
//   xf = rmsnorm(x_L) · w_norm          [T,H]
//   logits = xf·W_headᵀ                 [T,V]  (W_head = the embedding when tied)
//   logp[t] = log softmax(logits[t])[target[t]]

func (m *Model) headForward(a *Activations) error {
	T := a.tokens
	xf, logits := rows(a.xf, T), rows(a.logits, T)
	p := pass{d: m.dev}
	p.rmsnorm(xf, rows(a.rstdf, T), rows(a.xs[len(m.w.layers)], T), m.w.norm, float32(m.Config.RMSNormEps))
	p.matmul(kernels.MatMul{A: xf, B: m.w.head, C: logits, TransB: true, Alpha: 1})
	if p.err == nil {
		p.err = m.dev.LogProbFwd(rows(a.logp, T), kernels.Tensor{}, rows(a.lseLogits, T), logits, rows(a.targets, T), 1, true)
	}
	return p.err
}

// headBackward turns coef = ∂L/∂logp into a.dx = ∂L/∂x_L (dlogits overwrite the logits in place).
func (m *Model) headBackward(a *Activations, g tensors) error {
	T := a.tokens
	logits, xf, dln, dx := rows(a.logits, T), rows(a.xf, T), rows(a.dln, T), rows(a.dx, T)
	p := pass{d: m.dev}
	if err := m.dev.LogProbBwd(logits, logits, rows(a.targets, T), rows(a.lseLogits, T), rows(a.coef, T), 1, true); err != nil {
		return err
	}
	p.linearBackward(dln, g.head, kernels.Tensor{}, logits, xf, m.w.head, false)
	p.zero(dx)
	p.rmsnormBackward(dx, g.norm, rows(a.xs[len(m.w.layers)], T), m.w.norm, rows(a.rstdf, T), dln)
	return p.err
}
