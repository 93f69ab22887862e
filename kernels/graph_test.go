package kernels

// Captured op sequences (Device.Capture, Graph): registered in the conformance suite, so they run on
// every backend (CUDA where a GPU answers), on every SIMD path and with SERL_CPU_HOST_VISIBLE=0.

import (
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("graph/sequence", testGraphSequence)
	register("graph/launch-many", testGraphLaunchMany)
	register("graph/refusals", testGraphRefusals)
	register("graph/replay-error", testGraphReplayError)
	register("graph/attention", testGraphAttention)
	register("graph/whiten", testGraphWhiten)
}

// graphStep is a decode-shaped chain of ops over fixed buffers: embedding → RMSNorm (bf16 out) → a bf16
// product into f32 logits → a residual-style add → a device copy and a memset → log-probs → sampling.
type graphStep struct {
	n, dim, vocab int
	// inputs, rewritten between launches
	ids, targets, steps, topK Tensor
	bias                      Tensor
	// fixed
	table, w, wout                        Tensor
	temp, topP, pen                       Tensor
	seeds, seqIDs                         Tensor
	x, y, logits, logitsCopy, zeroed      Tensor
	logp, entropy, lse, tokens, sampleLog Tensor
}

func newGraphStep(h *harness, n, dim, vocab int) *graphStep {
	s := &graphStep{n: n, dim: dim, vocab: vocab}
	s.table, _ = h.upload(F32, h.randn(vocab*dim, 1), vocab, dim)
	s.w, _ = h.upload(F32, h.randn(dim, 0.3), dim)
	s.wout, _ = h.upload(BF16, h.randn(dim*vocab, 0.5), dim, vocab)
	temp, topP, pen := make([]float32, n), make([]float32, n), make([]float32, n)
	seeds, seqIDs := make([]uint64, n), make([]uint64, n)
	for r := range temp {
		temp[r] = []float32{0, 0.8, 1, 1.2}[r%4]
		topP[r] = []float32{1, 0.9}[r%2]
		seeds[r], seqIDs[r] = 42, uint64(r)
	}
	s.temp, s.topP, s.pen = h.f32(temp), h.f32(topP), h.f32(pen)
	s.seeds, s.seqIDs = h.alloc(U64, n), h.alloc(U64, n)
	require.NoError(h.t, Upload(s.seeds, seeds))
	require.NoError(h.t, Upload(s.seqIDs, seqIDs))
	s.ids, s.targets, s.steps, s.topK = h.alloc(I32, n), h.alloc(I32, n), h.alloc(I32, n), h.alloc(I32, n)
	s.bias = h.alloc(F32, n, vocab)
	s.x, s.y = h.alloc(F32, n, dim), h.alloc(BF16, n, dim)
	s.logits, s.logitsCopy, s.zeroed = h.alloc(F32, n, vocab), h.alloc(F32, n, vocab), h.alloc(F32, n, vocab)
	s.logp, s.entropy, s.lse, s.sampleLog = h.alloc(F32, n), h.alloc(F32, n), h.alloc(F32, n), h.alloc(F32, n)
	s.tokens = h.alloc(I32, n)
	return s
}

// inputs writes round r's inputs (different ids, targets, steps, top-k and bias every round).
func (s *graphStep) inputs(h *harness, r int) {
	ids, targets, steps, topK := make([]int32, s.n), make([]int32, s.n), make([]int32, s.n), make([]int32, s.n)
	for i := range ids {
		ids[i] = int32(h.rng.IntN(s.vocab))
		targets[i] = int32(h.rng.IntN(s.vocab))
		steps[i] = int32(r*s.n + i)
		topK[i] = []int32{0, 3, 50}[(i+r)%3]
	}
	require.NoError(h.t, Upload(s.ids, ids))
	require.NoError(h.t, Upload(s.targets, targets))
	require.NoError(h.t, Upload(s.steps, steps))
	require.NoError(h.t, Upload(s.topK, topK))
	require.NoError(h.t, Upload(s.bias, h.randn(s.n*s.vocab, 2)))
}

