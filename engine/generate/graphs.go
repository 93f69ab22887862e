package generate

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// A steady decode step (the batch the device state describes, advanced there by kernels.DecodeAdvance)
// issues the same ops with the same arguments every step, so it is captured once as a graph
// (kernels.Device.Capture) and launched on later steady steps: one native call instead of hundreds of
// ~5 µs purego calls a step on a GPU.
//
// One graph per batch shape, exact rather than padded to a bucket: what a capture freezes is not only
// the row count S but the sampler's layout (which depends on S and the number of stop ids) and one sample
// call per group of rows sharing a stop set (its row range, ban offset and whether it reads histories),
// so a bucket of sizes would still need one graph per group structure; and a padding row would need a
// KV block of its own to append to (decode_advance and kv_append write every row's slot) and inert
// sampler settings uploaded with every batch. Exact shapes keep the replay bit-identical to the ops it
// replaces at the cost of one warm-up step and one capture per shape; shapes recur (a full batch under
// continuous batching is one shape), and the cache keeps the most recently used maxGraphs of them.

// maxGraphs bounds the captured shapes an engine keeps (each is a few hundred ops).
const maxGraphs = 32

// graphKey is what a steady step's frozen arguments depend on besides the engine's own buffers: the
// rows, whether histories are kept, and the groups' row ranges, ban offsets and history flags.
type graphKey struct {
	S      int
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

// SetGraphs turns the capture of steady decode steps on or off (the default is SERL_GRAPHS's); turning
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

// selectShape makes the shape of a new batch of S rows current (uploadBatch calls it when the batch
// changes), evicting the least recently used shape when the cache is full.
func (c *graphCache) selectShape(S int, hist bool, groups []group) {
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
	k := graphKey{S: S, hist: hist, groups: string(b)}
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

// graphStep runs a steady step of S rows through the current shape's graph: the first such step runs the
// ops directly (the warm-up), the second captures them and every later one launches the graph.
func (e *Engine) graphStep(S int, in model.DecodeInputs, t0 time.Time) error {
	c := &e.graphs
	dg := c.cur
	c.clock++
	dg.used = c.clock
	if !dg.warm {
		if err := e.deviceOps(S, true, in, t0, true); err != nil {
			return err
		}
		dg.warm = true
		return nil
	}
	if dg.g == nil {
		g, err := e.m.Device().Capture(func() error { return e.deviceOps(S, true, in, t0, false) })
		if err != nil {
			return fmt.Errorf("generate: capturing the decode step of %d rows (SERL_GRAPHS=0 turns graphs off): %w", S, err)
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
