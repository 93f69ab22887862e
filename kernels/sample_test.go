package kernels

import (
	"fmt"
	"math"
	"sort"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

func init() {
	register("sample/reference", testSampleReference)
	register("sample/statistics", testSampleStatistics)
	register("sample/rules", testSampleRules)
	register("sample/independence", testSampleIndependence)
	register("sample/errors", testSampleErrors)
}

// Random123's published known-answer vectors for Philox4x32-10 (its tests/kat_vectors).
func TestPhiloxKnownAnswers(t *testing.T) {
	for _, c := range []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff},
			[4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0},
			[4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	} {
		require.Equal(t, c.want, ref.Philox4x32_10(c.ctr, c.key), "ctr %08x key %08x", c.ctr, c.key)
	}
	u := ref.PhiloxUniform(0, 0, 0) // the first vector's top 53 bits
	require.Equal(t, float64((uint64(0x6627e8d5)<<32|0xe169c58d)>>11)*0x1p-53, u)
}

// sampleBatch is a host-side sampling call.
type sampleBatch struct {
	logits           []float32 // [n, ld]
	n, ld, vocab     int       // vocab 0: ld
	temp, topP, pen  []float32
	topK             []int32
	hist             [][]int32 // per row; nil: no history tensors
	ban              []int32
	banRows          []int32 // nil: bans apply to every row
	seeds, seqs      []uint64
	steps            []int32
	noLogP, noTokens bool
}

func newBatch(h *harness, n, ld int, scale float64) *sampleBatch {
	b := &sampleBatch{logits: h.randn(n*ld, scale), n: n, ld: ld}
	for r := 0; r < n; r++ {
		b.temp = append(b.temp, 1)
		b.topP = append(b.topP, 1)
		b.pen = append(b.pen, 0)
		b.topK = append(b.topK, 0)
		b.seeds = append(b.seeds, 42+uint64(r%3))
		b.seqs = append(b.seqs, uint64(r)*0x9e3779b97f4a7c15)
		b.steps = append(b.steps, int32(r*7))
	}
	return b
}

// params builds the Sample call on d (tensors freed when the test ends).
func (b *sampleBatch) params(t *testing.T, d *Device) Sample {
	up := func(dt DType, dims []int, data any) Tensor {
		x, err := d.Alloc(dt, dims...)
		require.NoError(t, err)
		t.Cleanup(func() { d.Free(x) })
		switch v := data.(type) {
		case []float32:
			require.NoError(t, Upload(x, v))
		case []int32:
			require.NoError(t, Upload(x, v))
		case []uint64:
			require.NoError(t, Upload(x, v))
		}
		return x
	}
	n := b.n
	p := Sample{Logits: up(F32, []int{n, b.ld}, b.logits), Vocab: b.vocab,
		Temperature: up(F32, []int{n}, b.temp), TopP: up(F32, []int{n}, b.topP),
		PresencePenalty: up(F32, []int{n}, b.pen), TopK: up(I32, []int{n}, b.topK),
		Seeds: up(U64, []int{n}, b.seeds), SeqIDs: up(U64, []int{n}, b.seqs), Steps: up(I32, []int{n}, b.steps)}
	if !b.noTokens {
		p.Tokens = up(I32, []int{n}, nil)
	}
	if !b.noLogP {
		p.LogP = up(F32, []int{n}, nil)
	}
	if b.hist != nil {
		ldh := 1
		for _, hr := range b.hist {
			ldh = max(ldh, len(hr)+2)
		}
		flat, lens := make([]int32, n*ldh), make([]int32, n)
		for r, hr := range b.hist {
			copy(flat[r*ldh:], hr)
			lens[r] = int32(len(hr))
			for i := len(hr); i < ldh; i++ {
				flat[r*ldh+i] = -7 // beyond hist_len: never read
			}
		}
		p.Hist, p.HistLen = up(I32, []int{n, ldh}, flat), up(I32, []int{n}, lens)
	}
	if b.ban != nil {
		p.BanIDs = up(I32, []int{len(b.ban)}, b.ban)
	}
	if b.banRows != nil {
		p.BanRows = up(I32, []int{n}, b.banRows)
	}
	return p
}

