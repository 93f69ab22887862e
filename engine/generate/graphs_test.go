package generate

import (
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// graphRequests is a mix that exercises every part of a steady step a graph freezes: presence penalties
// (histories appended on the device), stop ids banned until MinNewTokens (several stop sets, so several
// sample calls; some samples stop), top-k, greedy and sampled rows, several samples of a prompt (shared
// prefix blocks, copy-on-write), block boundaries, and sequences finishing and joining in a batch of 5.
func graphRequests(V int) []Request {
	var reqs []Request
	for i := 0; i < 9; i++ {
		p := sampled(uint64(70+i), 8+i%4*6)
		switch i % 4 {
		case 0:
			p.PresencePenalty = 0.8
		case 1: // a sixth or so of the vocabulary stops, so samples do stop
			for j := range 48 {
				p.StopIDs = append(p.StopIDs, int32((i+7*j)%V))
			}
			p.MinNewTokens = 4
		case 2:
			p.TopK, p.PresencePenalty, p.StopIDs, p.MinNewTokens = 5, -0.5, []int32{int32(i % V)}, 2
		case 3:
			p.Temperature = 0
		}
		reqs = append(reqs, Request{Prompt: prompt(i+5, 3+3*i, V), N: 1 + i%3, Params: p})
	}
	return reqs
}

// Launching the captured steady step gives bit for bit the tokens, log-probs and finish reasons of
// issuing its ops, in f32 and bf16, and the launches really happen.
func TestGraphsMatchDirectOps(t *testing.T) {
	for _, name := range []string{"llama_f32", "qwen2_bf16"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			reqs := graphRequests(m.Config.Vocab)
			cfg := small
			cfg.MaxBatch = 5
			run := func(graphs bool) ([][]Sample, Stats) {
				e := newEngine(t, m, cfg)
				e.SetGraphs(graphs)
				var out [][]Sample
				for range 2 { // the second call reuses the first one's graphs
					var err error
					out, err = e.Generate(reqs, nil, nil)
					require.NoError(t, err)
				}
				return out, e.Stats()
			}
			direct, ds := run(false)
			graphed, gs := run(true)
			require.Equal(t, direct, graphed)
			finish := map[FinishReason]int{}
			for _, r := range graphed {
				for _, s := range r {
					finish[s.Finish]++
				}
			}
			require.Positive(t, finish[FinishStop], "some samples stop on a stop id")
			require.Positive(t, finish[FinishLength], "some samples run to their length")
			require.Zero(t, ds.GraphCaptures+ds.GraphLaunches)
			require.Equal(t, ds.DecodeSteps, gs.DecodeSteps)
			require.Positive(t, gs.GraphCaptures)
			require.Greater(t, gs.GraphLaunches, 2*gs.GraphCaptures, "most steady steps launch a graph")
			t.Logf("%d decode steps, %d graph launches, %d captures", gs.DecodeSteps, gs.GraphLaunches, gs.GraphCaptures)
		})
	}
}

// A batch shape is captured once: its first steady step runs the ops (the warm-up), the second captures
// and launches, later ones launch, and a later Generate call of the same shape launches from its first
// steady step. Another row count is another shape; the least recently used shape is evicted when the
// cache is full, and captured again when it comes back.
func TestGraphCapturedOncePerShape(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, small)
	e.SetGraphs(true)
	e.graphs.limit = 2
	const n = 12 // n − 1 decode steps: the first uploads the batch, the rest are steady
	gen := func(S int) {
		_, err := e.Generate([]Request{{Prompt: prompt(S, 9, m.Config.Vocab), N: S, Params: sampled(uint64(S), n)}}, nil, nil)
		require.NoError(t, err)
	}
	check := func(captures, launches int) {
		t.Helper()
		require.Equal(t, captures, e.Stats().GraphCaptures, "captures")
		require.Equal(t, launches, e.Stats().GraphLaunches, "launches")
	}
	gen(4)
	check(1, n-3)
	gen(4)
	check(1, 2*(n-3)+1)
	gen(2)
	check(2, 3*(n-3)+1)
	gen(3) // evicts S = 4, the least recently used
	check(3, 4*(n-3)+1)
	gen(2)
	check(3, 4*(n-3)+n-1)
	gen(4)
	check(4, 5*(n-3)+n-1)
	require.Len(t, e.graphs.byKey, 2)

	e.SetGraphs(false)
	require.Empty(t, e.graphs.byKey)
	gen(4)
	check(4, 5*(n-3)+n-1)
	require.Equal(t, 7*(n-1), e.Stats().DecodeSteps)
}

