package generate

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// An engine sized by Size never lets its cache hold back the batch: MaxBatch sequences of the longest
// prompt and continuation, from up to Prompts distinct prompts, all decode together (one decode step
// per new token after the first), and the cache is exactly what the plan says, in the model's dtype.
func TestSizeRunsAFullBatch(t *testing.T) {
	for _, prec := range []model.Precision{model.PrecisionF32, model.PrecisionBF16} {
		for _, c := range []struct{ prompts, n, promptLen int }{{8, 1, 21}, {2, 4, 33}, {1, 8, 16}} {
			t.Run(fmt.Sprintf("%s/%dx%d", prec, c.prompts, c.n), func(t *testing.T) {
				d, err := kernels.Open("cpu", 1) // its own device: live bytes count this engine only
				require.NoError(t, err)
				defer d.Close()
				m, err := model.LoadWith(d, "../model/testdata/qwen2_f32", model.Options{Precision: prec, Frozen: true})
				require.NoError(t, err)
				defer m.Free()
				const newTokens = 12
				cfg, err := Size(m.Config, Sizing{MaxPrompt: c.promptLen, MaxNew: newTokens, MaxBatch: c.prompts * c.n, Prompts: c.prompts})
				require.NoError(t, err)
				before, _ := d.MemoryInUse()
				e, err := New(m, cfg)
				require.NoError(t, err)
				defer e.Free()
				after, _ := d.MemoryInUse()
				var plan model.Plan
				plan.Add(cfg.Plan("generation", m.Config, prec)...)
				require.Equal(t, plan.Total(), after-before, "the plan is what New allocates")
				require.Equal(t, prec.Act(), plan.Items[0].DType, "the KV cache is in the activation dtype")

				reqs := make([]Request, c.prompts)
				for i := range reqs {
					p := make([]int32, c.promptLen)
					for j := range p {
						p[j] = int32(3 + (i*7+j)%200)
					}
					reqs[i] = Request{Prompt: p, N: c.n, Params: Params{MaxNewTokens: newTokens, Temperature: 1, StopIDs: []int32{}, Seed: uint64(i)}}
				}
				out, err := e.Generate(reqs, nil, nil)
				require.NoError(t, err)
				for _, ss := range out {
					for _, s := range ss {
						require.Len(t, s.Tokens, newTokens)
					}
				}
				require.Equal(t, newTokens-1, e.Stats().DecodeSteps, "every sequence decodes in the same steps")
			})
		}
	}
}

func TestSizeRefusesEmptySizes(t *testing.T) {
	_, err := Size(model.Config{MaxPositions: 64}, Sizing{MaxPrompt: 0, MaxNew: 4, MaxBatch: 1})
	require.ErrorContains(t, err, "must be positive")
}