func (b *sampleBatch) run(t *testing.T, d *Device) ([]int32, []float32) {
	t.Helper()
	p := b.params(t, d)
	require.NoError(t, d.Sample(p))
	tok := make([]int32, b.n)
	require.NoError(t, Download(tok, p.Tokens))
	var lp []float32
	if p.LogP.Valid() {
		lp = make([]float32, b.n)
		require.NoError(t, Download(lp, p.LogP))
	}
	return tok, lp
}

func (b *sampleBatch) ref(r int) ref.SampleResult {
	v := b.ld
	if b.vocab > 0 {
		v = b.vocab
	}
	row := ref.SampleRow{Logits: b.logits[r*b.ld : r*b.ld+v], Temperature: b.temp[r], TopP: b.topP[r],
		PresencePenalty: b.pen[r], TopK: b.topK[r], Seed: b.seeds[r], SeqID: b.seqs[r], Step: b.steps[r]}
	if b.hist != nil {
		row.Hist = b.hist[r]
	}
	if b.ban != nil && (b.banRows == nil || b.banRows[r] != 0) {
		row.Ban = b.ban
	}
	return ref.Sample(row)
}

// checkAgainstRef requires the native tokens to equal the reference's wherever the reference's decision
// is clear of float32 resolution (margin ≥ 1e-6; native weights are float32 exponentials), and the
// log-probs to match there.
func (b *sampleBatch) checkAgainstRef(t *testing.T, what string, tok []int32, lp []float32) {
	t.Helper()
	var got, want []float32
	close := 0
	for r := 0; r < b.n; r++ {
		w := b.ref(r)
		if w.Margin < 1e-6 {
			close++
			continue
		}
		require.Equal(t, int32(w.Token), tok[r], "%s: row %d (margin %.2g)", what, r, w.Margin)
		got, want = append(got, lp[r]), append(want, float32(w.LogP))
	}
	require.LessOrEqual(t, close, 2+b.n/4, "%s: too many near-boundary rows to be a test", what)
	requireClose(t, what+" logp", got, want, 1e-5)
}

func testSampleReference(t *testing.T, h *harness) {
	temps := []float32{0, 0.7, 1, 1.3}
	topPs := []float32{1, 0.9, 0.5, 0.95, 1e-6}
	for _, c := range []struct{ n, vocab, ld int }{{16, 1, 1}, {64, 7, 7}, {64, 1000, 1000}, {40, 1000, 1017}, {16, 32000, 32000}, {3, 151936, 151936}} {
		b := newBatch(h, c.n, c.ld, 2)
		if c.ld > c.vocab {
			b.vocab = c.vocab
			for r := 0; r < c.n; r++ {
				for j := c.vocab; j < c.ld; j++ {
					b.logits[r*c.ld+j] = 50 // padding that would always win if it were read
				}
			}
		}
		b.hist = make([][]int32, c.n)
		for r := 0; r < c.n; r++ {
			b.temp[r] = temps[r%len(temps)]
			b.topP[r] = topPs[(r/2)%len(topPs)]
			b.topK[r] = []int32{0, 0, 1, 5, 50, int32(c.vocab) + 3, -1}[(r/3)%7]
			b.pen[r] = []float32{0, 2, -0.5}[r%3]
			for i := 0; i < h.rng.IntN(10); i++ {
				b.hist[r] = append(b.hist[r], int32(h.rng.IntN(c.vocab)))
				if i%3 == 2 {
					b.hist[r] = append(b.hist[r], b.hist[r][0]) // repeats are penalised once
				}
			}
		}
		if c.vocab > 10 {
			b.ban = []int32{2, int32(c.vocab - 1)}
			b.banRows = make([]int32, c.n)
			for r := range b.banRows {
				b.banRows[r] = int32(r % 2)
			}
		}
		tok, lp := b.run(t, h.d)
		b.checkAgainstRef(t, fmt.Sprintf("vocab=%d ld=%d", c.vocab, c.ld), tok, lp)
	}
}

