package model

import "github.com/serl-go/serl/kernels"

// One decoder layer, forward and backward side by side (llm.c style). T tokens, H hidden, Q = Hq·D,
// KV = KVH·D, I intermediate. Weights are Hugging Face [out, in], so every projection is y = x·Wᵀ.
//
//   ln1 = rmsnorm(x) · w_ln1                      [T,H]
//   q, k, v = ln1·Wqᵀ+bq, ln1·Wkᵀ+bk, ln1·Wvᵀ+bv  [T,Q], [T,KV], [T,KV]
//   q, k = rope(q), rope(k)
//   attn = causal_attention(q, k, v)              [T,Q]
//   xmid = x + attn·Woᵀ (+bo)                     [T,H]
//   ln2 = rmsnorm(xmid) · w_ln2
//   act = silu(ln2·Wgᵀ) ⊙ (ln2·Wuᵀ)               [T,I]
//   out = xmid + act·Wdᵀ                          [T,H]

func (m *Model) layerForward(a *Activations, l int) error {
	c, T := m.Config, a.tokens
	w, s := &m.w.layers[l], &a.layers[l]
	x, out := rows(a.xs[l], T), rows(a.xs[l+1], T)
	q, k, v := rows(s.q, T), rows(s.k, T), rows(s.v, T)
	attn, xmid, tmp := rows(s.attn, T), rows(s.xmid, T), rows(a.tmp, T)
	gate, up := rows(s.gate, T), rows(s.up, T)
	ln1, ln2, act := rows(a.dln, T), rows(a.dln, T), rows(a.dact, T) // not kept (layerActs): scratch
	pos := rows(a.pos, T)
	eps := float32(c.RMSNormEps)

	p := pass{d: m.dev}
	p.rmsnorm(ln1, rows(s.rstd1, T), x, w.ln1, eps)
	var u [loraNumGroups]kernels.Tensor // LoRA's x·Aᵀ per target group, kept for the backward pass
	if m.lora != nil {
		for g, t := range a.lu[l] {
			if t.Valid() {
				u[g] = rows(t, T)
			}
		}
	}
	m.loraDown(&p, l, qkvGroup, ln1, u[qkvGroup])
	p.linear(flat2(q), ln1, w.wq, w.bq)
	m.loraUp(&p, l, 0, flat2(q), u[qkvGroup])
	p.linear(flat2(k), ln1, w.wk, w.bk)
	m.loraUp(&p, l, 1, flat2(k), u[qkvGroup])
	p.linear(flat2(v), ln1, w.wv, w.bv)
	m.loraUp(&p, l, 2, flat2(v), u[qkvGroup])
	p.rope(q, q, pos, m.invFreq, c.HeadDim, false)
	p.rope(k, k, pos, m.invFreq, c.HeadDim, false)
	p.attention(kernels.Attention{Q: q, K: k, V: v, Out: attn, LSE: rows(s.lse, T),
		CuSeqlens: a.cu.MustSlice(0, a.seqs+1), MaxLen: a.maxLen, Scale: m.scale})
	m.loraDown(&p, l, oGroup, flat2(attn), u[oGroup])
	p.linear(tmp, flat2(attn), w.wo, w.bo)
	m.loraUp(&p, l, 3, tmp, u[oGroup])
	p.addRMSNorm(xmid, ln2, rows(s.rstd2, T), x, tmp, w.ln2, eps)
	m.loraDown(&p, l, gateUpGroup, ln2, u[gateUpGroup])
	p.linear(gate, ln2, w.wg, w.bg)
	m.loraUp(&p, l, 4, gate, u[gateUpGroup])
	p.linear(up, ln2, w.wu, w.bu)
	m.loraUp(&p, l, 5, up, u[gateUpGroup])
	p.swiglu(act, gate, up)
	m.loraDown(&p, l, downGroup, act, u[downGroup])
	p.linear(tmp, act, w.wd, w.bd)
	m.loraUp(&p, l, 6, tmp, u[downGroup])
	p.add(out, xmid, tmp)
	return p.err
}

