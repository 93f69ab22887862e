package model

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkHeadChunks is one training forward and backward of a one-layer model whose head dominates
// (vocabulary 32,000, hidden 256, 512 tokens), with the logits whole and in chunks: the cost of the
// chunks is the recomputed head matmul of every chunk but the last.
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
	for _, chunk := range []int{T, 128} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			old := headChunkBytes
			headChunkBytes = chunk * c.Vocab * 4
			defer func() { headChunkBytes = old }()
			a, err := m.NewActivations(T, 1)
			require.NoError(b, err)
			defer a.Free()
			g, err := m.NewGrads()
			require.NoError(b, err)
			defer g.Free()
			b.ResetTimer()
			for range b.N {
				require.NoError(b, m.Forward(a, ids, []int{T}))
				require.NoError(b, m.Backward(a, g, coef))
			}
			b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
