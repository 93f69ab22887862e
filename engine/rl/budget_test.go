package rl

// Tests that pin the architecture of a training step: what crosses between host and device, and what
// a steady-state call allocates on the Go heap.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/train"
	"github.com/serl-go/serl/kernels"
)

// batchCopies is what one packed arena batch of T tokens in S sequences moves: the forward pass
// uploads token ids, targets, positions (4T bytes each) and the S+1 sequence offsets, and the
// per-token log-probs come back (4T bytes); a backward batch also uploads its loss coefficients (4T).
func batchCopies(T, S int, backward bool) kernels.Transfers {
	x := kernels.Transfers{Uploads: 4, UploadBytes: int64(12*T + 4*(S+1)), Downloads: 1, DownloadBytes: int64(4 * T)}
	if backward {
		x.Uploads++
		x.UploadBytes += int64(4 * T)
	}
	return x
}

func addCopies(a, b kernels.Transfers) kernels.Transfers {
	return kernels.Transfers{Uploads: a.Uploads + b.Uploads, Downloads: a.Downloads + b.Downloads,
		UploadBytes: a.UploadBytes + b.UploadBytes, DownloadBytes: a.DownloadBytes + b.DownloadBytes}
}

// packedBatches is the (tokens, sequences) of each arena batch the workspace packs samples into.
func packedBatches(a *model.Activations, samples []*Sample) [][2]int {
	var out [][2]int
	T, S := 0, 0
	for _, s := range samples {
		n := len(s.IDs)
		if S > 0 && (T+n > a.MaxTokens || S == a.MaxSeqs) {
			out = append(out, [2]int{T, S})
			T, S = 0, 0
		}
		T, S = T+n, S+1
	}
	return append(out, [2]int{T, S})
}

// One SeRL training step — log-probs of the policy and the reference, advantages, one optimizer step —
// makes exactly these host↔device copies: per arena batch the token ids in and the per-token log-probs
// out (plus the loss coefficients in for the backward batches); for the advantages the rewards in and
// out of group_baseline (rloo, grpo) and the returns in and out of whiten (reinforce++, rloo); and the
// gradient norm out after the update. Nothing scales with the model.
func TestTrainingStepTransfers(t *testing.T) {
	m := fixtureModel(t)
	ref := fixtureModel(t)
	d := m.Device()
	g, err := m.NewGrads()
	require.NoError(t, err)
	t.Cleanup(g.Free)
	sched, err := train.NewSchedule(1e-3, 10, 0, 1)
	require.NoError(t, err)
	opt, err := train.NewOptimizer(m, train.AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1})
	require.NoError(t, err)
	t.Cleanup(opt.Free)
	samples := fixtureSamples(m.Config.Vocab, shapes)
	tokens, actions := 0, 0
	for _, s := range samples {
		tokens += len(s.IDs)
		actions += s.Actions()
	}

	for _, alg := range []Algorithm{ReinforcePP, RLOO, GRPO} {
		// One batch holds the whole step, and an arena of 12 tokens in 2 sequences splits it in four.
		for _, a := range []*model.Activations{arena(t, m, 64, 8), arena(t, m, 12, 2)} {
			w := wsOf(t, a)
			c := DefaultConfig(alg)
			step := func() kernels.Transfers {
				before := d.Transfers()
				old, refLP := make([][]float32, len(samples)), make([][]float32, len(samples))
				require.NoError(t, w.ScoreActions(m, samples, old))
				require.NoError(t, w.ScoreActions(ref, samples, refLP))
				for i, s := range samples {
					s.LogPOld, s.LogPRef = old[i], refLP[i]
				}
				_, err := w.Advantages(c, samples)
				require.NoError(t, err)
				require.NoError(t, d.Zero(g.Data))
				_, err = w.Backward(c, m, g, samples)
				require.NoError(t, err)
				_, err = opt.Step(m.Params, g)
				require.NoError(t, err)
				return d.Transfers().Sub(before)
			}
			step() // the first step sizes the advantage buffers (and uploads the whitening mask once)

			var want kernels.Transfers
			for _, b := range packedBatches(a, samples) {
				want = addCopies(want, batchCopies(b[0], b[1], false)) // policy
				want = addCopies(want, batchCopies(b[0], b[1], false)) // reference
				want = addCopies(want, batchCopies(b[0], b[1], true))  // backward
			}
			if alg != ReinforcePP { // group_baseline: the rewards in group order, in and out
				want = addCopies(want, kernels.Transfers{Uploads: 1, UploadBytes: int64(4 * len(samples)),
					Downloads: 1, DownloadBytes: int64(4 * len(samples))})
			}
			if alg != GRPO { // whiten: the returns in; the advantages and [μ, σ²] out in one download
				want = addCopies(want, kernels.Transfers{Uploads: 1, UploadBytes: int64(4 * actions),
					Downloads: 1, DownloadBytes: int64(4 * (actions + 2))})
			}
			want = addCopies(want, kernels.Transfers{Downloads: 1, DownloadBytes: 4}) // the gradient norm
			for range 2 {
				require.Equal(t, want, step(), "%s, arena %d×%d (%d tokens, %d batches)", alg, a.MaxTokens, a.MaxSeqs, tokens, len(packedBatches(a, samples)))
			}
			t.Logf("%s, arena %d×%d: %s per training step", alg, a.MaxTokens, a.MaxSeqs, want)
		}
	}
}

// ScoreActions and Backward allocate nothing on the Go heap once their workspace and destinations have
// been sized (issue 16: they used to allocate their packing buffers, coefficients and closures per call).
func TestStepAllocatesNothing(t *testing.T) {
	m := fixtureModel(t)
	g, err := m.NewGrads()
	require.NoError(t, err)
	t.Cleanup(g.Free)
	samples := fixtureSamples(m.Config.Vocab, shapes)
	for _, a := range []*model.Activations{arena(t, m, 64, 8), arena(t, m, 12, 2)} {
		w := wsOf(t, a)
		lp := make([][]float32, len(samples))
		require.NoError(t, w.ScoreActions(m, samples, lp))
		for i, s := range samples {
			s.LogPOld, s.LogPRef = lp[i], lp[i]
		}
		_, err := w.Advantages(DefaultConfig(RLOO), samples)
		require.NoError(t, err)
		c := DefaultConfig(ReinforcePP)
		score := testing.AllocsPerRun(10, func() {
			if err := w.ScoreActions(m, samples, lp); err != nil {
				t.Fatal(err)
			}
		})
		backward := testing.AllocsPerRun(10, func() {
			if _, err := w.Backward(c, m, g, samples); err != nil {
				t.Fatal(err)
			}
		})
		adv := testing.AllocsPerRun(10, func() {
			if _, err := w.Advantages(DefaultConfig(RLOO), samples); err != nil {
				t.Fatal(err)
			}
		})
		require.Zero(t, score, "ScoreActions allocations per call, arena %d×%d", a.MaxTokens, a.MaxSeqs)
		require.Zero(t, backward, "Backward allocations per call, arena %d×%d", a.MaxTokens, a.MaxSeqs)
		require.Zero(t, adv, "Advantages allocations per call, arena %d×%d", a.MaxTokens, a.MaxSeqs)
	}
}