// run issues the step's ops on d (directly, or into a capture).
func (s *graphStep) run(d *Device) error {
	return firstErr(
		d.EmbeddingFwd(s.x, s.table, s.ids),
		d.RMSNormFwd(s.y, Tensor{}, s.x, s.w, 1e-6),
		d.MatMul(MatMul{A: s.y, B: s.wout, C: s.logits, Alpha: 1}),
		d.Add(s.logits, s.logits, s.bias, 0.5),
		d.Copy(s.logitsCopy, s.logits),
		d.Zero(s.zeroed),
		d.LogProbFwd(s.logp, s.entropy, s.lse, s.logits, s.targets, 1, false),
		d.Sample(Sample{Logits: s.logitsCopy, Temperature: s.temp, TopP: s.topP, PresencePenalty: s.pen, TopK: s.topK,
			Seeds: s.seeds, SeqIDs: s.seqIDs, Steps: s.steps, Tokens: s.tokens, LogP: s.sampleLog}),
	)
}

// outputs are the step's results as raw bits, for bit-for-bit comparison.
func (s *graphStep) outputs(h *harness) [][]uint32 {
	var out [][]uint32
	for _, t := range []Tensor{s.x, s.logits, s.logitsCopy, s.zeroed, s.logp, s.entropy, s.lse, s.tokens, s.sampleLog} {
		b := make([]uint32, t.Len())
		if t.DType() == I32 {
			v := make([]int32, t.Len())
			require.NoError(h.t, Download(v, t))
			for i := range v {
				b[i] = uint32(v[i])
			}
		} else {
			v := h.get(t)
			for i := range v {
				b[i] = math.Float32bits(v[i])
			}
		}
		out = append(out, b)
	}
	y := h.bits(s.y)
	b := make([]uint32, len(y))
	for i := range y {
		b[i] = uint32(y[i])
	}
	return append(out, b)
}

// poison fills every output with NaN (tokens with −1), so that a launch that skips an op fails.
func (s *graphStep) poison(h *harness) {
	for _, t := range []Tensor{s.x, s.logits, s.logitsCopy, s.zeroed, s.logp, s.entropy, s.lse, s.sampleLog} {
		nan := make([]float32, t.Len())
		for i := range nan {
			nan[i] = float32(math.NaN())
		}
		require.NoError(h.t, Upload(t, nan))
	}
	nanBF := make([]uint16, s.y.Len())
	for i := range nanBF {
		nanBF[i] = 0x7FC0
	}
	require.NoError(h.t, Upload(s.y, nanBF))
	neg := make([]int32, s.n)
	for i := range neg {
		neg[i] = -1
	}
	require.NoError(h.t, Upload(s.tokens, neg))
}

// testGraphSequence: a captured step records without running (its outputs stay poisoned), and every
// launch after new inputs gives bit for bit what the same ops give run directly.
func testGraphSequence(t *testing.T, h *harness) {
	d := h.d
	for _, c := range [][3]int{{1, 7, 5}, {6, 33, 257}, {17, 64, 1000}} {
		s := newGraphStep(h, c[0], c[1], c[2])
		s.inputs(h, 0)
		require.NoError(t, s.run(d), "warm-up") // a GPU's scratch grows outside capture
		s.poison(h)
		x0 := s.outputs(h)
		before := d.Transfers()
		g, err := d.Capture(func() error { return s.run(d) })
		require.NoError(t, err)
		require.Equal(t, before, d.Transfers(), "a capture moves no data")
		require.Equal(t, 8, g.Ops())
		require.Equal(t, x0, s.outputs(h), "captured ops must not run")
		for r := 1; r <= 3; r++ {
			s.inputs(h, r)
			s.poison(h)
			require.NoError(t, g.Launch())
			got := s.outputs(h)
			s.poison(h)
			require.NoError(t, s.run(d))
			want := s.outputs(h)
			require.Equal(t, want, got, "n=%d dim=%d vocab=%d round %d: graph vs direct", c[0], c[1], c[2], r)
		}
		g.Free()
		g.Free() // a second Free does nothing
		require.Error(t, g.Launch(), "a freed graph")
	}
}

