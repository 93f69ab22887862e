package rl

// Tests that pin the architecture of a training step: what crosses between host and device, and what
// a steady-state call allocates on the Go heap.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/train"
	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"
)

// batchCopies is what one packed arena batch of T tokens in S sequences with A actions moves: the
// forward pass uploads token ids and positions (4T bytes each), the actions' targets (4A: the head runs
// on their rows alone) and the S+1 sequence offsets. Nothing per token comes back.
func batchCopies(T, S, A int) kernels.Transfers {
	return kernels.Transfers{Uploads: 4, UploadBytes: int64(8*T + 4*A + 4*(S+1))}
}

func addCopies(a, b kernels.Transfers) kernels.Transfers {
	return kernels.Transfers{Uploads: a.Uploads + b.Uploads, Downloads: a.Downloads + b.Downloads,
		UploadBytes: a.UploadBytes + b.UploadBytes, DownloadBytes: a.DownloadBytes + b.DownloadBytes}
}

// packedBatches is the (tokens, sequences, actions) of each arena batch the workspace packs samples
// into.
func packedBatches(a *model.Activations, samples []*Sample) [][3]int {
	var out [][3]int
	T, S, A := 0, 0, 0
	for _, s := range samples {
		n := len(s.IDs)
		if S > 0 && (T+n > a.MaxTokens || S == a.MaxSeqs) {
			out = append(out, [3]int{T, S, A})
			T, S, A = 0, 0, 0
		}
		T, S, A = T+n, S+1, A+s.Actions()
	}
	return append(out, [3]int{T, S, A})
}

// stepCopies is the host↔device copies of one training step of n samples whose arena batches are
// batches, with one optimizer step over all of them:
//
//   - scoring: every batch's index arrays for the device's RL ops in one upload (each sequence's packed
//     position and the S+1 action offsets, Σ 4(2S+1) bytes); per batch the forward's inputs (ids,
//     targets, positions, offsets: batchCopies), staged once for the policy and the reference;
//   - rloo, grpo: the rewards in group order up and back, reshaped (group_baseline), 4n bytes each way;
//   - advantages: the reshaped rewards (4n) and the step's action offsets (4(n+1)) up; the return
//     statistics [μ, σ², n] and the n per-sequence KL sums down in one (4(n+3)); reinforce++ and rloo
//     (whitened): the combined [μ, σ²] back up (8);
//   - the backward: the index arrays again (one upload per optimizer step; the optimizer step's batches
//     pack differently from scoring's in general), per batch the forward's inputs (batchCopies), and per
//     optimizer step the per-sequence loss, clip and KL sums down (12n);
//   - the optimizer: the gradient norm down (4).
//
// Per-token data never crosses: no log-probs, returns, advantages or loss coefficients.
func stepCopies(alg Algorithm, batches [][3]int, n int) kernels.Transfers {
	idx := kernels.Transfers{Uploads: 1}
	for _, b := range batches {
		idx.UploadBytes += int64(4 * (2*b[1] + 1))
	}
	x := addCopies(idx, idx) // scoring's and the backward's
	for _, b := range batches {
		x = addCopies(x, batchCopies(b[0], b[1], b[2])) // scoring: the policy, then the reference on the same staging
		x = addCopies(x, batchCopies(b[0], b[1], b[2])) // backward
	}
	if alg != ReinforcePP {
		x = addCopies(x, kernels.Transfers{Uploads: 1, UploadBytes: int64(4 * n), Downloads: 1, DownloadBytes: int64(4 * n)})
	}
	x = addCopies(x, kernels.Transfers{Uploads: 2, UploadBytes: int64(4*n + 4*(n+1)), Downloads: 1, DownloadBytes: int64(4 * (n + 3))})
	if alg != GRPO {
		x = addCopies(x, kernels.Transfers{Uploads: 1, UploadBytes: 8})
	}
	return addCopies(x, kernels.Transfers{Downloads: 2, DownloadBytes: int64(12*n + 4)})
}

// One SeRL training step — rewards reshaped, log-probs of the policy and the reference, advantages,
// one optimizer step — makes exactly stepCopies' host↔device copies. Under SERL_CPU_HOST_VISIBLE=0
// (./build.sh test runs the suite so too) every one of them is a real copy.
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
	tokens := 0
	for _, s := range samples {
		tokens += len(s.IDs)
	}

	for _, alg := range []Algorithm{ReinforcePP, RLOO, GRPO} {
		// One batch holds the whole step, and an arena of 12 tokens in 2 sequences splits it in four.
		for _, a := range []*model.Activations{arena(t, m, 64, 8), arena(t, m, 12, 2)} {
			w := wsOf(t, a)
			c := DefaultConfig(alg)
			step := func() kernels.Transfers {
				before := d.Transfers()
				require.NoError(t, w.Reshape(c, samples))
				require.NoError(t, w.Score(m, ref, samples))
				_, err := w.Advantages(c, nil)
				require.NoError(t, err)
				require.NoError(t, d.Zero(g.Data))
				_, err = w.Backward(c, m, g, 0, len(samples))
				require.NoError(t, err)
				_, err = opt.Step(m.Params, g)
				require.NoError(t, err)
				return d.Transfers().Sub(before)
			}
			step() // the first step sizes the step buffers (and uploads the whitening mask once)

			batches := packedBatches(a, samples)
			want := stepCopies(alg, batches, len(samples))
			for range 2 {
				require.Equal(t, want, step(), "%s, arena %d×%d (%d tokens, %d batches)", alg, a.MaxTokens, a.MaxSeqs, tokens, len(batches))
			}
			t.Logf("%s, arena %d×%d, %d batches, %d sequences, %d tokens: %s per training step", alg, a.MaxTokens, a.MaxSeqs, len(batches), len(samples), tokens, want)
		}
	}
}

// Reshape, Score, Advantages and Backward allocate nothing on the Go heap once their workspace has been
// sized (issue 16: they used to allocate their packing buffers, coefficients and closures per call).
func TestStepAllocatesNothing(t *testing.T) {
	m := fixtureModel(t)
	g, err := m.NewGrads()
	require.NoError(t, err)
	t.Cleanup(g.Free)
	samples := fixtureSamples(m.Config.Vocab, shapes)
	for _, a := range []*model.Activations{arena(t, m, 64, 8), arena(t, m, 12, 2)} {
		w := wsOf(t, a)
		c := DefaultConfig(RLOO)
		require.NoError(t, w.Reshape(c, samples))
		require.NoError(t, w.Score(m, m, samples))
		_, err := w.Advantages(c, nil)
		require.NoError(t, err)
		_, err = w.Backward(c, m, g, 0, len(samples))
		require.NoError(t, err)
		allocs := map[string]float64{
			"Reshape": testenv.AllocsPerRun(t, 10, func() {
				if err := w.Reshape(c, samples); err != nil {
					t.Fatal(err)
				}
			}),
			"Score": testenv.AllocsPerRun(t, 10, func() {
				if err := w.Score(m, m, samples); err != nil {
					t.Fatal(err)
				}
			}),
			"Advantages": testenv.AllocsPerRun(t, 10, func() {
				if _, err := w.Advantages(c, nil); err != nil {
					t.Fatal(err)
				}
			}),
			"Backward": testenv.AllocsPerRun(t, 10, func() {
				if _, err := w.Backward(c, m, g, 0, len(samples)); err != nil {
					t.Fatal(err)
				}
			}),
		}
		for name, n := range allocs {
			require.Zero(t, n, "%s allocations per call, arena %d×%d", name, a.MaxTokens, a.MaxSeqs)
		}
	}
}
