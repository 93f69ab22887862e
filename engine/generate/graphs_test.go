package generate

import (
	"math"
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

// A batch shape is captured once: its first step runs the ops (the warm-up), the second captures and
// launches, later ones launch, and a later Generate call of the same shape launches from its first step.
// Another row count is another shape; the least recently used shape is evicted when the cache is full,
// and captured again when it comes back.
func TestGraphCapturedOncePerShape(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	e := newEngine(t, m, small)
	e.SetGraphs(true)
	e.graphs.limit = 2
	const n = 12 // n − 1 decode steps (the first token comes from the prefill): the first uploads the batch
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
	check(1, n-2)
	gen(4)
	check(1, 2*(n-2)+1)
	gen(2)
	check(2, 3*(n-2)+1)
	gen(3) // evicts S = 4, the least recently used
	check(3, 4*(n-2)+1)
	gen(2)
	check(3, 4*(n-2)+1+n-1)
	gen(4)
	check(4, 5*(n-2)+1+n-1)
	require.Len(t, e.graphs.byKey, 2)

	e.SetGraphs(false)
	require.Empty(t, e.graphs.byKey)
	gen(4)
	check(4, 5*(n-2)+1+n-1)
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
		require.Len(t, allocs, n-3) // steps 3 … n−1 launch a graph that was captured before
		if slices.Max(allocs) == 0 {
			break
		}
	}
	for j, a := range allocs {
		require.Zero(t, a, "steady step %d", j+3)
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

// The buckets: a batch never shrinks or passes the engine's rows, pads with at most 15 rows and at most
// a quarter of its bucket (padRows bounds them all), and batches of up to 256 rows take 30 shapes.
func TestBatchRows(t *testing.T) {
	for _, maxBatch := range []int{1, 5, 20, 64, 256, 1000} {
		shapes := map[int]bool{}
		for S := 1; S <= maxBatch; S++ {
			B := batchRows(S, maxBatch)
			require.True(t, B >= S && B <= maxBatch, "S %d of %d: %d rows", S, maxBatch, B)
			require.LessOrEqual(t, B-S, min(15, B/4, padRows(maxBatch)), "S %d of %d: %d rows", S, maxBatch, B)
			shapes[B] = true
		}
		if maxBatch == 256 {
			require.Len(t, shapes, 30)
		}
	}
	for maxBatch, want := range map[int]int{8: 0, 9: 0, 12: 3, 64: 7, 256: 15, 1000: 15} {
		require.Equal(t, want, padRows(maxBatch), "maxBatch %d", maxBatch)
	}
}

// Padding a batch to its bucket changes nothing the sequences draw: the padded engine gives the tokens
// and finish reasons of one decoding every batch at its exact row count, and their log-probs to float
// rounding (a matrix product of more rows may sum in another order, as when other prompts share a
// batch), over the mix of graphRequests (several stop sets, histories, bans, greedy and sampled rows) in a
// batch of 20 that shrinks through the buckets 20, 16 and 12 as samples finish. Padded, graphs change
// no bit.
func TestPaddingMatchesExactRows(t *testing.T) {
	for _, name := range []string{"llama_f32", "qwen2_bf16"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			reqs := graphRequests(m.Config.Vocab)
			cfg := small
			cfg.MaxBatch = 20
			run := func(exact, graphs bool) ([][]Sample, Stats) {
				e := newEngine(t, m, cfg)
				e.dec.exactRows = exact
				e.SetGraphs(graphs)
				out, err := e.Generate(reqs, nil, nil)
				require.NoError(t, err)
				return out, e.Stats()
			}
			want, es := run(true, false)
			require.Zero(t, es.PaddingRows)
			padded, ps := run(false, false)
			require.Positive(t, ps.PaddingRows, "some batches were padded")
			worst := 0.0
			for i := range want {
				for j, w := range want[i] {
					p := padded[i][j]
					require.Equal(t, w.Tokens, p.Tokens, "request %d sample %d", i, j)
					require.Equal(t, w.Finish, p.Finish, "request %d sample %d", i, j)
					for k := range w.LogProbs {
						worst = max(worst, math.Abs(float64(w.LogProbs[k]-p.LogProbs[k])))
					}
				}
			}
			require.LessOrEqual(t, worst, 2e-6, "log-prob difference") // 1.1e-6 measured (bf16; f32 0)
			graphed, gs := run(false, true)
			require.Equal(t, padded, graphed)
			require.Positive(t, gs.GraphLaunches)
			t.Logf("%d decode steps, %d padding rows, log-probs within %.2g of exact rows; graphs: %d launches, %d captures",
				ps.DecodeSteps, ps.PaddingRows, worst, gs.GraphLaunches, gs.GraphCaptures)
		})
	}
}

