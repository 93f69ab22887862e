package model

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkHeadChunks is one training forward and backward of a one-layer model whose head dominates
// (vocabulary 32,000, hidden 256, 512 tokens): the logits whole, then in chunks of 128 by Forward and
// Backward (which recomputes the head matmul of every chunk but the last) and by Grad (which turns each
// chunk's logits into dlogits in the forward, recomputing none).
func BenchmarkHeadChunks(b *testing.B) {
	c, err := ParseConfig([]byte(`{"model_type":"qwen2","hidden_size":256,"num_hidden_layers":1,
		"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":512,"vocab_size":32000}`), "bench")
	require.NoError(b, err)
	m, err := New(testDevice(b), c)
	require.NoError(b, err)
	defer m.Free()
	require.NoError(b, RandomInit(m, 1, 0.02))
	const T = 512
	ids := make([]int32, T)
	for i := range ids {
		ids[i] = int32(i * 61 % c.Vocab)
	}
	coef := make([]float32, T)
	for i := range coef {
		coef[i] = -1.0 / T
	}
	for _, r := range []struct {
		chunk int
		grad  bool
	}{{T, false}, {128, false}, {128, true}} {
		name := fmt.Sprintf("chunk=%d", r.chunk)
		if r.grad {
			name += "/grad"
		}
		b.Run(name, func(b *testing.B) {
			old := headChunkBytes
			headChunkBytes = r.chunk * c.Vocab * 4
			defer func() { headChunkBytes = old }()
			a, err := m.NewActivations(T, 1)
			require.NoError(b, err)
			defer a.Free()
			g, err := m.NewGrads()
			require.NoError(b, err)
			defer g.Free()
			b.ResetTimer()
			for range b.N {
				if r.grad {
					require.NoError(b, m.GradHost(a, g, ids, []int{T}, coef))
					continue
				}
				require.NoError(b, m.Forward(a, ids, []int{T}))
				require.NoError(b, m.Backward(a, g, coef))
			}
			b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