// testGraphLaunchMany: an in-place accumulation launched many times reads the memory its previous
// launch wrote: x ← x + 1·y, 200 times, is x0 + 200·y exactly in small integers.
func testGraphLaunchMany(t *testing.T, h *harness) {
	d := h.d
	const n, launches = 1000, 200
	x0, y := make([]float32, n), make([]float32, n)
	for i := range x0 {
		x0[i], y[i] = float32(i%17-8), float32(i%5-2)
	}
	x, yt := h.f32(x0), h.f32(y)
	acc := h.alloc(F32, n)
	g, err := d.Capture(func() error {
		return firstErr(d.Add(x, x, yt, 1), d.Copy(acc, x))
	})
	require.NoError(t, err)
	defer g.Free()
	for i := 0; i < launches; i++ {
		require.NoError(t, g.Launch())
	}
	want := make([]float32, n)
	for i := range want {
		want[i] = x0[i] + launches*y[i]
	}
	require.Equal(t, want, h.get(x))
	require.Equal(t, want, h.get(acc))

	// an empty capture is a graph that does nothing
	e, err := d.Capture(func() error { return nil })
	require.NoError(t, err)
	require.Equal(t, 0, e.Ops())
	require.NoError(t, e.Launch())
	e.Free()
}

// testGraphRefusals: what a capture refuses fails the whole capture with an error that says so, and
// leaves the device working and able to capture again.
func testGraphRefusals(t *testing.T, h *harness) {
	d := h.d
	a, b := h.f32([]float32{1, 2, 3}), h.f32([]float32{10, 20, 30})
	out := h.alloc(F32, 3)
	pos, actCu := h.i32([]int32{0}), h.i32([]int32{0, 3})
	host := make([]float32, 3)
	spare := h.d.MustAlloc(F32, 4) // freed during capture: refused, released when the capture ends
	live, _ := d.MemoryInUse()
	cases := []struct {
		name string
		fn   func() error
		want string // in the capture's error
	}{
		{"alloc", func() error { _, err := d.Alloc(F32, 4); return err }, "alloc"},
		{"upload", func() error { return Upload(a, host) }, "upload"},
		{"download", func() error { return Download(host, a) }, "download"},
		{"free", func() error { d.Free(spare); return nil }, "free"},
		{"sync", func() error { return d.Sync() }, "sync"},
		{"nested", func() error { _, err := d.Capture(func() error { return nil }); return err }, "nest"},
		{"gather_actions", func() error { return d.GatherActions(out, a, pos, actCu, 1) }, "serl_gather_actions cannot be captured"},
		{"op error", func() error {
			return d.MatMul(MatMul{A: a.MustReshape(1, 3), B: b.MustReshape(3, 1), C: out.MustReshape(3, 1), Alpha: 1})
		}, "matmul"},
	}
	for _, c := range cases {
		g, err := d.Capture(func() error {
			// an op before the refusal is recorded; ignoring the refusal's error still gets no graph
			if err := d.Add(out, a, b, 1); err != nil {
				return err
			}
			if err := c.fn(); c.name == "op error" {
				return err // an op's argument error reaches fn, which returns it
			}
			return d.Scale(out, out, 2)
		})
		require.Error(t, err, c.name)
		require.Nil(t, g, c.name)
		require.Contains(t, err.Error(), c.want, c.name)
		// the device runs ops again, directly
		require.NoError(t, d.Add(out, a, b, 1), c.name)
		require.Equal(t, []float32{11, 22, 33}, h.get(out), c.name)
	}
	l, _ := d.MemoryInUse()
	require.Equal(t, live-spare.Bytes(), l, "the buffer freed during capture is released when it ends")

	// a launch during capture is refused
	g, err := d.Capture(func() error { return d.Scale(out, out, 2) })
	require.NoError(t, err)
	defer g.Free()
	_, err = d.Capture(func() error { return g.Launch() })
	require.ErrorIs(t, err, ErrCapturing)

	// a panic inside the capture ends it
	require.Panics(t, func() {
		_, _ = d.Capture(func() error { panic("boom") })
	})
	require.NoError(t, Upload(out, []float32{1, 1, 1}))
	require.NoError(t, g.Launch())
	require.Equal(t, []float32{2, 2, 2}, h.get(out))
}

