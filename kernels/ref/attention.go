package ref

import "math"

// Attention layouts (csrc/serl.h): q, out [T, h, dim]; k, v [T, kvh, dim]; lse [T, h]; sequence s is
// tokens [cu[s], cu[s+1]); query head hd uses kv head hd / (h/kvh).

// attnProbs returns, for query token i (of the sequence starting at s0) and head hd, the softmax
// weights over keys s0..i and the logsumexp of the scaled scores, in float64.
func attnProbs[T Float](q, k []T, s0, i, hd, h, kvh, dim int, scale float64) ([]float64, float64) {
	g := h / kvh
	p := make([]float64, i-s0+1)
	m := math.Inf(-1)
	for j := s0; j <= i; j++ {
		var s float64
		for d := 0; d < dim; d++ {
			s += float64(q[(i*h+hd)*dim+d]) * float64(k[(j*kvh+hd/g)*dim+d])
		}
		p[j-s0] = scale * s
		m = math.Max(m, p[j-s0])
	}
	var sum float64
	for j := range p {
		p[j] = math.Exp(p[j] - m)
		sum += p[j]
	}
	for j := range p {
		p[j] /= sum
	}
	return p, m + math.Log(sum)
}

// AttentionFwd: out[i,hd] = Σ_{j ≤ i in i's sequence} softmax_j(scale·q_i·k_j) v_j; lse (may be nil)
// is the logsumexp of the scaled scores.
func AttentionFwd[T Float](out, lse, q, k, v []T, cu []int32, h, kvh, dim int, scale float64) {
	g := h / kvh
	for s := 0; s+1 < len(cu); s++ {
		s0 := int(cu[s])
		for i := s0; i < int(cu[s+1]); i++ {
			for hd := 0; hd < h; hd++ {
				p, l := attnProbs(q, k, s0, i, hd, h, kvh, dim, scale)
				for d := 0; d < dim; d++ {
					var o float64
					for j := s0; j <= i; j++ {
						o += p[j-s0] * float64(v[(j*kvh+hd/g)*dim+d])
					}
					out[(i*h+hd)*dim+d] = T(o)
				}
				if lse != nil {
					lse[i*h+hd] = T(l)
				}
			}
		}
	}
}

// AttentionBwd: dq, dk, dv += the gradients of ⟨dout, AttentionFwd(q, k, v)⟩, recomputing the forward
// in float64: D_i = ⟨dout_i, out_i⟩, ds_ij = p_ij(dout_i·v_j − D_i), dq_i += scale Σ_j ds_ij k_j,
// dk_j += scale Σ_i ds_ij q_i, dv_j += Σ_i p_ij dout_i.
func AttentionBwd[T Float](dq, dk, dv, q, k, v, dout []T, cu []int32, h, kvh, dim int, scale float64) {
	attentionBwd(dq, dk, dv, q, k, v, nil, dout, cu, h, kvh, dim, scale)
}

// AttentionBwdFromOut is AttentionBwd with D_i = ⟨dout_i, out_i⟩ taken from a stored forward output, as
// the native op and FlashAttention compute it: with a bf16 out, the rounding of out enters the gradient,
// which is what the naive bf16 computation of the conformance rule does too.
func AttentionBwdFromOut[T Float](dq, dk, dv, q, k, v, out, dout []T, cu []int32, h, kvh, dim int, scale float64) {
	attentionBwd(dq, dk, dv, q, k, v, out, dout, cu, h, kvh, dim, scale)
}

func attentionBwd[T Float](dq, dk, dv, q, k, v, out, dout []T, cu []int32, h, kvh, dim int, scale float64) {
	g := h / kvh
	// float64 sums, added to the accumulators once at the end
	gq, gk, gv := make([]float64, len(dq)), make([]float64, len(dk)), make([]float64, len(dv))
	for s := 0; s+1 < len(cu); s++ {
		s0 := int(cu[s])
		for i := s0; i < int(cu[s+1]); i++ {
			for hd := 0; hd < h; hd++ {
				p, _ := attnProbs(q, k, s0, i, hd, h, kvh, dim, scale)
				qi, kh := (i*h+hd)*dim, hd/g
				var di float64
				for d := 0; d < dim; d++ {
					var o float64
					if out != nil {
						o = float64(out[qi+d])
					} else {
						for j := s0; j <= i; j++ {
							o += p[j-s0] * float64(v[(j*kvh+kh)*dim+d])
						}
					}
					di += o * float64(dout[qi+d])
				}
				for j := s0; j <= i; j++ {
					kj := (j*kvh + kh) * dim
					var dp float64
					for d := 0; d < dim; d++ {
						dp += float64(dout[qi+d]) * float64(v[kj+d])
					}
					ds := p[j-s0] * (dp - di)
					for d := 0; d < dim; d++ {
						gv[kj+d] += p[j-s0] * float64(dout[qi+d])
						gq[qi+d] += scale * ds * float64(k[kj+d])
						gk[kj+d] += scale * ds * float64(q[qi+d])
					}
				}
			}
		}
	}
	for i := range gq {
		dq[i] += T(gq[i])
	}
	for i := range gk {
		dk[i] += T(gk[i])
		dv[i] += T(gv[i])
	}
}

// KVAppend copies k[t], v[t] ([kvh, dim] each) to slot slots[t] of kCache, vCache
// ([n_blocks·block_size, kvh, dim] flattened); negative slots are skipped.
func KVAppend[T Float](kCache, vCache, k, v []T, slots []int32, kvh, dim int) {
	row := kvh * dim
	for t, s := range slots {
		if s < 0 {
			continue
		}
		copy(kCache[int(s)*row:(int(s)+1)*row], k[t*row:(t+1)*row])
		copy(vCache[int(s)*row:(int(s)+1)*row], v[t*row:(t+1)*row])
	}
}

// DecodeAttention: out[s,hd] = Σ_j softmax_j(scale·q_s·k_j) v_j over the seqLens[s] cached tokens of
// sequence s, token j at slot blockTable[s·maxBlocks + j/blockSize]·blockSize + j%blockSize.
func DecodeAttention[T Float](out, q, kCache, vCache []T, blockTable, seqLens []int32, maxBlocks, blockSize, h, kvh, dim int, scale float64) {
	g := h / kvh
	for s, n := range seqLens {
		for hd := 0; hd < h; hd++ {
			qi := (s*h + hd) * dim
			rows := make([]int, n)
			sc := make([]float64, n)
			m := math.Inf(-1)
			for j := range rows {
				slot := int(blockTable[s*maxBlocks+j/blockSize])*blockSize + j%blockSize
				rows[j] = (slot*kvh + hd/g) * dim
				for d := 0; d < dim; d++ {
					sc[j] += float64(q[qi+d]) * float64(kCache[rows[j]+d])
				}
				sc[j] *= scale
				m = math.Max(m, sc[j])
			}
			var sum float64
			for j := range sc {
				sc[j] = math.Exp(sc[j] - m)
				sum += sc[j]
			}
			for d := 0; d < dim; d++ {
				var o float64
				for j := range rows {
					o += sc[j] * float64(vCache[rows[j]+d])
				}
				out[qi+d] = T(o / sum)
			}
		}
	}
}

// MaxLen is the longest sequence of cu (the packed layout above): the bound attention's MaxLen wants.
func MaxLen(cu []int32) int {
	m := 0
	for s := 0; s+1 < len(cu); s++ {
		m = max(m, int(cu[s+1]-cu[s]))
	}
	return m
}