// Graphs captured with the model's adapters issue their matrix products: merging the adapters into the
// weights (which detaches and frees them) between calls frees the graphs, and generation then matches
// the ops issued directly.
func TestGraphsFollowAdapters(t *testing.T) {
	m := loadFixture(t, "llama_f32")
	_, err := m.LoadLoRA(filepath.Join("..", "model", "testdata", "llama_lora"))
	require.NoError(t, err)
	reqs := []Request{{Prompt: prompt(3, 7, m.Config.Vocab), N: 3, Params: sampled(9, 10)}}
	e := newEngine(t, m, small)
	e.SetGraphs(true)
	_, err = e.Generate(reqs, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 1, e.Stats().GraphCaptures)

	require.NoError(t, m.Merge())
	merged, err := e.Generate(reqs, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 2, e.Stats().GraphCaptures, "captured again without the adapters")

	direct := newEngine(t, m, small)
	direct.SetGraphs(false)
	want, err := direct.Generate(reqs, nil, nil)
	require.NoError(t, err)
	require.Equal(t, want, merged)
}

// A steady step launched as a graph allocates nothing on the Go heap (measured between the last token
// callback of one step and the first of the next, as stepTransfers measures copies). The counter is the
// whole process's, so another goroutine's allocation within the window (the finalizer goroutine closing
// a device an earlier test dropped, say) can land in a step: 1 run in 200 under -count=200 saw 2 or 7.
// A step that allocates does so in every run, so the check passes on the first of three runs whose
// steady steps allocate nothing.
func TestGraphStepAllocatesNothing(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	const S, n = 4, 14
	var allocs []uint64
	for run := range 3 {
		if run > 0 {
			t.Logf("run %d: steady steps allocated %v: running again", run, allocs)
		}
		e := newEngine(t, m, small) // a fresh engine: the same steps capture and launch each time
		e.SetGraphs(true)
		var ms runtime.MemStats
		last, seen := uint64(0), 0
		allocs = allocs[:0]
		_, err := e.Generate([]Request{{Prompt: prompt(2, 9, m.Config.Vocab), N: S, Params: sampled(5, n)}}, nil,
			func(int, int, int32) {
				runtime.ReadMemStats(&ms)
				if e.stats.DecodeSteps != seen && e.stats.GraphLaunches > 1 {
					allocs = append(allocs, ms.Mallocs-last)
				}
				seen = e.stats.DecodeSteps
				runtime.ReadMemStats(&ms) // after the bookkeeping above
				last = ms.Mallocs
			})
		require.NoError(t, err)
		require.Len(t, allocs, n-4) // steps 4 … n−1 launch a graph that was captured before
		if slices.Max(allocs) == 0 {
			break
		}
	}
	for j, a := range allocs {
		require.Zero(t, a, "steady step %d", j+4)
	}
}

// While the device profiles ops, a Generate call issues them one by one (the per-op table sees every
// step), and launches graphs again once profiling is off.
func TestGraphsPausedWhileProfiling(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, small)
	e.SetGraphs(true)
	reqs := []Request{{Prompt: prompt(4, 9, m.Config.Vocab), N: 3, Params: sampled(4, 8)}}
	d := m.Device()
	d.SetProfiling(true)
	_, err := e.Generate(reqs, nil, nil)
	d.SetProfiling(false)
	require.NoError(t, err)
	require.Zero(t, e.Stats().GraphLaunches)
	_, err = e.Generate(reqs, nil, nil)
	require.NoError(t, err)
	require.Positive(t, e.Stats().GraphLaunches)
}