// testGraphReplayError: an index a replayed op finds out of range is reported (by the launch on the CPU,
// by the next download on a GPU) naming the op, and the next launch with good inputs succeeds.
func testGraphReplayError(t *testing.T, h *harness) {
	d := h.d
	const vocab, dim = 11, 8
	table, _ := h.upload(F32, h.randn(vocab*dim, 1), vocab, dim)
	ids := h.i32([]int32{1, 2, 3})
	out := h.alloc(F32, 3, dim)
	require.NoError(t, d.EmbeddingFwd(out, table, ids))
	g, err := d.Capture(func() error { return d.EmbeddingFwd(out, table, ids) })
	require.NoError(t, err)
	defer g.Free()
	require.NoError(t, Upload(ids, []int32{1, vocab, 3}))
	err = g.Launch()
	if err == nil {
		// an asynchronous device reports at the next download (or Sync)
		err = Download(make([]float32, out.Len()), out)
	}
	require.Error(t, err)
	require.Contains(t, err.Error(), "embedding_fwd")
	require.Contains(t, err.Error(), "ids[1] = 11")
	require.NoError(t, d.Sync(), "the error is reported once")
	require.NoError(t, Upload(ids, []int32{4, 0, 10}))
	require.NoError(t, g.Launch())
	got := h.get(out)
	tab := h.get(table)
	for r, id := range []int{4, 0, 10} {
		require.Equal(t, tab[id*dim:(id+1)*dim], got[r*dim:(r+1)*dim])
	}
}

// BenchmarkGraphLaunch: a launch-bound, decode-shaped chain — 24 layers of RMSNorm, two small products
// and a residual add on 16 rows of width 64 (97 ops) — issued op by op ("direct") and as one captured
// graph ("graph"), each step followed by a Sync. On a GPU the difference is the per-op launch cost that
// graphs remove; on the CPU they do the same work.
func BenchmarkGraphLaunch(b *testing.B) {
	const layers, rows, dim = 24, 16, 64
	for _, d := range testDevices(b) {
		if os.Getenv("SERL_TEST_DEVICES") == "cuda" && d.Backend() != "cuda" {
			continue
		}
		var bufs []Tensor
		alloc := func(dt DType, dims ...int) Tensor {
			t := d.MustAlloc(dt, dims...)
			bufs = append(bufs, t)
			return t
		}
		x, y, hid := alloc(F32, rows, dim), alloc(F32, rows, dim), alloc(F32, rows, 2*dim)
		w, w1, w2 := alloc(F32, dim), alloc(F32, dim, 2*dim), alloc(F32, 2*dim, dim)
		for _, t := range []Tensor{x, w, w1, w2} {
			v := make([]float32, t.Len())
			for i := range v {
				v[i] = float32(i%7-3) / 64
			}
			require.NoError(b, Upload(t, v))
		}
		step := func() error {
			for l := 0; l < layers; l++ {
				if err := firstErr(d.RMSNormFwd(y, Tensor{}, x, w, 1e-6),
					d.MatMul(MatMul{A: y, B: w1, C: hid, Alpha: 1}),
					d.MatMul(MatMul{A: hid, B: w2, C: y, Alpha: 1}),
					d.Add(x, x, y, 0.01)); err != nil {
					return err
				}
			}
			return d.Scale(x, x, 1)
		}
		require.NoError(b, step()) // warm-up: scratch grows outside capture
		g, err := d.Capture(step)
		require.NoError(b, err)
		for _, mode := range []string{"direct", "graph"} {
			b.Run(d.Backend()+"/"+mode, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if mode == "graph" {
						require.NoError(b, g.Launch())
					} else {
						require.NoError(b, step())
					}
					require.NoError(b, d.Sync())
				}
				b.ReportMetric(float64(g.Ops()), "ops/step")
			})
		}
		g.Free()
		for _, t := range bufs {
			d.Free(t)
		}
	}
}

func init() { register("graph/decode-attention", testGraphDecodeAttention) }

