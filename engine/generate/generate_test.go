package generate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
)

func loadFixture(t testing.TB, name string) *model.Model {
	m, err := model.Load(testenv.Device(t), filepath.Join("..", "model", "testdata", name))
	require.NoError(t, err)
	t.Cleanup(m.Free)
	return m
}

func newEngine(t testing.TB, m *model.Model, cfg Config) *Engine {
	e, err := New(m, cfg)
	require.NoError(t, err)
	t.Cleanup(e.Free)
	return e
}

var small = Config{BlockSize: 5, NumBlocks: 400, MaxBatch: 64, MaxPrefillTokens: 512, MaxSeqLen: 256}

// Greedy generation reproduces, token for token, the argmax continuation PyTorch computed with full
// forward passes and no cache (64 new tokens).
func TestGreedyMatchesFixture(t *testing.T) {
	for _, name := range []string{"qwen2_f32", "llama_f32"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			b, err := os.ReadFile(filepath.Join("..", "model", "testdata", name, "greedy.json"))
			require.NoError(t, err)
			var g struct{ Prompt, Continuation []int32 }
			require.NoError(t, json.Unmarshal(b, &g))
			e := newEngine(t, m, small)
			out, err := e.Generate([]Request{{Prompt: g.Prompt, N: 1, Params: Params{MaxNewTokens: len(g.Continuation),
				StopIDs: []int32{}}}}, nil, nil)
			require.NoError(t, err)
			require.Equal(t, g.Continuation, out[0][0].Tokens)
			require.Equal(t, FinishLength, out[0][0].Finish)
		})
	}
}

func prompt(seed, n, vocab int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32((seed*131 + i*17 + i*i) % vocab)
	}
	return p
}

func sampled(seed uint64, maxNew int) Params {
	return Params{MaxNewTokens: maxNew, Temperature: 1, TopP: 0.95, Seed: seed, StopIDs: []int32{}}
}

// A seeded sample is the same whether its request runs alone or in a batch of 64.
func TestSeedIndependentOfBatch(t *testing.T) {
	m := loadFixture(t, "llama_f32")
	e := newEngine(t, m, small)
	target := Request{Prompt: prompt(1, 13, m.Config.Vocab), N: 2, Params: sampled(42, 24)}
	alone, err := e.Generate([]Request{target}, nil, nil)
	require.NoError(t, err)
	batch := []Request{}
	for i := 0; i < 31; i++ {
		batch = append(batch, Request{Prompt: prompt(i+7, 3+i%11, m.Config.Vocab), N: 2, Params: sampled(uint64(i), 10+i%20)})
	}
	batch = append(batch[:17], append([]Request{target}, batch[17:]...)...)
	together, err := e.Generate(batch, nil, nil)
	require.NoError(t, err)
	require.Equal(t, alone[0][0].Tokens, together[17][0].Tokens)
	require.Equal(t, alone[0][1].Tokens, together[17][1].Tokens)
	require.NotEqual(t, alone[0][0].Tokens, alone[0][1].Tokens, "samples of one prompt differ")
	for i, lp := range alone[0][0].LogProbs {
		require.InDelta(t, lp, together[17][0].LogProbs[i], 1e-5)
	}
}

// n samples of one prompt prefill it once and share its blocks; with few slots and a small cache,
// continuous batching gives the same samples as one big batch.
func TestSharedPrefixAndContinuousBatching(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	reqs := []Request{
		{Prompt: prompt(3, 17, m.Config.Vocab), N: 16, Params: sampled(9, 30)},
		{Prompt: prompt(4, 9, m.Config.Vocab), N: 5, Params: sampled(10, 12)},
	}
	big := newEngine(t, m, small)
	want, err := big.Generate(reqs, nil, nil)
	require.NoError(t, err)
	st := big.Stats()
	require.Equal(t, 2, st.Prefills, "one prefill per prompt, not per sample")
	require.Equal(t, 17+9, st.PrefillTokens)
	t.Logf("shared prefix: %d samples from %d prefills of %d tokens; %d decode steps", 21, st.Prefills, st.PrefillTokens, st.DecodeSteps)

	tight := newEngine(t, m, Config{BlockSize: 4, NumBlocks: 30, MaxBatch: 3, MaxPrefillTokens: 32, MaxSeqLen: 64})
	got, err := tight.Generate(reqs, nil, nil)
	require.NoError(t, err)
	for r := range reqs {
		for s := range want[r] {
			require.Equal(t, want[r][s].Tokens, got[r][s].Tokens, "request %d sample %d", r, s)
		}
	}
	require.Equal(t, 2, tight.Stats().Prefills)
	require.Equal(t, 30, len(tight.pool.free), "every block returned")
	require.Zero(t, tight.pool.reserved)
}

