package generate

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// A decode step (kernels.DecodeAdvance, then the model, then the draws) issues the same ops with the same
// arguments for every batch of one shape, so it is captured once per shape as a graph
// (kernels.Device.Capture) and launched for every later step of that shape: one native call instead of
// hundreds of ~5 µs purego calls a step on a GPU.
//
// Shapes are buckets, not exact row counts. Under continuous batching the batch changes whenever a
// sequence finishes, so at exact counts a rollout's tail — S shrinking step by step — would be one shape
// after another, each run op by op before it could be captured (the built-in model's SeRL run with
// --max-batch 0: 28% of its decode steps, half of a rollout phase's). So a batch of S rows decodes as
// batchRows(S) rows, the rest padding rows (uploadBatch) that compute into KV blocks of their own and
// whose draws are dropped, and the first step of a new batch runs the same ops as a steady one (its
// state goes up one step behind and the advance brings it on). A shape is then the bucket, whether rows
// keep histories, and the groups of rows sharing a stop set (one sample call each, the last taking the
// padding rows): with one stop set, as in every SeRL phase, a handful of shapes serve a whole run.

// batchRows is the rows a batch of S sequences decodes as, for an engine of maxBatch rows: S up to 8,
// then the next multiple of 4 up to 32, of 8 up to 64 and of 16 beyond, capped at maxBatch. A bucket
// holds at most 15 padding rows and at most a quarter of its rows; 30 buckets serve batches up to 256.
func batchRows(S, maxBatch int) int {
	step := 16
	switch {
	case S <= 8:
		return S
	case S <= 32:
		step = 4
	case S <= 64:
		step = 8
	}
	return min((S+step-1)/step*step, maxBatch)
}

// padRows is the most padding rows a batch of an engine of maxBatch rows has: each takes a KV block of
// its own, which the engine sets aside at creation (Size counts them).
func padRows(maxBatch int) int {
	p := 0
	for S := 1; S <= maxBatch; S++ {
		p = max(p, batchRows(S, maxBatch)-S)
	}
	return p
}

// maxGraphs bounds the captured shapes an engine keeps (each is a few hundred ops): every bucket up to
// 256 rows, with room for a second stop-set layout or rows with and without histories.
const maxGraphs = 48

// graphKey is what a decode step's frozen arguments depend on besides the engine's own buffers: the
// rows, whether histories are kept, and the groups' row ranges, ban offsets and history flags.
type graphKey struct {
	B      int
	hist   bool
	groups string
}

// decodeGraph is one shape's state: warmed up (run once outside capture, so a GPU's scratch is sized),
// then captured.
type decodeGraph struct {
	key  graphKey
	warm bool
	g    *kernels.Graph
	used uint64 // LRU clock of the last step that used it
}

// graphCache holds the captured shapes of an engine.
type graphCache struct {
	on     bool
	paused bool // for this Generate call (the device is profiling)
	limit  int  // shapes kept (maxGraphs; tests lower it)
	byKey  map[graphKey]*decodeGraph
	clock  uint64
	cur    *decodeGraph    // the current batch's shape (nil: graphs off or no batch)
	lora   *model.Adapters // the adapters the graphs were captured with (they issue their own ops)
}

// graphsDefault is SERL_GRAPHS: "1" on, "0" off; unset, on (both libraries capture). On the CPU a launch
// replays the same ops, saving only the Go side of issuing them (CPU time per decode call within noise
// of the direct ops on the S benchmark), and it keeps the GPU's default path the one every test runs;
// ./build.sh test runs this package again with SERL_GRAPHS=0.
func graphsDefault() (bool, error) {
	switch v := os.Getenv("SERL_GRAPHS"); v {
	case "":
		return true, nil
	case "0", "1":
		return v == "1", nil
	default:
		return false, fmt.Errorf("generate: SERL_GRAPHS=%q: want 0 or 1", v)
	}
}

// SetGraphs turns the capture of decode steps on or off (the default is SERL_GRAPHS's); turning
// it off frees the graphs.
func (e *Engine) SetGraphs(on bool) {
	if !on {
		e.graphs.reset()
	}
	e.graphs.on = on
}

// reset frees every graph.
func (c *graphCache) reset() {
	for _, dg := range c.byKey {
		dg.g.Free()
	}
	c.byKey, c.cur = nil, nil
}

// begin is called when a Generate call starts: graphs captured with other adapters issue the wrong ops.
// While the device profiles ops (serl --op-profile, SERL_BENCH_PROFILE) the call issues them one by one,
// so that the per-op table covers every step.
func (c *graphCache) begin(lora *model.Adapters, profiling bool) {
	if lora != c.lora {
		c.reset()
		c.lora = lora
	}
	c.cur, c.paused = nil, profiling
}

// selectShape makes the shape of a new batch of B rows, padding included, current (uploadBatch calls it
// when the batch changes), evicting the least recently used shape when the cache is full.
func (c *graphCache) selectShape(B int, hist bool, groups []group) {
	c.cur = nil
	if !c.on || c.paused {
		return
	}
	var b []byte
	for _, g := range groups {
		b = strconv.AppendInt(b, int64(g.lo), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(g.hi), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(g.banAt), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(g.nBan), 10)
		b = append(b, ',')
		b = strconv.AppendBool(b, g.hist)
		b = append(b, ';')
	}
	k := graphKey{B: B, hist: hist, groups: string(b)}
	if dg := c.byKey[k]; dg != nil {
		c.cur = dg
		return
	}
	if c.byKey == nil {
		c.byKey = map[graphKey]*decodeGraph{}
	}
	if len(c.byKey) >= c.limit {
		var old *decodeGraph
		for _, dg := range c.byKey {
			if old == nil || dg.used < old.used {
				old = dg
			}
		}
		old.g.Free()
		delete(c.byKey, old.key)
	}
	c.cur = &decodeGraph{key: k}
	c.byKey[k] = c.cur
}

// graphStep runs a decode step of B rows through the current shape's graph: the shape's first step runs
// the ops directly (the warm-up, which sizes a GPU's scratch), the second captures them and every later
// one launches the graph.
func (e *Engine) graphStep(B int, in model.DecodeInputs, t0 time.Time) error {
	c := &e.graphs
	dg := c.cur
	c.clock++
	dg.used = c.clock
	if !dg.warm {
		if err := e.deviceOps(B, in, t0, true); err != nil {
			return err
		}
		dg.warm = true
		return nil
	}
	if dg.g == nil {
		g, err := e.m.Device().Capture(func() error { return e.deviceOps(B, in, t0, false) })
		if err != nil {
			return fmt.Errorf("generate: capturing the decode step of %d rows (SERL_GRAPHS=0 turns graphs off): %w", B, err)
		}
		dg.g = g
		e.stats.GraphCaptures++
	}
	if err := dg.g.Launch(); err != nil {
		return err
	}
	e.stats.GraphLaunches++
	return nil
}
