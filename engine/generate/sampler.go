package generate

import (
	"fmt"
	"math"
	"slices"

	"github.com/serl-go/serl/engine/model"

	"github.com/serl-go/serl/kernels"
)

// samplerBuffers are the device inputs and outputs of the sample op for up to n rows, with host
// staging, allocated once per engine. During decoding, row r of every per-row view belongs to row r of
// the decode batch and stays on the device between steps (the engine uploads it when the batch changes;
// kernels.DecodeAdvance advances steps, ban flags and histories).
type samplerBuffers struct {
	d                    *kernels.Device
	n, mb, ldHist, vocab int
	logits               kernels.Tensor // [n, vocab]: a prompt's last logits, replicated for its samples
	batch                kernels.Tensor // I32: a batch's whole state, so it goes up in one copy (layout)
	lay                  batchLayout    // where the views below lie in batch
	seeds, seqIDs        kernels.Tensor // U64 [k]
	temp, topP, pres     kernels.Tensor // F32 [k]
	topK, steps          kernels.Tensor // I32 [k]; steps is also each row's history length
	banRows, minNew      kernels.Tensor // I32 [k]
	ban                  kernels.Tensor // I32 [nb]: each group's stop set, one after another
	toks                 kernels.Tensor // I32 [k]: a new batch's pending tokens, copied into out
	pos                  kernels.Tensor // I32 [k]: their positions less one, copied into the model's workspace
	table                kernels.Tensor // I32 [k·mb]: the block table, likewise
	hist                 kernels.Tensor // I32 [k, ldHist]
	out                  kernels.Tensor // I32 [2n]: for k rows, tokens in [0, k), log-prob bits in [k, 2k)
	patch                kernels.Tensor // I32 [1 + 2n]: block-table patches for kernels.DecodeAdvance
	hBatch, hOut         []int32
}

// batchLayout places a batch of k rows with nb stop ids in the batch buffer, in I32 words: 11 words of
// settings a row (seed and sequence id U64, then temperature, top-p, presence penalty F32, then top-k,
// step, ban flag, min-new-tokens I32, each a run of k rows), the stop sets, the decode inputs one step
// behind (pending tokens, positions, block table: DecodeAdvance derives the rest), then the histories.
// A prompt's first draws upload up to the decode inputs, a new decode batch up to the histories, or
// through them with a presence penalty.
type batchLayout struct {
	k, nb, banAt, inputsAt, histAt, end int
}

const (
	settingsWords = 11
	maxBan        = 64
)

func newBatchLayout(k, nb, mb, ldHist int) batchLayout {
	l := batchLayout{k: k, nb: nb, banAt: settingsWords * k}
	l.inputsAt = l.banAt + nb
	l.histAt = l.inputsAt + 2*k + k*mb
	l.end = l.histAt + k*ldHist
	return l
}

// bufSpec is one device buffer of the sampler.
type bufSpec struct {
	dst  *kernels.Tensor
	dt   kernels.DType
	dims []int
}

// specs lists the sampler's device buffers for n rows (init allocates them, samplerPlan sums them).
func (b *samplerBuffers) specs(n, mb, ldHist, vocab int) []bufSpec {
	return []bufSpec{
		{&b.logits, kernels.F32, []int{n, vocab}},
		{&b.batch, kernels.I32, []int{newBatchLayout(n, n*maxBan, mb, ldHist).end}},
		{&b.out, kernels.I32, []int{2 * n}},
		{&b.patch, kernels.I32, []int{1 + 2*n}},
	}
}

// samplerPlan is the device memory of the sampler's buffers for n rows, one item per dtype.
func samplerPlan(name string, n, mb, ldHist, vocab int) []model.PlanItem {
	var b samplerBuffers
	var items []model.PlanItem
	for _, s := range b.specs(n, mb, ldHist, vocab) {
		e := int64(s.dt.Size())
		for _, d := range s.dims {
			e *= int64(d)
		}
		i := slices.IndexFunc(items, func(it model.PlanItem) bool { return it.DType == s.dt })
		if i < 0 {
			items = append(items, model.PlanItem{Name: name, DType: s.dt})
			i = len(items) - 1
		}
		items[i].Bytes += e
	}
	return items
}

func (b *samplerBuffers) init(d *kernels.Device, n, mb, ldHist, vocab int) error {
	b.d, b.n, b.mb, b.ldHist, b.vocab = d, n, mb, ldHist, vocab
	var err error
	for _, s := range b.specs(n, mb, ldHist, vocab) {
		if err == nil {
			*s.dst, err = d.Alloc(s.dt, s.dims...)
		}
	}
	if err != nil {
		b.free()
		return fmt.Errorf("generate: sampler buffers: %w", err)
	}
	b.hBatch, b.hOut = make([]int32, b.batch.Len()), make([]int32, 2*n)
	return nil
}

func (b *samplerBuffers) free() {
	for _, t := range []kernels.Tensor{b.logits, b.batch, b.out, b.patch} {
		if t.Valid() {
			b.d.Free(t)
		}
	}
}