func TestStopsAndLengths(t *testing.T) {
	m := loadFixture(t, "llama_f32")
	e := newEngine(t, m, small)
	p := prompt(5, 8, m.Config.Vocab)
	// Greedy continuation, then stop on its 5th token.
	free, err := e.Generate([]Request{{Prompt: p, N: 1, Params: Params{MaxNewTokens: 20, StopIDs: []int32{}}}}, nil, nil)
	require.NoError(t, err)
	stopTok := free[0][0].Tokens[4]
	first := 0
	for first < 5 && free[0][0].Tokens[first] != stopTok {
		first++
	}
	out, err := e.Generate([]Request{{Prompt: p, N: 1, Params: Params{MaxNewTokens: 20, StopIDs: []int32{stopTok}}}}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, FinishStop, out[0][0].Finish)
	require.Equal(t, free[0][0].Tokens[:first+1], out[0][0].Tokens, "the stop token is included")
	// MinNewTokens bans the stop id until enough tokens are drawn.
	out, err = e.Generate([]Request{{Prompt: p, N: 1, Params: Params{MaxNewTokens: 20, MinNewTokens: 12, StopIDs: []int32{stopTok}}}}, nil, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(out[0][0].Tokens), 12)
	for _, tk := range out[0][0].Tokens[:11] {
		require.NotEqual(t, stopTok, tk)
	}
	out, err = e.Generate([]Request{{Prompt: p, N: 3, Params: Params{MaxNewTokens: 1, StopIDs: []int32{}}}}, nil, nil)
	require.NoError(t, err)
	for _, s := range out[0] {
		require.Len(t, s.Tokens, 1)
		require.Equal(t, FinishLength, s.Finish)
	}
}

func TestRequestErrors(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, Config{BlockSize: 4, NumBlocks: 6, MaxBatch: 4, MaxPrefillTokens: 64, MaxSeqLen: 128})
	ok := Params{MaxNewTokens: 4}
	for name, r := range map[string]Request{
		"cache":       {Prompt: prompt(1, 10, 256), N: 1, Params: Params{MaxNewTokens: 30}},
		"context":     {Prompt: prompt(1, 100, 256), N: 1, Params: Params{MaxNewTokens: 30}},
		"prefill":     {Prompt: prompt(1, 65, 256), N: 1, Params: ok},
		"empty":       {Prompt: nil, N: 1, Params: ok},
		"vocab":       {Prompt: []int32{1, 999}, N: 1, Params: ok},
		"samples":     {Prompt: []int32{1}, N: 0, Params: ok},
		"temperature": {Prompt: []int32{1}, N: 1, Params: Params{MaxNewTokens: 2, Temperature: -1}},
		"stopstring":  {Prompt: []int32{1}, N: 1, Params: Params{MaxNewTokens: 2, StopStrings: []string{"x"}}},
	} {
		_, err := e.Generate([]Request{{Prompt: []int32{1, 2}, N: 1, Params: ok}, r}, nil, nil)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "request 1", name)
	}
}

func BenchmarkDecode(b *testing.B) {
	m := loadFixture(b, "llama_f32")
	e := newEngine(b, m, Config{BlockSize: 16, NumBlocks: 1200, MaxBatch: 64, MaxPrefillTokens: 4096, MaxSeqLen: 256})
	reqs := make([]Request, 64)
	for i := range reqs {
		reqs[i] = Request{Prompt: prompt(i, 64, m.Config.Vocab), N: 1, Params: Params{MaxNewTokens: 128, StopIDs: []int32{}}}
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := e.Generate(reqs, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	st := e.Stats()
	b.ReportMetric(st.TokensPerSecond(), "tokens/s")
	b.ReportMetric(float64(st.Prefills)/float64(b.N), "prefills/op")
	_ = fmt.Sprint
}

// One-token requests finish as they start; with a cache that holds one prompt at a time the engine
// must still work through them all (progress by starting samples, not only by prefilling).
func TestTightCacheOneTokenRequests(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, Config{BlockSize: 4, NumBlocks: 4, MaxBatch: 2, MaxPrefillTokens: 64, MaxSeqLen: 16})
	var reqs []Request
	for i := 0; i < 6; i++ {
		reqs = append(reqs, Request{Prompt: prompt(i, 9, m.Config.Vocab), N: 3, Params: Params{MaxNewTokens: 1, StopIDs: []int32{}}})
	}
	out, err := e.Generate(reqs, nil, nil)
	require.NoError(t, err)
	for _, r := range out {
		require.Len(t, r, 3)
		for _, s := range r {
			require.Len(t, s.Tokens, 1)
		}
	}
	require.Equal(t, 6, e.Stats().Prefills)
}
