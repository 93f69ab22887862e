package kernels

import (
	"fmt"
	"math"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

// The RL step's ops (F32 only: log-probs, returns and advantages are float32 under every precision).
//
// Tolerances: the CPU library computes what the reference does, in the same order in double, and
// matches it exactly (measured: 0 on every case here). CUDA's exp and division may differ from Go's by
// an ulp of a double, which can move a float32 result by one ulp: rlTol allows that there (not yet
// measured on a GPU).
func rlTol(h *harness) float64 {
	if h.d.Backend() == "cpu" {
		return 0
	}
	return 1e-7
}

func init() {
	register("whiten_modes", testWhitenModes)
	register("gather_actions", testGatherActions)
	register("kl_returns", testKLReturns)
	register("ppo_coef", testPPOCoef)
}

// rlBatch is a random packed batch: sequences of random prompt and response lengths back to back, and
// their actions back to back from actBase on.
type rlBatch struct {
	pos, actCu      []int32
	tokens, actions int
}

func (h *harness) rlBatch(nSeqs, actBase int) rlBatch {
	b := rlBatch{actCu: []int32{int32(actBase)}}
	for range nSeqs {
		prompt, resp := 1+h.rng.IntN(9), 1+h.rng.IntN(40)
		if h.rng.IntN(5) == 0 {
			resp = 1
		}
		b.pos = append(b.pos, int32(b.tokens+prompt-1))
		b.tokens += prompt + resp
		b.actCu = append(b.actCu, b.actCu[len(b.actCu)-1]+int32(resp))
	}
	b.actions = int(b.actCu[nSeqs])
	return b
}

// The STATS and APPLY modes of whiten: statistics as the reference's, whitening with given statistics
// as the reference's, and two halves combined by Chan's formula whitening exactly as one FULL call does.
func testWhitenModes(t *testing.T, h *harness) {
	for _, n := range append(awkward, 100_003) {
		x := h.randn(n, 2)
		mask := randMask(h, n)
		st := h.poisoned(3)
		require.NoError(t, h.d.WhitenStats(st, h.f32(x), h.f32(mask)))
		mu, v := ref.Whiten(make([]float32, n), x, mask, true, 1e-8)
		sm := 0.0
		for _, m := range mask {
			sm += float64(m)
		}
		what := fmt.Sprintf("whiten stats n=%d", n)
		requireClose(t, what, h.get(st), []float32{float32(mu), float32(v), float32(sm)}, rlTol(h))

		for _, stdNorm := range []bool{true, false} {
			given := []float32{float32(mu) + 0.25, float32(v) * 1.5}
			y := h.poisoned(n)
			require.NoError(t, h.d.WhitenApply(y, h.f32(given), h.f32(x), h.f32(mask), stdNorm, 1e-8))
			want := make([]float32, n)
			ref.WhitenApply(want, x, mask, float64(given[0]), float64(given[1]), stdNorm, 1e-8)
			requireClose(t, fmt.Sprintf("whiten apply n=%d std=%v", n, stdNorm), h.get(y), want, rlTol(h))
		}
		if n < 2 {
			continue
		}
		// two "ranks": each half's statistics, combined on the host, then applied to each half
		k := n / 2
		if mask[k] == 0 {
			mask[k] = 1 // both halves need weight
		}
		xt := h.f32(x)
		mt := h.f32(mask)
		s0, s1 := h.poisoned(3), h.poisoned(3)
		require.NoError(t, h.d.WhitenStats(s0, xt.MustSlice(0, k), mt.MustSlice(0, k)))
		require.NoError(t, h.d.WhitenStats(s1, xt.MustSlice(k, n), mt.MustSlice(k, n)))
		a, b := h.get(s0), h.get(s1)
		na, nb := float64(a[2]), float64(b[2])
		nt := na + nb
		delta := float64(b[0]) - float64(a[0])
		gmu := float64(a[0]) + delta*nb/nt
		gvar := (float64(a[1])*na + float64(b[1])*nb + delta*delta*na*nb/nt) / nt
		g := h.f32([]float32{float32(gmu), float32(gvar)})
		y := h.poisoned(n)
		require.NoError(t, h.d.WhitenApply(y.MustSlice(0, k), g, xt.MustSlice(0, k), mt.MustSlice(0, k), true, 1e-8))
		require.NoError(t, h.d.WhitenApply(y.MustSlice(k, n), g, xt.MustSlice(k, n), mt.MustSlice(k, n), true, 1e-8))
		full := h.poisoned(n)
		require.NoError(t, h.d.Whiten(full, h.poisoned(2), xt, mt, true, 1e-8))
		// the halves' statistics are rounded to float32 before they are combined: measured 1.05e-7
		requireClose(t, fmt.Sprintf("whiten in two halves n=%d", n), h.get(y), h.get(full), 4e-7)
	}
	requireOpError(t, "stats of a zero mask", h.d.WhitenStats(h.poisoned(3), h.f32([]float32{1, 2}), h.f32([]float32{0, 0})))
	requireOpError(t, "short stats", h.d.WhitenStats(h.poisoned(2), h.f32([]float32{1, 2}), h.f32([]float32{1, 1})))
}

func testGatherActions(t *testing.T, h *harness) {
	for _, nSeqs := range []int{1, 2, 7, 33} {
		b := h.rlBatch(nSeqs, 5)
		src := h.randn(b.tokens, 1)
		dst := h.poisoned(b.actions)
		require.NoError(t, h.d.GatherActions(dst.MustSlice(5, b.actions), h.f32(src), h.i32(b.pos), h.i32(shift(b.actCu, -5)), nSeqs))
		want := make([]float32, b.actions)
		ref.GatherActions(want, src, b.pos, b.actCu)
		got := h.get(dst)
		require.Equal(t, want[5:], got[5:], "gather %d sequences", nSeqs)
		for _, v := range got[:5] {
			require.True(t, math.IsNaN(float64(v)), "gather wrote outside its actions")
		}
	}
	requireOpError(t, "no sequences", h.d.GatherActions(h.poisoned(2), h.poisoned(2), h.i32([]int32{0}), h.i32([]int32{0, 1}), 0))
	requireOpError(t, "short actCu", h.d.GatherActions(h.poisoned(2), h.poisoned(2), h.i32([]int32{0}), h.i32([]int32{0}), 1))
	// Index contents: the CPU library refuses the call, CUDA reports them at the next sync with the same message.
	err := requireOpError(t, "positions past the batch", h.d.GatherActions(h.poisoned(4), h.poisoned(3), h.i32([]int32{1}), h.i32([]int32{0, 3}), 1))
	require.ErrorContains(t, err, "gather_actions: sequence 0: packed positions [1, 4) outside [0, 3)")
	err = requireOpError(t, "actions past the buffer", h.d.GatherActions(h.poisoned(2), h.poisoned(9), h.i32([]int32{1}), h.i32([]int32{0, 3}), 1))
	require.ErrorContains(t, err, "gather_actions: sequence 0: actions [0, 3) outside [0, 2)")
}

func shift(v []int32, by int32) []int32 {
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = x + by
	}
	return out
}

