package generate

import (
	"fmt"
	"math"
	"slices"

	"github.com/serl-go/serl/engine/model"

	"github.com/serl-go/serl/kernels"
)

// samplerBuffers are the device inputs and outputs of the sample op for up to n rows, with host
// staging, allocated once per engine. During decoding, row r of every per-row buffer belongs to row r of
// the decode batch and stays on the device between steps (the engine uploads it when the batch changes;
// kernels.DecodeAdvance advances steps, ban flags and histories).
type samplerBuffers struct {
	d                *kernels.Device
	n, ldHist, vocab int
	logits           kernels.Tensor // [n, vocab]: a prompt's last logits, replicated for its samples
	// settings holds every per-row setting of k rows in one I32 buffer, so they go up in one copy:
	// 11 words a row (seed and sequence id U64, then temperature, top-p, presence penalty F32, then
	// top-k, step, ban flag, min-new-tokens I32), each setting a run of k rows; layout(k) makes the views.
	settings         kernels.Tensor // I32 [11n]
	k                int            // the rows the views below cover
	seeds, seqIDs    kernels.Tensor // U64 [k]
	temp, topP, pres kernels.Tensor // F32 [k]
	topK, steps      kernels.Tensor // I32 [k]; steps is also each row's history length
	banRows, minNew  kernels.Tensor // I32 [k]
	out              kernels.Tensor // I32 [2n]: for k rows, tokens in [0, k), log-prob bits in [k, 2k)
	hist             kernels.Tensor // I32 [n, ldHist]
	ban              kernels.Tensor // I32 [n, maxBan]: a group of rows starting at row r bans ban[r, :]
	patch            kernels.Tensor // I32 [1 + 2n]: block-table patches for kernels.DecodeAdvance
	hSettings, hOut  []int32
	hHist            []int32
}

// settingsWords is the I32 words of one row's settings.
const settingsWords = 11

const maxBan = 64

// bufSpec is one device buffer of the sampler.
type bufSpec struct {
	dst  *kernels.Tensor
	dt   kernels.DType
	dims []int
}

// specs lists the sampler's device buffers for n rows (init allocates them, samplerBytes sums them).
func (b *samplerBuffers) specs(n, ldHist, vocab int) []bufSpec {
	return []bufSpec{
		{&b.logits, kernels.F32, []int{n, vocab}},
		{&b.settings, kernels.I32, []int{settingsWords * n}},
		{&b.out, kernels.I32, []int{2 * n}},
		{&b.hist, kernels.I32, []int{n, ldHist}},
		{&b.ban, kernels.I32, []int{n, maxBan}},
		{&b.patch, kernels.I32, []int{1 + 2*n}},
	}
}

// samplerPlan is the device memory of the sampler's buffers for n rows, one item per dtype.
func samplerPlan(name string, n, ldHist, vocab int) []model.PlanItem {
	var b samplerBuffers
	var items []model.PlanItem
	for _, s := range b.specs(n, ldHist, vocab) {
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

func (b *samplerBuffers) init(d *kernels.Device, n, ldHist, vocab int) error {
	b.d, b.n, b.ldHist, b.vocab = d, n, ldHist, vocab
	var err error
	for _, s := range b.specs(n, ldHist, vocab) {
		if err == nil {
			*s.dst, err = d.Alloc(s.dt, s.dims...)
		}
	}
	if err != nil {
		b.free()
		return fmt.Errorf("generate: sampler buffers: %w", err)
	}
	b.hSettings, b.hOut = make([]int32, settingsWords*n), make([]int32, 2*n)
	b.hHist = make([]int32, n*ldHist)
	return nil
}

func (b *samplerBuffers) free() {
	for _, t := range []kernels.Tensor{b.logits, b.settings, b.out, b.hist, b.ban, b.patch} {
		if t.Valid() {
			b.d.Free(t)
		}
	}
}

// layout points the settings views at k rows (see settings).
func (b *samplerBuffers) layout(k int) error {
	b.k = k
	var err error
	view := func(dst *kernels.Tensor, lo, hi int, dt kernels.DType) {
		if err == nil {
			*dst, err = b.settings.MustSlice(lo*k, hi*k).Bitcast(dt)
		}
	}
	view(&b.seeds, 0, 2, kernels.U64)
	view(&b.seqIDs, 2, 4, kernels.U64)
	view(&b.temp, 4, 5, kernels.F32)
	view(&b.topP, 5, 6, kernels.F32)
	view(&b.pres, 6, 7, kernels.F32)
	view(&b.topK, 7, 8, kernels.I32)
	view(&b.steps, 8, 9, kernels.I32)
	view(&b.banRows, 9, 10, kernels.I32)
	view(&b.minNew, 10, 11, kernels.I32)
	return err
}

// setRow stages row r of k rows: the request's parameters, its key (seed, sample, step), and whether
// its stop ids are banned (fewer than MinNewTokens drawn yet), at the words layout(k) gives them.
func (b *samplerBuffers) setRow(r, k int, p *Params, sample, step int) {
	h := b.hSettings
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

// uploadRows uploads the settings of rows [0, k) staged by setRow(·, k, …): one copy of 44·k bytes.
func (b *samplerBuffers) uploadRows(k int) error {
	if err := b.layout(k); err != nil {
		return err
	}
	return kernels.Upload(b.settings.MustSlice(0, settingsWords*k), b.hSettings[:settingsWords*k])
}

// uploadBan stages the stop set banned in the group of rows starting at row lo.
func (b *samplerBuffers) uploadBan(lo int, ids []int32) error {
	if len(ids) > maxBan {
		return fmt.Errorf("%d stop ids (at most %d)", len(ids), maxBan)
	}
	if len(ids) == 0 {
		return nil
	}
	return kernels.Upload(b.ban.MustSlice(lo, lo+1).MustReshape(maxBan).MustSlice(0, len(ids)), ids)
}

// draw samples rows [lo, hi) of logits (one row each) with the settings on the device, writing the
// tokens to out[lo, hi) and their log-probs to out[k+lo, k+hi) of a batch of k rows. hist says whether
// rows [lo, hi) of the history count (some row has a presence penalty); nBan is the length of the stop
// set uploaded for row lo, banned in flagged rows.
func (b *samplerBuffers) draw(logits kernels.Tensor, lo, hi, k int, hist bool, nBan int) error {
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
		p.BanIDs, p.BanRows = b.ban.MustSlice(lo, lo+1).MustReshape(maxBan).MustSlice(0, nBan), b.banRows.MustSlice(lo, hi)
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
		for r := 0; r < n; r++ {
			if err := b.d.Copy(b.logits.MustSlice(r, r+1), row); err != nil {
				return nil, nil, err
			}
			b.setRow(r, n, p, lo+r, 0)
		}
		if err := b.uploadRows(n); err != nil {
			return nil, nil, err
		}
		if err := b.uploadBan(0, st.stopList); err != nil {
			return nil, nil, err
		}
		if err := b.draw(b.logits.MustSlice(0, n), 0, n, n, false, len(st.stopList)); err != nil {
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