// layout points the views at a batch of k rows with nb stop ids.
func (b *samplerBuffers) layout(k, nb int) error {
	if nb > k*maxBan {
		return fmt.Errorf("generate: %d stop ids for %d rows (at most %d a row)", nb, k, maxBan)
	}
	l := newBatchLayout(k, nb, b.mb, b.ldHist)
	b.lay = l
	var err error
	view := func(dst *kernels.Tensor, lo, hi int, dt kernels.DType) {
		if err == nil {
			*dst, err = b.batch.MustSlice(lo, hi).Bitcast(dt)
		}
	}
	view(&b.seeds, 0, 2*k, kernels.U64)
	view(&b.seqIDs, 2*k, 4*k, kernels.U64)
	for i, dst := range []*kernels.Tensor{&b.temp, &b.topP, &b.pres} {
		view(dst, (4+i)*k, (5+i)*k, kernels.F32)
	}
	for i, dst := range []*kernels.Tensor{&b.topK, &b.steps, &b.banRows, &b.minNew} {
		view(dst, (7+i)*k, (8+i)*k, kernels.I32)
	}
	view(&b.ban, l.banAt, l.banAt+nb, kernels.I32)
	view(&b.toks, l.inputsAt, l.inputsAt+k, kernels.I32)
	view(&b.pos, l.inputsAt+k, l.inputsAt+2*k, kernels.I32)
	view(&b.table, l.inputsAt+2*k, l.histAt, kernels.I32)
	if err == nil {
		b.hist, err = b.batch.MustSlice(l.histAt, l.end).Reshape(k, b.ldHist)
	}
	return err
}

// setRow stages row r of the current layout: the request's parameters, its key (seed, sample, step),
// and whether its stop ids are banned (fewer than MinNewTokens drawn yet).
func (b *samplerBuffers) setRow(r int, p *Params, sample, step int) {
	h, k := b.hBatch, b.lay.k
	u64 := func(at int, v uint64) { h[at], h[at+1] = int32(uint32(v)), int32(uint32(v>>32)) } // little-endian
	f32 := func(at int, v float32) { h[at] = int32(math.Float32bits(v)) }
	u64(2*r, p.Seed)
	u64(2*k+2*r, uint64(sample))
	topP := p.TopP
	if !(topP > 0) || topP > 1 {
		topP = 1
	}
	f32(4*k+r, p.Temperature)
	f32(5*k+r, topP)
	f32(6*k+r, p.PresencePenalty)
	h[7*k+r], h[8*k+r], h[9*k+r], h[10*k+r] = int32(p.TopK), int32(step), 0, int32(p.MinNewTokens)
	if step < p.MinNewTokens {
		h[9*k+r] = 1
	}
}

// upload sends the staged batch state up to word end in one copy.
func (b *samplerBuffers) upload(end int) error {
	return kernels.Upload(b.batch.MustSlice(0, end), b.hBatch[:end])
}

// draw samples rows [lo, hi) of logits (one row each) with the settings on the device, writing the
// tokens to out[lo, hi) and their log-probs to out[k+lo, k+hi) of a batch of k rows. hist says whether
// rows [lo, hi) of the history count (some row has a presence penalty); ban[banAt, banAt+nBan) is the
// rows' stop set, banned in flagged rows.
func (b *samplerBuffers) draw(logits kernels.Tensor, lo, hi, k int, hist bool, banAt, nBan int) error {
	logp, err := b.out.MustSlice(k+lo, k+hi).Bitcast(kernels.F32)
	if err != nil {
		return err
	}
	p := kernels.Sample{Logits: logits, Temperature: b.temp.MustSlice(lo, hi), TopP: b.topP.MustSlice(lo, hi),
		PresencePenalty: b.pres.MustSlice(lo, hi), TopK: b.topK.MustSlice(lo, hi), Seeds: b.seeds.MustSlice(lo, hi),
		SeqIDs: b.seqIDs.MustSlice(lo, hi), Steps: b.steps.MustSlice(lo, hi), Tokens: b.out.MustSlice(lo, hi), LogP: logp}
	if hist {
		p.Hist, p.HistLen = b.hist.MustSlice(lo, hi), b.steps.MustSlice(lo, hi)
	}
	if nBan > 0 {
		p.BanIDs, p.BanRows = b.ban.MustSlice(banAt, banAt+nBan), b.banRows.MustSlice(lo, hi)
	}
	return b.d.Sample(p)
}

// fetch downloads the tokens and log-probs of a batch of k rows in one copy (the step's only sync).
func (b *samplerBuffers) fetch(k int) ([]int32, error) {
	if err := kernels.Download(b.hOut[:2*k], b.out.MustSlice(0, 2*k)); err != nil {
		return nil, err
	}
	return b.hOut[:2*k], nil
}

// logProb is row r's log-prob in what fetch returned for k rows.
func logProb(out []int32, k, r int) float32 { return math.Float32frombits(uint32(out[k+r])) }

// sampleFirst draws the first token of each of a request's N samples from its prompt's last logits
// (row [1, vocab]), replicating the row so every sample gets its own key (seed, sample, step 0).
func (b *samplerBuffers) sampleFirst(row kernels.Tensor, st *reqState) ([]int32, []float32, error) {
	p := &st.r.Params
	toks := make([]int32, 0, st.r.N)
	logps := make([]float32, 0, st.r.N)
	for lo := 0; lo < st.r.N; lo += b.n {
		n := min(b.n, st.r.N-lo)
		if err := b.layout(n, len(st.stopList)); err != nil {
			return nil, nil, err
		}
		for r := 0; r < n; r++ {
			if err := b.d.Copy(b.logits.MustSlice(r, r+1), row); err != nil {
				return nil, nil, err
			}
			b.setRow(r, p, lo+r, 0)
		}
		copy(b.hBatch[b.lay.banAt:], st.stopList)
		if err := b.upload(b.lay.inputsAt); err != nil {
			return nil, nil, err
		}
		if err := b.draw(b.logits.MustSlice(0, n), 0, n, n, false, 0, len(st.stopList)); err != nil {
			return nil, nil, err
		}
		out, err := b.fetch(n)
		if err != nil {
			return nil, nil, err
		}
		for r := 0; r < n; r++ {
			toks = append(toks, out[r])
			logps = append(logps, logProb(out, n, r))
		}
	}
	return toks, logps, nil
}