func testKLReturns(t *testing.T, h *harness) {
	for _, nSeqs := range []int{1, 3, 17, 200} {
		for _, beta := range []float32{0, 1e-3, 0.5} {
			b := h.rlBatch(nSeqs, 0)
			old, refLP := h.randn(b.actions, 1), h.randn(b.actions, 1)
			reward := h.randn(nSeqs, 3)
			ret, kl := h.poisoned(b.actions), h.poisoned(nSeqs)
			require.NoError(t, h.d.KLReturns(ret, kl, h.f32(old), h.f32(refLP), h.f32(reward), h.i32(b.actCu), nSeqs, beta))
			wantRet, wantKL := make([]float32, b.actions), make([]float32, nSeqs)
			ref.KLReturns(wantRet, wantKL, old, refLP, reward, b.actCu, float64(beta))
			what := fmt.Sprintf("kl_returns %d sequences β=%g", nSeqs, beta)
			requireClose(t, what, h.get(ret), wantRet, rlTol(h))
			requireClose(t, what+" kl", h.get(kl), wantKL, rlTol(h))
		}
	}
	requireOpError(t, "negative beta", h.d.KLReturns(h.poisoned(1), h.poisoned(1), h.f32([]float32{1}), h.f32([]float32{1}), h.f32([]float32{1}), h.i32([]int32{0, 1}), 1, -1))
	requireOpError(t, "short reward", h.d.KLReturns(h.poisoned(2), h.poisoned(2), h.f32([]float32{1, 1}), h.f32([]float32{1, 1}), h.f32([]float32{1}), h.i32([]int32{0, 1, 2}), 2, 0))
	err := requireOpError(t, "actions past the buffer", h.d.KLReturns(h.poisoned(2), h.poisoned(1), h.f32([]float32{1, 1}), h.f32([]float32{1, 1}), h.f32([]float32{1}), h.i32([]int32{0, 3}), 1, 0))
	require.ErrorContains(t, err, "kl_returns: sequence 0: actions [0, 3) outside [0, 2)")
}