// truncated is the distribution top-k/top-p sampling should draw from, computed independently of ref.
func truncated(z []float64, k int, p float64) map[int]float64 {
	idx := make([]int, len(z))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return z[idx[a]] > z[idx[b]] })
	if k > 0 && k < len(idx) {
		idx = idx[:k]
	}
	var tot float64
	for _, i := range idx {
		tot += math.Exp(z[i])
	}
	out := map[int]float64{}
	var cum, kept float64
	for _, i := range idx {
		if cum >= p*tot {
			break
		}
		out[i] = math.Exp(z[i])
		cum += out[i]
		kept += out[i]
	}
	for i := range out {
		out[i] /= kept
	}
	return out
}

func testSampleStatistics(t *testing.T, h *harness) {
	small := []float32{2.0, 1.5, 1.2, 1.0, 0.7, 0.3, 0, -0.5, -1, -2, 2.2, 0.1}
	// A model-sized vocabulary, so the vectorised paths run over many blocks: a few dozen likely tokens
	// spread over 1,024 ids and a long tail.
	large := make([]float32, 1024)
	for j := range large {
		large[j] = float32(-4 + h.rng.NormFloat64())
		if j%37 == 5 {
			large[j] = float32(1 + h.rng.Float64())
		}
	}
	for _, c := range []struct {
		name string
		base []float32
		temp float32
		k    int32
		p    float32
		pen  float32
		hist []int32
	}{
		{"full", small, 1, 0, 1, 0, nil},
		{"top-k 8, top-p 0.9, T 0.8", small, 0.8, 8, 0.9, 0, nil},
		{"top-p 0.6, T 1.3, penalty", small, 1.3, 0, 0.6, 1.5, []int32{10, 0, 10}},
		{"top-k 3", small, 1, 3, 1, 0, nil},
		{"vocab 1024", large, 1, 0, 1, 0, nil},
		{"vocab 1024, top-p 0.95", large, 1, 0, 0.95, 0, nil},
	} {
		N := 40000
		if h.emulated() {
			// the SIMT emulator runs a 1,024-thread sampling block in ~3 ms: a smaller test, still χ²-valid (the
			// bins below follow N); sample/reference checks the emulated tokens against the CPU's
			N = 1000
		}
		base := c.base
		V := len(base)
		b := newBatch(h, N, V, 1)
		b.hist = make([][]int32, N)
		for r := 0; r < N; r++ {
			copy(b.logits[r*V:], base)
			b.temp[r], b.topK[r], b.topP[r], b.pen[r], b.hist[r] = c.temp, c.k, c.p, c.pen, c.hist
			b.seeds[r], b.seqs[r], b.steps[r] = 7, 3, int32(r) // one sequence, N steps
		}
		tok, lp := b.run(t, h.d)
		z := make([]float64, V)
		for j, x := range base {
			z[j] = float64(x)
			if c.hist != nil && (j == 10 || j == 0) {
				z[j] -= float64(c.pen)
			}
			z[j] /= float64(c.temp)
		}
		want := truncated(z, int(c.k), float64(c.p))
		count := map[int]int{}
		for _, tk := range tok {
			_, ok := want[int(tk)]
			require.True(t, ok, "%s: token %d is outside the kept set %v", c.name, tk, want)
			count[int(tk)]++
		}
		// χ² over the tokens expected at least 20 times, the rest pooled in one bin.
		var chi2, restE, restN float64
		bins := 0
		for j, pj := range want {
			e := pj * float64(N)
			if e < 20 {
				restE, restN = restE+e, restN+float64(count[j])
				continue
			}
			chi2 += (float64(count[j]) - e) * (float64(count[j]) - e) / e
			bins++
		}
		if restE > 0 {
			chi2 += (restN - restE) * (restN - restE) / restE
			bins++
		}
		// χ² with bins−1 degrees of freedom: mean + 6 standard deviations is beyond the 1e-4 tail, so a
		// fixed-seed pass is meaningful.
		limit := float64(bins-1) + 6*math.Sqrt(2*float64(bins-1)) + 10
		require.Less(t, chi2, limit, "%s: counts %v, want probabilities %v", c.name, count, want)
		// the log-prob is that of the untruncated penalised distribution
		var lse float64
		for _, v := range z {
			lse += math.Exp(v)
		}
		lse = math.Log(lse)
		for r := 0; r < 50; r++ {
			require.InDelta(t, z[tok[r]]-lse, float64(lp[r]), 1e-5, "%s: logp of row %d", c.name, r)
		}
	}
}

