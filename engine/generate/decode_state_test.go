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

// Rows with different stop sets share a batch, each banning only its own set while fewer than
// MinNewTokens are drawn: each request bans tokens its greedy continuation would pick, and in one batch
// with the others it never draws them and draws what it draws alone (log-probs differ in the last bits:
// the prefill packs other prompts beside it).
func TestBansPerStopSet(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, small)
	const n = 10
	var reqs []Request
	for i := 0; i < 4; i++ {
		r := Request{Prompt: prompt(i+11, 6+i, m.Config.Vocab), N: 1 + i%2, Params: Params{MaxNewTokens: n, StopIDs: []int32{}}}
		free, err := e.Generate([]Request{r}, nil, nil)
		require.NoError(t, err)
		c := free[0][0].Tokens
		r.Params.StopIDs, r.Params.MinNewTokens = []int32{c[1], c[2+i%3]}, n
		reqs = append(reqs, r)
	}
	together, err := e.Generate(reqs, nil, nil)
	require.NoError(t, err)
	for i, r := range reqs {
		alone, err := e.Generate([]Request{r}, nil, nil)
		require.NoError(t, err)
		for j, s := range together[i] {
			require.Equal(t, alone[0][j].Tokens, s.Tokens, "request %d sample %d", i, j)
			require.InDeltaSlice(t, alone[0][j].LogProbs, s.LogProbs, 4e-6, "request %d sample %d", i, j) // 1.6e-6 measured
			require.Len(t, s.Tokens, n)
			require.NotContains(t, s.Tokens[1:], r.Params.StopIDs[0], "request %d", i)
			require.NotContains(t, s.Tokens[1:], r.Params.StopIDs[1], "request %d", i)
		}
	}
}
