package rl

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/train"
)

// The whole update, end to end, must make a policy better at its reward: sample with the generation
// engine, score old and reference log-probs, compute advantages, backpropagate the PPO loss and take
// AdamW steps — the loop of engine/selfplay without its task. The reward is a bandit on the tiny fixture
// model: 1 when the first response token is one of the lowest 32 of its 256 ids (≈ 1/8 of the mass at
// the start). Every algorithm must raise the rewarded share well above where it started; a sign error,
// a misplaced log-prob or advantage, or a loss that does not reach the weights keeps it flat or
// drives it down.
func TestPolicyLearns(t *testing.T) {
	for _, alg := range []Algorithm{ReinforcePP, GRPO, RLOO} {
		t.Run(string(alg), func(t *testing.T) {
			m := fixtureModel(t)
			ref := fixtureModel(t)
			const (
				prompts, n, steps, respLen = 4, 8, 25, 3
				trainBatch                 = 16
			)
			rewarded := func(tok int32) bool { return tok < 32 }

			eng, err := generate.New(m, generate.Config{BlockSize: 16, NumBlocks: 64, MaxBatch: 32, MaxPrefillTokens: 64, MaxSeqLen: 32})
			require.NoError(t, err)
			t.Cleanup(eng.Free)
			acts := arena(t, m, prompts*n*16, prompts*n)
			ws := wsOf(t, acts)
			grads, err := m.NewGrads()
			require.NoError(t, err)
			t.Cleanup(grads.Free)
			sched, err := train.NewSchedule(2e-3, steps*prompts*n/trainBatch, 0, 1)
			require.NoError(t, err)
			opt, err := train.NewOptimizer(m, train.AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1})
			require.NoError(t, err)
			t.Cleanup(opt.Free)

			rng := rand.New(rand.NewPCG(1, 2))
			promptIDs := make([][]int32, prompts)
			for i := range promptIDs {
				promptIDs[i] = []int32{int32(3 + rng.IntN(200)), int32(3 + rng.IntN(200)), int32(3 + rng.IntN(200))}
			}
			c := DefaultConfig(alg)
			share := func(step int) (float64, []*Sample) {
				reqs := make([]generate.Request, prompts)
				for i, p := range promptIDs {
					reqs[i] = generate.Request{Prompt: p, N: n, Params: generate.Params{
						MaxNewTokens: respLen, MinNewTokens: respLen, Temperature: 1, StopIDs: []int32{2}, Seed: uint64(step)}}
				}
				out, err := eng.Generate(reqs, nil, nil)
				require.NoError(t, err)
				var samples []*Sample
				hits := 0
				for i, group := range out {
					for _, s := range group {
						r := 0.0
						if rewarded(s.Tokens[0]) {
							r, hits = 1, hits+1
						}
						ids := append(append([]int32{}, promptIDs[i]...), s.Tokens...)
						samples = append(samples, &Sample{Group: i, IDs: ids, PromptLen: len(promptIDs[i]), Reward: r})
					}
				}
				return float64(hits) / float64(len(samples)), samples
			}

			var first, last float64
			for step := range steps {
				sh, samples := share(step)
				if step == 0 {
					first = sh
				}
				require.NoError(t, ws.Reshape(c, samples))
				rng.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
				require.NoError(t, ws.Score(m, ref, samples))
				_, err := ws.Advantages(c, nil)
				require.NoError(t, err)
				for lo := 0; lo < len(samples); lo += trainBatch {
					require.NoError(t, m.Device().Zero(grads.Data))
					st, err := ws.Backward(c, m, grads, lo, lo+trainBatch)
					require.NoError(t, err)
					require.False(t, math.IsNaN(st.Loss), "loss NaN")
					_, err = opt.Step(m.Params, grads)
					require.NoError(t, err)
				}
			}
			// The last estimate averages fresh rollouts of the trained policy.
			for i := range 4 {
				sh, _ := share(1000 + i)
				last += sh / 4
			}
			t.Logf("%s: rewarded share %.3f → %.3f", alg, first, last)
			require.Less(t, first, 0.35, "the bandit starts hard")
			require.Greater(t, last, 0.7, "%s did not learn its reward: %.3f → %.3f", alg, first, last)
		})
	}
}
