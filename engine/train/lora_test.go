package train

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"
)

// LoRA training over a frozen base, in both precisions: the adapters learn one batch (the loss falls),
// the base weights stay bit for bit what they were, the optimizer's moments are the adapters' size,
// and a training step allocates nothing on the Go heap.
func TestLoRATrainsAdaptersOnly(t *testing.T) {
	for _, p := range []model.Precision{model.PrecisionF32, model.PrecisionBF16} {
		t.Run(p.String(), func(t *testing.T) {
			m := tinyModelIn(t, 4, p)
			defer m.Free()
			base := make([]float32, m.Layout.Total)
			require.NoError(t, kernels.Download(base, m.Params.Data))
			ad, err := m.AttachLoRA(model.LoRAConfig{Rank: 4, Alpha: 8, Targets: model.LoRATargets}, 1)
			require.NoError(t, err)
			lens := []int{40, 17, 9}
			ids := fixedBatch(3, m.Config.Vocab, lens)
			sched, err := NewSchedule(1e-2, 100, 0.05, 0.1)
			require.NoError(t, err)
			tr, err := NewTrainer(m, AdamWConfig{Schedule: sched, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, ClipNorm: 1}, 66, 3)
			require.NoError(t, err)
			defer tr.Free()
			require.Equal(t, ad.Layout, tr.Grads.Layout, "gradients of the adapters only")
			require.Equal(t, ad.Layout, tr.Opt.M.Layout, "moments of the adapters only")
			var first, last float64
			for step := 0; step < 100; step++ {
				loss, _, err := tr.AccumulateNLL(ids, lens, 1)
				require.NoError(t, err)
				if step == 0 {
					first = loss
				}
				last = loss
				_, err = tr.Step()
				require.NoError(t, err)
			}
			t.Logf("%s: loss %.4f → %.4f after 100 LoRA steps", p, first, last)
			require.Less(t, last, first-1, "the adapters learn the batch")
			after := make([]float32, m.Layout.Total)
			require.NoError(t, kernels.Download(after, m.Params.Data))
			require.Equal(t, base, after, "the base is frozen")
			allocs := testenv.AllocsPerRun(t, 3, func() {
				if _, _, err := tr.AccumulateNLL(ids, lens, 1); err != nil {
					t.Fatal(err)
				}
				if _, err := tr.Step(); err != nil {
					t.Fatal(err)
				}
			})
			require.Zero(t, allocs, "heap allocations per LoRA training step")
		})
	}
}