// testGraphDecodeAttention: the paged-cache half of a decode step — RoPE on q and k at each sequence's
// position, append k and v at its slot, attend over its blocks — captured once and launched for several
// steps while positions, slots and lengths advance in device memory, against the same ops run directly.
func testGraphDecodeAttention(t *testing.T, h *harness) {
	d := h.d
	const seqs, nh, nkv, dim, bs, maxBlocks = 5, 4, 2, 16, 4, 6
	const nBlocks = seqs * maxBlocks
	for _, dt := range []DType{F32, BF16} {
		kc, vc := h.alloc(dt, nBlocks, bs, nkv, dim), h.alloc(dt, nBlocks, bs, nkv, dim)
		require.NoError(t, d.Zero(kc))
		require.NoError(t, d.Zero(vc))
		cache := KVCache{K: kc, V: vc}
		table := make([]int32, seqs*maxBlocks)
		for i := range table {
			table[i] = int32((i*7 + 3) % nBlocks) // a permutation: every sequence has blocks of its own
		}
		blockTable := h.i32(table, seqs, maxBlocks)
		pos, slots, lens := h.alloc(I32, seqs), h.alloc(I32, seqs), h.alloc(I32, seqs)
		q, k, v := h.alloc(dt, seqs, nh, dim), h.alloc(dt, seqs, nkv, dim), h.alloc(dt, seqs, nkv, dim)
		qr, kr := h.alloc(dt, seqs, nh, dim), h.alloc(dt, seqs, nkv, dim)
		out := h.alloc(dt, seqs, nh, dim)
		inv := h.f32(hfInvFreq(dim, 10000))
		step := func() error {
			return firstErr(d.RoPE(qr, q, pos, inv, dim, false, false), d.RoPE(kr, k, pos, inv, dim, false, false),
				d.KVAppend(cache, kr, v, slots), d.DecodeAttention(out, qr, cache, blockTable, lens, 0.25))
		}
		// step s of sequence i: position p = s + i, its slot in block p/bs of the sequence's table
		inputs := func(s int) {
			p, sl, ln := make([]int32, seqs), make([]int32, seqs), make([]int32, seqs)
			for i := range p {
				p[i] = int32(s + i)
				sl[i] = table[i*maxBlocks+int(p[i])/bs]*bs + p[i]%bs
				ln[i] = p[i] + 1
			}
			require.NoError(t, Upload(pos, p))
			require.NoError(t, Upload(slots, sl))
			require.NoError(t, Upload(lens, ln))
			for _, x := range []Tensor{q, k, v} {
				hx, _ := h.upload(dt, h.randn(x.Len(), 1), x.Shape()...)
				require.NoError(t, d.Copy(x, hx))
			}
		}
		inputs(0)
		require.NoError(t, step()) // warm-up
		g, err := d.Capture(step)
		require.NoError(t, err)
		nan := h.poisonedAs(dt, seqs, nh, dim)
		for s := 1; s < 12; s++ {
			inputs(s)
			require.NoError(t, d.Copy(out, nan)) // so the launch must write every element
			require.NoError(t, g.Launch())
			got := h.getAny(out)
			require.NoError(t, step()) // the same step again, directly: the cache gets the same values
			require.Equal(t, h.getAny(out), got, "%s step %d: graph vs direct", dt, s)
			for _, x := range got {
				require.False(t, math.IsNaN(float64(x)), "%s step %d", dt, s)
			}
		}
		// a length past the table, found on replay
		require.NoError(t, Upload(lens, []int32{1, 2, maxBlocks*bs + 1, 1, 1}))
		err = g.Launch()
		if err == nil {
			err = d.Sync()
		}
		require.ErrorContains(t, err, "seq_lens[2] = 25")
		g.Free()
	}
}

func init() { register("graph/decode-advance", testGraphDecodeAdvance) }

