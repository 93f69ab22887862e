package model

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
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

// BenchmarkHeadFrom is one RL training pass (forward, backward, the loss over the responses alone) of
// Qwen2.5-0.5B's shape (bench/qwen2.5-shapes; random weights, f32) over 2 sequences of 128 prompt and
// 256 response tokens: the head on every row (Grad, the coefficients zero on the prompts' rows), then on
// the rows that predict responses alone (GradFrom). Its head is 27% of the weight FLOPs per token, so
// sparing a third of its rows should save about a tenth of the pass: 1.10× on 2 cores of an Emerald
// Rapids Xeon (8.77 → 8.00 s a pass, medians of 3). Slow on a CPU: run with -benchtime 2x.
func BenchmarkHeadFrom(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "bench", "qwen2.5-shapes", "qwen2.5-0.5B", "config.json"))
	require.NoError(b, err)
	c, err := ParseConfig(raw, "qwen2.5-0.5B")
	require.NoError(b, err)
	m, err := New(testDevice(b), c)
	require.NoError(b, err)
	defer m.Free()
	require.NoError(b, RandomInit(m, 1, 0.02))
	const prompt, response, S = 128, 256, 2
	T := S * (prompt + response)
	ids := make([]int32, T)
	for i := range ids {
		ids[i] = int32(i * 7919 % c.Vocab)
	}
	lens, first := []int{prompt + response, prompt + response}, []int{prompt, prompt}
	a, err := m.NewActivations(T, S)
	require.NoError(b, err)
	defer a.Free()
	g, err := m.NewGrads()
	require.NoError(b, err)
	defer g.Free()
	for _, from := range []bool{false, true} {
		b.Run(fmt.Sprintf("head-rows=%s", map[bool]string{false: "all", true: "responses"}[from]), func(b *testing.B) {
			for range b.N {
				coef := func(t0, t1 int) error { // zero on a prompt's rows (the whole batch's head only)
					c := make([]float32, t1-t0)
					for i := range c {
						if t := t0 + i; from || t%(prompt+response) >= prompt-1 {
							c[i] = -1.0 / float32(S*response)
						}
					}
					return kernels.Upload(a.Coef().MustSlice(t0, t1), c)
				}
				if from {
					require.NoError(b, m.GradFrom(a, g, ids, lens, first, coef))
				} else {
					require.NoError(b, m.Grad(a, g, ids, lens, coef))
				}
			}
			b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