func testSampleRules(t *testing.T, h *harness) {
	// greedy: the lowest index among equal maxima; logp = log-softmax there
	b := newBatch(h, 1, 5, 1)
	copy(b.logits, []float32{1, 3, 0, 3, 2})
	b.temp[0] = 0
	tok, lp := b.run(t, h.d)
	require.Equal(t, int32(1), tok[0])
	lse := math.Log(math.Exp(1) + 2*math.Exp(3) + 1 + math.Exp(2))
	require.InDelta(t, 3-lse, float64(lp[0]), 1e-6)

	// top-k 1 and a tiny top-p are greedy at any temperature
	n, V := 32, 3001
	g := newBatch(h, n, V, 3)
	for r := 0; r < n; r++ {
		g.temp[r] = 0
	}
	greedy, _ := g.run(t, h.d)
	for r := 0; r < n; r++ {
		require.Equal(t, g.ref(r).Token, int(greedy[r]), "greedy row %d", r)
		g.temp[r], g.topK[r] = 1.5, 1
	}
	k1, _ := g.run(t, h.d)
	require.Equal(t, greedy, k1, "top-k 1")
	for r := 0; r < n; r++ {
		g.topK[r], g.topP[r] = 0, 1e-7
	}
	p0, _ := g.run(t, h.d)
	require.Equal(t, greedy, p0, "top-p 1e-7")

	// −0 and +0 are equal logits: the top-k and top-p cuts break their tie by index, as any other tie
	negZero := float32(math.Copysign(0, -1))
	zb := newBatch(h, 4, 6, 0)
	for r := 0; r < 4; r++ {
		copy(zb.logits[r*6:], []float32{-3, negZero, negZero, -1, 0, -2}) // the order: ids 1, 2, 4, 3, 5, 0
	}
	zb.topK = []int32{1, 2, 0, 0}
	zb.topP = []float32{1, 1, 1e-6, 1e-6}
	zb.temp = []float32{1, 1, 1, 0.5}
	tok, _ = zb.run(t, h.d)
	require.Equal(t, int32(1), tok[0], "top-k 1 over ±0 ties")
	require.Equal(t, int32(1), tok[2], "top-p 1e-6 over ±0 ties")
	require.Equal(t, int32(1), tok[3], "top-p 1e-6 over ±0 ties at T 0.5")
	for i := 0; i < 16; i++ { // top-k 2 keeps ids 1 and 2 (not 4): the draw never gives 4
		zb.steps = []int32{int32(i), int32(i), int32(i), int32(i)}
		tok, _ = zb.run(t, h.d)
		require.Contains(t, []int32{1, 2}, tok[1], "top-k 2 over ±0 ties, step %d", i)
	}

	// presence penalty flips the argmax, and a repeated token is penalised once
	pb := newBatch(h, 3, 10, 0)
	for r := 0; r < 3; r++ {
		pb.logits[r*10+3], pb.logits[r*10+7] = 5, 4.5
		pb.temp[r] = 0
	}
	pb.pen = []float32{1, 0.3, 1}
	pb.hist = [][]int32{{3}, {3, 3, 3}, {1, 2}}
	tok, _ = pb.run(t, h.d)
	require.Equal(t, []int32{7, 3, 3}, tok)
	pb.temp = []float32{1, 1, 1}
	pb.topK = []int32{1, 1, 1}
	tok, _ = pb.run(t, h.d)
	require.Equal(t, []int32{7, 3, 3}, tok, "penalty before temperature, sampled")

	// bans: only in rows flagged by BanRows, in every row without it
	bb := newBatch(h, 2, 10, 0)
	for r := 0; r < 2; r++ {
		copy(bb.logits[r*10:], []float32{0, 1, 2, 3, 9, 1, 8, 0, 0, 0})
		bb.temp[r] = 0
	}
	bb.ban, bb.banRows = []int32{4, 9}, []int32{1, 0}
	tok, _ = bb.run(t, h.d)
	require.Equal(t, []int32{6, 4}, tok)
	bb.banRows = nil
	tok, lp = bb.run(t, h.d)
	require.Equal(t, []int32{6, 6}, tok)
	require.False(t, math.IsNaN(float64(lp[0])))
	bb.temp = []float32{1, 1}
	for i := 0; i < 20; i++ { // sampled: a banned id is never drawn
		bb.steps = []int32{int32(i), int32(i)}
		tok, _ = bb.run(t, h.d)
		require.NotContains(t, tok, int32(4))
		require.NotContains(t, tok, int32(9))
	}

	// LogP is optional
	nb := newBatch(h, 4, 100, 1)
	nb.noLogP = true
	tok, _ = nb.run(t, h.d)
	for r := range tok {
		require.Equal(t, nb.ref(r).Token, int(tok[r]))
	}
}

