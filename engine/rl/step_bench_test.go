package rl

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkRLStep times one RL training step on the fixture model — rewards reshaped, the policy and
// the reference scored, advantages, one optimizer step's backward — over 32 sequences of 8 prompt and
// 24 response tokens in arena batches of 256 tokens, and reports its host↔device copies.
func BenchmarkRLStep(b *testing.B) {
	m := fixtureModel(b)
	g, err := m.NewGrads()
	require.NoError(b, err)
	defer g.Free()
	shapes := make([][2]int, 32)
	for i := range shapes {
		shapes[i] = [2]int{8, 24}
	}
	samples := fixtureSamples(m.Config.Vocab, shapes)
	a, err := m.NewActivations(256, 16)
	require.NoError(b, err)
	defer a.Free()
	w := NewWorkspace(m.Device(), a)
	defer w.Free()
	c := DefaultConfig(ReinforcePP)
	step := func() {
		require.NoError(b, w.Reshape(c, samples))
		require.NoError(b, w.Score(m, m, samples))
		_, err := w.Advantages(c, nil)
		require.NoError(b, err)
		_, err = w.Backward(c, m, g, 0, len(samples))
		require.NoError(b, err)
	}
	step()
	before := m.Device().Transfers()
	b.ResetTimer()
	for range b.N {
		step()
	}
	b.StopTimer()
	x := m.Device().Transfers().Sub(before)
	n := float64(b.N)
	b.ReportMetric(float64(x.Uploads)/n, "uploads/op")
	b.ReportMetric(float64(x.Downloads)/n, "downloads/op")
	b.ReportMetric(float64(x.UploadBytes+x.DownloadBytes)/n, "copied-B/op")
}
