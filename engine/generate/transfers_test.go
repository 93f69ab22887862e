package generate

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels"
)

// stepTransfers runs reqs and returns the host↔device copies of each decode step j (index j−1): what
// happened between the last token callback before step j (the previous step's, or a sample's first
// token when sequences joined) and the first one of step j, which comes after its download.
func stepTransfers(t *testing.T, e *Engine, reqs []Request) []kernels.Transfers {
	d := e.m.Device()
	var steps []kernels.Transfers
	last, seen := d.Transfers(), e.stats.DecodeSteps // the engine counts across Generate calls
	_, err := e.Generate(reqs, nil, func(int, int, int32) {
		now := d.Transfers()
		if e.stats.DecodeSteps != seen {
			require.Equal(t, seen+1, e.stats.DecodeSteps)
			steps = append(steps, now.Sub(last))
			seen = e.stats.DecodeSteps
		}
		last = now
	})
	require.NoError(t, err)
	return steps
}

// transfers of one decode step of S rows, as the counts the comments of the tests state.
type stepKind struct {
	change  bool // the batch changed: the whole decode state goes up
	crossed int  // rows that took a new KV block this step (steady steps only)
}

// The decode state lives on the device, so a decode step of S sequences copies, exactly:
//
//   - always, one download of the sampled tokens and their log-probs: 2·4·S bytes;
//   - steady state (the same sequences as the step before): no upload at all — the drawn tokens become
//     the next inputs on the device, and positions, lengths, slots, steps, histories and ban flags advance
//     there (kernels.DecodeAdvance);
//   - a steady step where k rows cross into a new KV block: one upload of the k (index, block) table
//     patches after their count, 4 + 2·4·k bytes;
//   - a step whose batch changed (a sequence finished or joined; the first step): one upload of the whole
//     state — the sampler's per-row settings (temperature, top-p, presence penalty, top-k, step, ban
//     flag, min-new-tokens: 4·S bytes each; seed and sequence id: 8·S each), each group's stop ids
//     (4·nStop), the decode inputs one step behind (pending tokens, positions: 4·S each; the block
//     table: 4·S·MaxBlocks), and the histories (4·S·MaxSeqLen) when a row has a presence penalty —
//     which the device then copies into place for the step's advance.
//
// S counts a batch's rows, padding rows included (batchRows: none in these batches of up to 8).
//
// The logits never leave the device, and a steady step launched as a graph copies exactly as much as
// its ops issued one by one (each case runs both ways).
func TestDecodeStepTransfers(t *testing.T) {
	for _, graphs := range []bool{false, true} {
		t.Run(fmt.Sprintf("graphs=%v", graphs), func(t *testing.T) { testDecodeStepTransfers(t, graphs) })
	}
}

func testDecodeStepTransfers(t *testing.T, graphs bool) {
	m := loadFixture(t, "qwen2_f32")
	mb, ldHist := int64(0), int64(0)
	want := func(S int, k stepKind, nStop int, penalty bool) kernels.Transfers {
		s := int64(S)
		x := kernels.Transfers{Downloads: 1, DownloadBytes: 2 * 4 * s}
		switch {
		case k.change:
			x.Uploads, x.UploadBytes = 1, 7*4*s+2*8*s+4*int64(nStop)+2*4*s+4*s*mb
			if penalty {
				x.UploadBytes += 4 * s * ldHist
			}
		case k.crossed > 0:
			x.Uploads, x.UploadBytes = 1, 4+2*4*int64(k.crossed)
		}
		return x
	}
	change, steady := stepKind{change: true}, stepKind{}
	crossed := func(k int) stepKind { return stepKind{crossed: k} }

	// One request of S samples, a 9-token prompt, blocks of 5: decode step j writes position 8 + j, so
	// steps 2 and 7 start a block in every row; step 1 is the batch's first.
	t.Run("one batch", func(t *testing.T) {
		e := newEngine(t, m, small)
		e.SetGraphs(graphs)
		mb, ldHist = int64(e.maxBlocks), int64(e.sp.ldHist)
		const S, n = 4, 12
		for _, c := range []struct {
			name    string
			params  Params
			nStop   int
			penalty bool
		}{
			{"no stop ids", sampled(3, n), 0, false},
			{"two stop ids", func() Params {
				p := sampled(3, n)
				p.StopIDs, p.MinNewTokens = []int32{2, 5}, n // banned until the end, so no sequence stops early
				return p
			}(), 2, false},
			{"presence penalty", func() Params {
				p := sampled(3, n)
				p.PresencePenalty = 0.5
				return p
			}(), 0, true},
		} {
			t.Run(c.name, func(t *testing.T) {
				got := stepTransfers(t, e, []Request{{Prompt: prompt(1, 9, m.Config.Vocab), N: S, Params: c.params}})
				require.Len(t, got, n-1)
				for j, k := range []stepKind{change, crossed(S), steady, steady, steady, steady, crossed(S), steady, steady, steady, steady} {
					require.Equal(t, want(S, k, c.nStop, c.penalty), got[j], "decode step %d", j+1)
				}
				if graphs {
					require.Positive(t, e.Stats().GraphLaunches, "steady steps launch graphs")
				}
				t.Logf("%s: steady %s; block crossed %s; batch changed %s per decode step of %d sequences", c.name,
					got[2], got[1], got[0], S)
			})
		}
	})

	// Continuous batching in a batch of 4: A (2 samples, 4 tokens) and B (2 samples, 8 tokens) start
	// together; C (2 samples, 6 tokens), prefilled with them, joins when A finishes (step 4) and runs
	// alone once B finishes (step 8). C's decode step i is step i + 3, so C's rows start a block at step 5.
	t.Run("sequences finish and join", func(t *testing.T) {
		cfg := small
		cfg.MaxBatch = 4
		e := newEngine(t, m, cfg)
		e.SetGraphs(graphs)
		mb, ldHist = int64(e.maxBlocks), int64(e.sp.ldHist)
		req := func(seed, n int) Request {
			return Request{Prompt: prompt(seed, 9, m.Config.Vocab), N: 2, Params: sampled(uint64(seed), n)}
		}
		got := stepTransfers(t, e, []Request{req(1, 4), req(2, 8), req(3, 6)})
		wantSteps := []kernels.Transfers{want(4, change, 0, false), want(4, crossed(4), 0, false), want(4, steady, 0, false),
			want(4, change, 0, false), want(4, crossed(2), 0, false), want(4, steady, 0, false), want(4, crossed(2), 0, false),
			want(2, change, 0, false)}
		require.Equal(t, wantSteps, got)
	})
}