func testSampleIndependence(t *testing.T, h *harness) {
	n, V := 64, 2048
	b := newBatch(h, n, V, 2)
	b.hist = make([][]int32, n)
	for r := 0; r < n; r++ {
		b.temp[r] = []float32{0, 0.8, 1}[r%3]
		b.topP[r] = []float32{1, 0.95, 0.7}[r%3]
		b.topK[r] = []int32{0, 40, 0, 3}[r%4]
		b.pen[r] = 1
		b.hist[r] = []int32{int32(r), int32(2 * r)}
	}
	b.ban, b.banRows = []int32{0}, make([]int32, n)
	b.banRows[5] = 1
	all, allLP := b.run(t, h.d)
	b.checkAgainstRef(t, "batch of 64", all, allLP)
	for r := 0; r < n; r++ {
		one := &sampleBatch{logits: b.logits[r*V : (r+1)*V], n: 1, ld: V, temp: b.temp[r : r+1], topP: b.topP[r : r+1],
			pen: b.pen[r : r+1], topK: b.topK[r : r+1], hist: b.hist[r : r+1], ban: b.ban, banRows: b.banRows[r : r+1],
			seeds: b.seeds[r : r+1], seqs: b.seqs[r : r+1], steps: b.steps[r : r+1]}
		tok, lp := one.run(t, h.d)
		require.Equal(t, all[r], tok[0], "row %d alone vs in the batch", r)
		require.Equal(t, allLP[r], lp[0], "row %d logp alone vs in the batch", r)
	}
	if h.d.Backend() == "cpu" && h.d.Info().Threads > 1 {
		d1, err := Open("cpu", 1)
		require.NoError(t, err)
		defer d1.Close()
		tok, lp := b.run(t, d1)
		require.Equal(t, all, tok, "1 thread vs %d", h.d.Info().Threads)
		require.Equal(t, allLP, lp)
	}
}

