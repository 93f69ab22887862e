package generate

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Advancing the decode state on the device gives exactly the samples of uploading it afresh every step
// (what the engine did before it kept the state on the device): the same tokens, log-probs and finish
// reasons, with presence penalties (histories appended on the device), stop ids banned until
// MinNewTokens (ban flags recomputed there), several stop sets (groups of rows), top-k and greedy rows,
// block boundaries and copy-on-write, and sequences finishing and joining in a small batch.
func TestDeviceDecodeStateMatchesUploads(t *testing.T) {
	m := loadFixture(t, "llama_f32")
	V := m.Config.Vocab
	var reqs []Request
	for i := 0; i < 7; i++ {
		p := sampled(uint64(40+i), 9+i%4*5)
		switch i % 4 {
		case 0:
			p.PresencePenalty = 0.8
		case 1:
			p.StopIDs, p.MinNewTokens = []int32{int32(i % V), int32((7 * i) % V)}, 4
		case 2:
			p.TopK, p.PresencePenalty, p.StopIDs, p.MinNewTokens = 5, -0.5, []int32{int32(i % V)}, 2
		case 3:
			p.Temperature = 0
		}
		reqs = append(reqs, Request{Prompt: prompt(i+3, 4+3*i, V), N: 1 + i%3, Params: p})
	}
	cfg := small
	cfg.MaxBatch = 5
	run := func(force bool) [][]Sample {
		e := newEngine(t, m, cfg)
		e.dec.forceUpload = force
		out, err := e.Generate(reqs, nil, nil)
		require.NoError(t, err)
		return out
	}
	uploaded, advanced := run(true), run(false)
	require.Equal(t, uploaded, advanced)
	tokens := 0
	for _, r := range advanced {
		for _, s := range r {
			tokens += len(s.Tokens)
		}
	}
	require.Greater(t, tokens, 60, "the requests decode many steps")
}