// layerBackward takes a.dx = ∂L/∂out and leaves a.dx = ∂L/∂x, accumulating the layer's weight
// gradients into g, or with LoRA the adapters' into gl (g then holds no base weight gradients).
func (m *Model) layerBackward(a *Activations, g tensors, gl []loraLayer, l int) error {
	c, T := m.Config, a.tokens
	w, gw, s := &m.w.layers[l], &g.layers[l], &a.layers[l]
	dx, dln := rows(a.dx, T), rows(a.dln, T)
	q, k, v, attn := rows(s.q, T), rows(s.k, T), rows(s.v, T), rows(s.attn, T)
	dq, dk, dv, dattn := rows(a.dq, T), rows(a.dk, T), rows(a.dv, T), rows(a.dattn, T)
	dgate, dup, dact := rows(a.dgate, T), rows(a.dup, T), rows(a.dact, T)
	pos := rows(a.pos, T)
	eps := float32(c.RMSNormEps)

	p := pass{d: m.dev}
	// lora adds target group g's adapter terms, after its projections' backward (a no-op without adapters
	// or for a group with no adapted target); dys are the group's output gradients.
	lora := func(g int, dx, x kernels.Tensor, dys ...kernels.Tensor) {
		if gl != nil && a.lu[l][g].Valid() {
			m.loraBackward(&p, gl, l, g, dx, x, rows(a.lu[l][g], T), a.ldu, dys...)
		}
	}
	// MLP: out = xmid + act·Wdᵀ; the residual passes dx through unchanged. act and ln2, which the
	// forward did not keep (layerActs), are recomputed: act into dgate, whose own values swigluBackward
	// writes next, and ln2 into tmp.
	act := dgate
	p.swiglu(act, rows(s.gate, T), rows(s.up, T))
	p.linearBackward(dact, gw.wd, gw.bd, dx, act, w.wd, false)
	lora(downGroup, dact, act, dx)
	p.swigluBackward(dgate, dup, rows(s.gate, T), rows(s.up, T), dact) // writes both: no zeroing first
	ln2 := rows(a.tmp, T)
	p.rmsnorm(ln2, rows(s.rstd2, T), rows(s.xmid, T), w.ln2, eps)
	p.linearBackward(dln, gw.wg, gw.bg, dgate, ln2, w.wg, false)
	p.linearBackward(dln, gw.wu, gw.bu, dup, ln2, w.wu, true)
	lora(gateUpGroup, dln, ln2, dgate, dup)
	p.rmsnormBackward(dx, gw.ln2, rows(s.xmid, T), w.ln2, rows(s.rstd2, T), dln) // dx = ∂L/∂xmid
	// Attention: xmid = x + attn·Woᵀ.
	p.linearBackward(flat2(dattn), gw.wo, gw.bo, dx, flat2(attn), w.wo, false)
	lora(oGroup, flat2(dattn), flat2(attn), dx)
	p.zero(dq, dk, dv)
	p.attentionBackward(kernels.AttentionGrad{Q: q, K: k, V: v, Out: attn, LSE: rows(s.lse, T), DOut: dattn,
		DQ: dq, DK: dk, DV: dv, CuSeqlens: a.cu.MustSlice(0, a.seqs+1), MaxLen: a.maxLen, Scale: m.scale})
	p.rope(dq, dq, pos, m.invFreq, c.HeadDim, true)
	p.rope(dk, dk, pos, m.invFreq, c.HeadDim, true)
	ln1 := rows(a.tmp, T) // recomputed, as ln2 was
	p.rmsnorm(ln1, rows(s.rstd1, T), rows(a.xs[l], T), w.ln1, eps)
	p.linearBackward(dln, gw.wq, gw.bq, flat2(dq), ln1, w.wq, false)
	p.linearBackward(dln, gw.wk, gw.bk, flat2(dk), ln1, w.wk, true)
	p.linearBackward(dln, gw.wv, gw.bv, flat2(dv), ln1, w.wv, true)
	lora(qkvGroup, dln, ln1, flat2(dq), flat2(dk), flat2(dv))
	p.rmsnormBackward(dx, gw.ln1, rows(a.xs[l], T), w.ln1, rows(s.rstd1, T), dln) // dx = ∂L/∂x
	return p.err
}