func testPPOCoef(t *testing.T, h *harness) {
	for _, nSeqs := range []int{1, 4, 33, 150} {
		for _, p := range []PPO{{ClipEps: 0.2, KLCoef: 1e-3}, {ClipEps: 0.1, KLCoef: 0.3, GRPO: true}} {
			// a batch whose actions sit at offset 11 of the step's buffers, one of 2·nSeqs sequences
			b := h.rlBatch(nSeqs, 11)
			logp := h.randn(b.tokens, 0.5)
			n := b.actions
			old, refLP, adv := make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range n {
				// ratios inside, on and outside the clip range, advantages of both signs and 0
				old[i] = float32(h.rng.NormFloat64() * 0.3)
				refLP[i] = float32(h.rng.NormFloat64() * 0.5)
				adv[i] = float32(h.rng.NormFloat64())
				if h.rng.IntN(7) == 0 {
					adv[i] = 0
				}
			}
			for i := range nSeqs { // some tokens exactly at ratio 1
				j := b.actCu[i]
				old[j] = logp[b.pos[i]]
			}
			// make logp − old reach past the clip range on many tokens
			for i := range nSeqs {
				for j := b.actCu[i]; j < b.actCu[i+1]; j++ {
					if h.rng.IntN(2) == 0 {
						old[j] = logp[int(b.pos[i])+int(j-b.actCu[i])] + float32(h.rng.NormFloat64()*0.4)
					}
				}
			}
			coef, sums := h.poisoned(b.tokens), h.poisoned(3*nSeqs)
			dLogp, dOld, dRef, dAdv, dPos, dCu := h.f32(logp), h.f32(old), h.f32(refLP), h.f32(adv), h.i32(b.pos), h.i32(b.actCu)
			require.NoError(t, h.d.PPOCoef(coef, sums, dLogp, dOld, dRef, dAdv, dPos, dCu, nSeqs, 2*nSeqs, 0, b.tokens, p))
			wantCoef, wantSums := make([]float32, b.tokens), make([]float32, 3*nSeqs)
			ref.PPOCoef(wantCoef, wantSums, logp, old, refLP, adv, b.pos, b.actCu, 2*nSeqs, 0, b.tokens, float64(p.ClipEps), float64(p.KLCoef), p.GRPO)
			testPPOCoefChunks(t, h, b, coef, sums, func(coef, sums Tensor, t0, t1 int) error {
				return h.d.PPOCoef(coef, sums, dLogp, dOld, dRef, dAdv, dPos, dCu, nSeqs, 2*nSeqs, t0, t1, p)
			})
			what := fmt.Sprintf("ppo_coef %d sequences grpo=%v", nSeqs, p.GRPO)
			requireClose(t, what+" coef", h.get(coef), wantCoef, rlTol(h))
			got := h.get(sums)
			clipped := 0
			for i := range nSeqs {
				require.Equal(t, wantSums[3*i+1], got[3*i+1], "%s: clipped tokens of sequence %d", what, i)
				clipped += int(got[3*i+1])
				for _, k := range []int{0, 2} {
					require.InDelta(t, wantSums[3*i+k], got[3*i+k], rlTol(h)*(1+math.Abs(float64(wantSums[3*i+k]))), "%s: sum %d of sequence %d", what, k, i)
				}
			}
			if nSeqs >= 33 {
				require.Positive(t, clipped, "%s: the clip removed some gradients", what)
			}
			for i, v := range h.get(coef) {
				if !inActions(b, i) {
					require.Zero(t, v, "%s: coefficient at packed position %d, no action", what, i)
				}
			}
		}
	}
	one := func() (Tensor, Tensor, Tensor) {
		return h.f32([]float32{-1, -1}), h.i32([]int32{0}), h.i32([]int32{0, 1})
	}
	lp, pos, cu := one()
	requireOpError(t, "step of fewer sequences", h.d.PPOCoef(h.poisoned(2), h.poisoned(3), lp, lp, lp, lp, pos, cu, 1, 0, 0, 2, PPO{ClipEps: 0.2}))
	requireOpError(t, "clip ε 0", h.d.PPOCoef(h.poisoned(2), h.poisoned(3), lp, lp, lp, lp, pos, cu, 1, 1, 0, 2, PPO{}))
	requireOpError(t, "short sums", h.d.PPOCoef(h.poisoned(2), h.poisoned(2), lp, lp, lp, lp, pos, cu, 1, 1, 0, 2, PPO{ClipEps: 0.2}))
	for _, r := range [][2]int{{-1, 1}, {1, 0}, {0, 3}} {
		err := requireOpError(t, "tokens outside the batch", h.d.PPOCoef(h.poisoned(2), h.poisoned(3), lp, lp, lp, lp, pos, cu, 1, 1, r[0], r[1], PPO{ClipEps: 0.2}))
		require.ErrorContains(t, err, fmt.Sprintf("ppo_coef: tokens [%d, %d) outside the batch's [0, 2)", r[0], r[1]))
	}
	err := requireOpError(t, "positions past the batch", h.d.PPOCoef(h.poisoned(2), h.poisoned(3), lp, lp, lp, lp, h.i32([]int32{2}), cu, 1, 1, 0, 2, PPO{ClipEps: 0.2}))
	require.ErrorContains(t, err, "ppo_coef: sequence 0: packed positions [2, ")
}