// testGraphDecodeAdvance: a decode step whose inputs the device advances itself — decode_advance (the
// drawn token becomes the next id; position, length, slot and step move on), then RoPE, KV append and
// paged attention — captured once and launched step after step with only the drawn tokens rewritten,
// against the same ops run directly on a second copy of the state: outputs and state bit for bit.
func testGraphDecodeAdvance(t *testing.T, h *harness) {
	d := h.d
	const seqs, nh, nkv, dim, bs, maxBlocks = 5, 4, 2, 16, 4, 6
	const nBlocks = seqs * maxBlocks
	table := make([]int32, seqs*maxBlocks)
	for i := range table {
		table[i] = int32((i*7 + 3) % nBlocks)
	}
	tokens := h.alloc(I32, seqs)
	q, _ := h.upload(F32, h.randn(seqs*nh*dim, 1), seqs, nh, dim)
	k, _ := h.upload(F32, h.randn(seqs*nkv*dim, 1), seqs, nkv, dim)
	v, _ := h.upload(F32, h.randn(seqs*nkv*dim, 1), seqs, nkv, dim)
	inv := h.f32(hfInvFreq(dim, 10000))
	type lane struct {
		adv           DecodeAdvance
		cache         KVCache
		qr, kr, out   Tensor
		hist, banRows Tensor
	}
	newLane := func() *lane {
		l := &lane{cache: KVCache{K: h.alloc(F32, nBlocks, bs, nkv, dim), V: h.alloc(F32, nBlocks, bs, nkv, dim)},
			qr: h.alloc(F32, seqs, nh, dim), kr: h.alloc(F32, seqs, nkv, dim), out: h.alloc(F32, seqs, nh, dim)}
		require.NoError(t, d.Zero(l.cache.K))
		require.NoError(t, d.Zero(l.cache.V))
		pos := make([]int32, seqs)
		for i := range pos {
			pos[i] = int32(i) - 1 // the first advance puts row i at position i
		}
		l.adv = DecodeAdvance{Tokens: tokens, Table: h.i32(table, seqs, maxBlocks), IDs: h.alloc(I32, seqs),
			Pos: h.i32(pos), SeqLens: h.alloc(I32, seqs), Slots: h.alloc(I32, seqs), Steps: h.i32(make([]int32, seqs)),
			Hist: h.i32(make([]int32, seqs*16), seqs, 16), BanRows: h.alloc(I32, seqs), MinNew: h.i32([]int32{0, 1, 2, 3, 4}),
			BlockSize: bs}
		return l
	}
	step := func(l *lane) error {
		return firstErr(d.DecodeAdvance(l.adv),
			d.RoPE(l.qr, q, l.adv.Pos, inv, dim, false, false), d.RoPE(l.kr, k, l.adv.Pos, inv, dim, false, false),
			d.KVAppend(l.cache, l.kr, v, l.adv.Slots),
			d.DecodeAttention(l.out, l.qr, l.cache, l.adv.Table, l.adv.SeqLens, 0.25))
	}
	state := func(l *lane) [][]int32 {
		var s [][]int32
		for _, x := range []Tensor{l.adv.IDs, l.adv.Pos, l.adv.SeqLens, l.adv.Slots, l.adv.Steps, l.adv.Hist, l.adv.BanRows} {
			s = append(s, h.getI32(x))
		}
		return s
	}
	g, direct := newLane(), newLane()
	// warm-up on a throwaway lane (a GPU's scratch grows outside capture)
	require.NoError(t, step(newLane()))
	graph, err := d.Capture(func() error { return step(g) })
	require.NoError(t, err)
	defer graph.Free()
	for s := 0; s < 12; s++ {
		drawn := make([]int32, seqs)
		for i := range drawn {
			drawn[i] = int32(100*s + i)
		}
		require.NoError(t, Upload(tokens, drawn)) // the sampler's output, in a real step
		require.NoError(t, graph.Launch())
		require.NoError(t, step(direct))
		require.Equal(t, state(direct), state(g), "step %d: state", s)
		require.Equal(t, drawn, h.getI32(g.adv.IDs), "step %d: the drawn tokens are the next ids", s)
		want, got := h.get(direct.out), h.get(g.out)
		require.Equal(t, want, got, "step %d: attention", s)
		for _, x := range got {
			require.False(t, math.IsNaN(float64(x)), "step %d", s)
		}
	}
	require.Equal(t, []int32{12, 13, 14, 15, 16}, h.getI32(g.adv.SeqLens), "12 steps from lengths 0..4")
}

