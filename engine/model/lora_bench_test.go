package model

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkLoRAGrad times a training forward and backward of 2048 tokens (4 sequences of 512) on the
// built-in model's shape, the whole model training against rank-8 and rank-16 adapters on every
// projection, in float32 and bf16: what a LoRA run's update costs against a full one.
func BenchmarkLoRAGrad(b *testing.B) {
	c := Config{Arch: Qwen2, Hidden: 256, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 64, Intermediate: 704,
		Vocab: 1024, MaxPositions: 1024, RMSNormEps: 1e-6, RopeTheta: 10000, TieEmbedding: true, QKVBias: true, BOS: -1}
	lens := []int{512, 512, 512, 512}
	ids := make([]int32, 2048)
	for i := range ids {
		ids[i] = int32(i*7919) % int32(c.Vocab)
	}
	coef := make([]float32, len(ids))
	for i := range coef {
		coef[i] = -1 / float32(len(ids))
	}
	for _, p := range []Precision{PrecisionF32, PrecisionBF16} {
		for _, rank := range []int{0, 8, 16} {
			name := "full"
			if rank > 0 {
				name = fmt.Sprintf("lora%d", rank)
			}
			b.Run(fmt.Sprintf("%s/%s", p, name), func(b *testing.B) {
				m, err := NewWith(testDevice(b), c, Options{Precision: p})
				require.NoError(b, err)
				defer m.Free()
				require.NoError(b, RandomInit(m, 1, 0.02))
				if rank > 0 {
					_, err := m.AttachLoRA(LoRAConfig{Rank: rank, Alpha: 16, Targets: LoRATargets}, 1)
					require.NoError(b, err)
				}
				a, err := m.NewActivations(len(ids), len(lens))
				require.NoError(b, err)
				defer a.Free()
				g, err := m.NewGrads()
				require.NoError(b, err)
				defer g.Free()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					require.NoError(b, m.Forward(a, ids, lens))
					require.NoError(b, m.Backward(a, g, coef))
				}
				b.ReportMetric(float64(len(ids)*b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