func testSampleErrors(t *testing.T, h *harness) {
	bad := func(what string, mod func(b *sampleBatch, p *Sample)) {
		t.Helper()
		b := newBatch(h, 3, 20, 1)
		b.hist = [][]int32{{1}, {2}, {3}}
		mod(b, nil)
		p := b.params(t, h.d)
		mod(nil, &p)
		requireOpError(t, what, h.d.Sample(p))
	}
	none := func(*Sample) {}
	onBatch := func(f func(b *sampleBatch)) func(*sampleBatch, *Sample) {
		return func(b *sampleBatch, p *Sample) {
			if b != nil {
				f(b)
			}
		}
	}
	onParams := func(f func(p *Sample)) func(*sampleBatch, *Sample) {
		return func(b *sampleBatch, p *Sample) {
			if p != nil {
				f(p)
			}
		}
	}
	_ = none
	bad("temperature < 0", onBatch(func(b *sampleBatch) { b.temp[1] = -0.5 }))
	bad("temperature NaN", onBatch(func(b *sampleBatch) { b.temp[1] = float32(math.NaN()) }))
	bad("top_p 0", onBatch(func(b *sampleBatch) { b.topP[2] = 0 }))
	bad("top_p < 0", onBatch(func(b *sampleBatch) { b.topP[0] = -1 }))
	bad("hist id ≥ vocab", onBatch(func(b *sampleBatch) { b.hist[1] = []int32{4, 20} }))
	bad("hist id < 0", onBatch(func(b *sampleBatch) { b.hist[2] = []int32{-1} }))
	bad("ban id ≥ vocab", onBatch(func(b *sampleBatch) { b.ban = []int32{3, 99} }))
	bad("ban id < 0", onBatch(func(b *sampleBatch) { b.ban = []int32{-2} }))
	bad("ban id ≥ vocab, no row banning", onBatch(func(b *sampleBatch) { b.ban, b.banRows = []int32{3, 99}, []int32{0, 0, 0} }))
	bad("every token banned", onBatch(func(b *sampleBatch) {
		b.ban = make([]int32, 20)
		for i := range b.ban {
			b.ban[i] = int32(i)
		}
	}))
	bad("vocab beyond ld", onParams(func(p *Sample) { p.Vocab = 21 }))
	bad("nil logits", onParams(func(p *Sample) { p.Logits = Tensor{} }))
	bad("rank-1 logits", onParams(func(p *Sample) { p.Logits = p.Logits.MustReshape(60) }))
	bad("nil tokens", onParams(func(p *Sample) { p.Tokens = Tensor{} }))
	bad("short temperature", onParams(func(p *Sample) { p.Temperature = p.Temperature.MustSlice(0, 2) }))
	bad("f32 top_k", onParams(func(p *Sample) { p.TopK = p.TopP }))
	bad("i32 seeds", onParams(func(p *Sample) { p.Seeds = p.Steps }))
	bad("hist without hist_len", onParams(func(p *Sample) { p.HistLen = Tensor{} }))
	bad("hist rows ≠ n", onParams(func(p *Sample) { p.Hist = p.Hist.MustSlice(0, 2) }))
	bad("short ban rows", onParams(func(p *Sample) {
		p.BanIDs = p.Steps
		p.BanRows = p.Steps.MustSlice(0, 1)
	}))
}

func BenchmarkSample(b *testing.B) {
	d := cpuDevice(b)
	const n = 64
	for _, vocab := range []int{32000, 151936} {
		for _, mode := range []string{"top-p=0.95", "greedy"} {
			b.Run(fmt.Sprintf("rows=%d/vocab=%d/%s", n, vocab, mode), func(b *testing.B) {
				x, tok, lp := d.MustAlloc(F32, n, vocab), d.MustAlloc(I32, n), d.MustAlloc(F32, n)
				temp, topP, pen, topK := d.MustAlloc(F32, n), d.MustAlloc(F32, n), d.MustAlloc(F32, n), d.MustAlloc(I32, n)
				seeds, seqs, steps := d.MustAlloc(U64, n), d.MustAlloc(U64, n), d.MustAlloc(I32, n)
				for _, t := range []Tensor{x, tok, lp, temp, topP, pen, topK, seeds, seqs, steps} {
					defer d.Free(t)
				}
				// logits ~ N(0, 2²) with a few strong candidates, roughly an LLM's spread
				xs := x.F32()
				s := uint64(1)
				for i := range xs {
					s = s*6364136223846793005 + 1442695040888963407
					u1 := (float64(s>>11) + 0.5) * 0x1p-53
					s = s*6364136223846793005 + 1442695040888963407
					u2 := float64(s>>11) * 0x1p-53
					xs[i] = float32(2 * math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2))
					if i%vocab < 4 {
						xs[i] += 8
					}
				}
				for r := 0; r < n; r++ {
					temp.F32()[r], topP.F32()[r] = 1, 0.95
					if mode == "greedy" {
						temp.F32()[r], topP.F32()[r] = 0, 1
					}
					pen.F32()[r], topK.I32()[r] = 0, 0
					seeds.U64()[r], seqs.U64()[r] = 1, uint64(r)
				}
				p := Sample{Logits: x, Temperature: temp, TopP: topP, PresencePenalty: pen, TopK: topK,
					Seeds: seeds, SeqIDs: seqs, Steps: steps, Tokens: tok, LogP: lp}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					steps.I32()[0] = int32(i)
					if err := d.Sample(p); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(n*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