// testGraphAttention: packed attention forward and backward (gradients zeroed first) captured once, with
// max_len as the launch bound, replay bit for bit what the same ops give run directly, while the packing
// (cu_seqlens contents: same sequence count and tokens, every length ≤ max_len) and the inputs change
// between launches; a packing with a sequence longer than max_len is reported (by the launch on the
// CPU, at the next download on a GPU), and the next good launch succeeds.
func testGraphAttention(t *testing.T, h *harness) {
	d := h.d
	const T, S, maxLen = 60, 5, 40
	packs := [][]int{{5, 17, 0, 33, 5}, {40, 20, 0, 0, 0}, {12, 12, 12, 12, 12}, {0, 1, 39, 20, 0}}
	for _, c := range []struct {
		dt           DType
		nh, kvh, dim int
	}{{F32, 4, 2, 16}, {BF16, 4, 2, 64}} {
		name := fmt.Sprintf("%s H=%d KVH=%d D=%d", c.dt, c.nh, c.kvh, c.dim)
		nq, nk := T*c.nh*c.dim, T*c.kvh*c.dim
		q, k, v, dout := h.alloc(c.dt, T, c.nh, c.dim), h.alloc(c.dt, T, c.kvh, c.dim), h.alloc(c.dt, T, c.kvh, c.dim), h.alloc(c.dt, T, c.nh, c.dim)
		out, lse := h.alloc(c.dt, T, c.nh, c.dim), h.alloc(F32, T, c.nh)
		dq, dk, dv := h.alloc(c.dt, T, c.nh, c.dim), h.alloc(c.dt, T, c.kvh, c.dim), h.alloc(c.dt, T, c.kvh, c.dim)
		cu := h.i32(cuSeqlens(packs[0]))
		outputs := []Tensor{out, lse, dq, dk, dv}
		inputs := func(r int) {
			for _, x := range []struct {
				t Tensor
				n int
			}{{q, nq}, {k, nk}, {v, nk}, {dout, nq}} {
				setAny(t, x.t, h.randn(x.n, 1.5))
			}
			require.NoError(t, Upload(cu, cuSeqlens(packs[r%len(packs)])))
		}
		poison := func() {
			for _, x := range outputs {
				setAny(t, x, nanFloats(x.Len()))
			}
		}
		read := func() [][]uint32 {
			var r [][]uint32
			for _, x := range outputs {
				r = append(r, rawBits(h, x))
			}
			return r
		}
		run := func() error {
			return firstErr(
				d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: maxLen, Scale: 0.125}),
				d.Zero(dq), d.Zero(dk), d.Zero(dv),
				d.AttentionBwd(AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: dout, DQ: dq, DK: dk, DV: dv,
					CuSeqlens: cu, MaxLen: maxLen, Scale: 0.125}))
		}
		inputs(0)
		require.NoError(t, run(), name+" warm-up") // a GPU's scratch grows outside capture
		poison()
		before := d.Transfers()
		g, err := d.Capture(run)
		require.NoError(t, err, name)
		require.Equal(t, before, d.Transfers(), name+": a capture moves no data")
		require.Equal(t, 5, g.Ops(), name)
		poisoned := read()
		for r := 1; r <= len(packs); r++ {
			inputs(r)
			poison()
			require.Equal(t, poisoned, read(), name+": captured ops must not run")
			require.NoError(t, g.Launch(), name)
			got := read()
			for i, x := range got {
				for j, b := range x {
					require.False(t, isNaNBits(outputs[i].DType(), b), "%s round %d: output %d element %d is NaN", name, r, i, j)
				}
			}
			poison()
			require.NoError(t, run(), name)
			require.Equal(t, read(), got, "%s round %d (packing %v): graph vs direct", name, r, packs[r%len(packs)])
		}

		// a packing with a sequence longer than the captured max_len
		require.NoError(t, Upload(cu, []int32{0, 41, 60, 60, 60, 60}))
		err = g.Launch()
		if err == nil {
			err = Download(make([]float32, lse.Len()), lse)
		}
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "attention_fwd: sequence 0 has 41 tokens, more than max_len = 40", name)
		require.NoError(t, d.Sync(), name+": the error is reported once")
		inputs(1)
		require.NoError(t, g.Launch(), name)
		require.NoError(t, d.Sync(), name)
		g.Free()
	}
}