// testPPOCoefChunks asks for a batch's coefficients as the model's head does, a chunk of tokens at a
// time from the last, then for the sums alone (the range [0, 0)), and wants the bits of the whole call
// (coef, sums); each chunk's call leaves the tokens before it alone.
func testPPOCoefChunks(t *testing.T, h *harness, b rlBatch, coef, sums Tensor, call func(coef, sums Tensor, t0, t1 int) error) {
	wantCoef, wantSums := h.get(coef), h.get(sums)
	for _, C := range []int{1, 7, b.tokens/3 + 1} {
		got := h.poisoned(b.tokens)
		for t0 := (b.tokens - 1) / C * C; t0 >= 0; t0 -= C {
			require.NoError(t, call(got, Tensor{}, t0, min(t0+C, b.tokens)))
			if C == 1 {
				continue // one download per call would make the test quadratic
			}
			g := h.get(got)
			for i := range t0 {
				require.True(t, math.IsNaN(float64(g[i])), "chunk [%d, %d) of %d: coefficient %d written", t0, t0+C, b.tokens, i)
			}
		}
		gotSums := h.poisoned(len(wantSums))
		require.NoError(t, call(got, gotSums, 0, 0))
		require.Equal(t, bitsOf(wantCoef), bitsOf(h.get(got)), "coefficients in chunks of %d", C)
		require.Equal(t, bitsOf(wantSums), bitsOf(h.get(gotSums)), "sums alone after chunks of %d", C)
	}
}

func inActions(b rlBatch, p int) bool {
	for i, q := range b.pos {
		if p >= int(q) && p < int(q)+int(b.actCu[i+1]-b.actCu[i]) {
			return true
		}
	}
	return false
}

// bitsOf is x's float32 bit patterns, so that require.Equal compares bits (NaNs included).
func bitsOf(x []float32) []uint32 {
	b := make([]uint32, len(x))
	for i, v := range x {
		b[i] = math.Float32bits(v)
	}
	return b
}