// What padding rows hold never reaches a sequence: padded batches whose padding rows decode other tokens
// give the same bits, with graphs and without. Unlike TestPaddingMatchesExactRows's comparison with
// exact row counts, this holds on any device whatever kernel its matrix library picks per row count:
// the two runs issue the same products at the same shapes and differ only in the padding rows' values.
func TestPaddingRowsReachNoSequence(t *testing.T) {
	for _, name := range []string{"llama_f32", "qwen2_bf16"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			reqs := graphRequests(m.Config.Vocab)
			cfg := small
			cfg.MaxBatch = 20
			run := func(padToken int32, graphs bool) [][]Sample {
				e := newEngine(t, m, cfg)
				e.dec.padToken = padToken
				e.SetGraphs(graphs)
				out, err := e.Generate(reqs, nil, nil)
				require.NoError(t, err)
				require.Positive(t, e.Stats().PaddingRows, "some batches were padded")
				return out
			}
			want := run(0, false)
			for _, pad := range []int32{int32(m.Config.Vocab) - 1, 7} {
				require.Equal(t, want, run(pad, false), "padding rows from token %d", pad)
				require.Equal(t, want, run(pad, true), "padding rows from token %d, graphs", pad)
			}
		})
	}
}

// A rollout's tail, its batch shrinking as samples finish one after another, runs as graphs: one per
// bucket it passes through, not one per row count. A shape's first step runs its ops (the warm-up), so
// the first Generate call captures the buckets that last two steps or more; the second call captures
// the rest on their first step and launches a graph for every decode step, as every later call does.
func TestShrinkingBatchLaunchesGraphs(t *testing.T) {
	m := loadFixture(t, "qwen2_f32")
	var reqs []Request
	for i := range 30 { // sample i draws 2 + i tokens: the batch loses a row every decode step
		reqs = append(reqs, Request{Prompt: prompt(i, 5+i%7, m.Config.Vocab), N: 1, Params: sampled(uint64(i), 2+i)})
	}
	cfg := small
	cfg.MaxBatch = 32
	e := newEngine(t, m, cfg)
	e.SetGraphs(true)
	buckets := map[int]bool{}
	for S := 1; S <= len(reqs); S++ {
		buckets[batchRows(S, cfg.MaxBatch)] = true
	}
	var last Stats
	for call := range 3 {
		_, err := e.Generate(reqs, nil, nil)
		require.NoError(t, err)
		st := e.Stats()
		steps, launches := st.DecodeSteps-last.DecodeSteps, st.GraphLaunches-last.GraphLaunches
		require.Equal(t, len(reqs), steps)
		if call > 0 {
			require.Equal(t, len(buckets), st.GraphCaptures, "call %d: each bucket captured once: %v", call, buckets)
			require.Equal(t, steps, launches, "call %d: every step launched", call)
		}
		t.Logf("call %d: %d decode steps of 30 … 1 sequences, %d launched; %d captures in all (%d buckets)", call,
			steps, launches, st.GraphCaptures, len(buckets))
		last = st
	}
}