// testGraphWhiten: whitening (full, and statistics then apply) captured once replays bit for bit what
// the ops give run directly, over new values and masks each launch and sizes of one and several of the
// reduction's chunks; a zero mask is reported (by the launch on the CPU, at the next download on a GPU)
// with the op's message, and the next good launch succeeds.
func testGraphWhiten(t *testing.T, h *harness) {
	d := h.d
	for _, n := range []int{1000, 200_000} {
		x, mask, y, y2 := h.alloc(F32, n), h.alloc(F32, n), h.alloc(F32, n), h.alloc(F32, n)
		stats, stats3 := h.alloc(F32, 2), h.alloc(F32, 3)
		outputs := []Tensor{y, y2, stats, stats3}
		inputs := func(zero bool) {
			m := make([]float32, n)
			for i := range m {
				if !zero && h.rng.IntN(3) > 0 {
					m[i] = 1
				}
			}
			require.NoError(t, Upload(x, h.randn(n, 3)))
			require.NoError(t, Upload(mask, m))
		}
		poison := func() {
			for _, o := range outputs {
				setAny(t, o, nanFloats(o.Len()))
			}
		}
		read := func() [][]uint32 {
			var r [][]uint32
			for _, o := range outputs {
				r = append(r, rawBits(h, o))
			}
			return r
		}
		run := func() error {
			return firstErr(d.Whiten(y, stats, x, mask, true, 1e-8), d.WhitenStats(stats3, x, mask),
				d.WhitenApply(y2, stats3, x, mask, false, 0))
		}
		inputs(false)
		require.NoError(t, run(), "warm-up")
		poison()
		g, err := d.Capture(run)
		require.NoError(t, err)
		require.Equal(t, 3, g.Ops())
		for r := 0; r < 3; r++ {
			inputs(false)
			poison()
			require.NoError(t, g.Launch())
			got := read()
			for i, o := range got {
				for j, b := range o {
					require.False(t, math.IsNaN(float64(math.Float32frombits(b))), "n=%d round %d: output %d element %d is NaN", n, r, i, j)
				}
			}
			poison()
			require.NoError(t, run())
			require.Equal(t, read(), got, "n=%d round %d: graph vs direct", n, r)
		}
		inputs(true)
		err = g.Launch()
		if err == nil {
			err = Download(make([]float32, 2), stats)
		}
		require.Error(t, err)
		require.Contains(t, err.Error(), "whiten: Σ mask = 0 (want a non-zero total weight)")
		require.NoError(t, d.Sync(), "the error is reported once")
		inputs(false)
		require.NoError(t, g.Launch())
		require.NoError(t, d.Sync())
		g.Free()
	}
}

// nanFloats is n NaNs.
func nanFloats(n int) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = float32(math.NaN())
	}
	return f
}

// setAny uploads data into x (F32, or BF16 rounded to nearest even).
func setAny(t *testing.T, x Tensor, data []float32) {
	if x.DType() == F32 {
		require.NoError(t, Upload(x, data))
		return
	}
	b := make([]uint16, len(data))
	for i, v := range data {
		b[i] = ref.BF16Bits(v)
	}
	require.NoError(t, Upload(x, b))
}

// rawBits are x's elements (F32 or BF16) as bits, for bit-for-bit comparison.
func rawBits(h *harness, x Tensor) []uint32 {
	b := make([]uint32, x.Len())
	if x.DType() == BF16 {
		for i, v := range h.bits(x) {
			b[i] = uint32(v)
		}
		return b
	}
	for i, v := range h.get(x) {
		b[i] = math.Float32bits(v)
	}
	return b
}

func isNaNBits(dt DType, b uint32) bool {
	if dt == BF16 {
		return b&0x7F80 == 0x7F80 && b&0x7F != 0
	}
	return math.IsNaN(float64(math.Float32frombits(b)))
}
