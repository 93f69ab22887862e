package generate

import (
	"fmt"
	"slices"

	"github.com/serl-go/serl/engine/model"

	"github.com/serl-go/serl/kernels"
)

// samplerBuffers are the device inputs and outputs of the sample op for up to n rows, with host
// staging, allocated once per engine.
type samplerBuffers struct {
	d                   *kernels.Device
	n, ldHist, vocab    int
	logits              kernels.Tensor // [n, vocab]: a prompt's last logits, replicated for its samples
	temp, topP, pres    kernels.Tensor // F32 [n]
	topK, steps, toks   kernels.Tensor // I32 [n]
	histLen, banRows    kernels.Tensor // I32 [n]
	seeds, seqIDs       kernels.Tensor // U64 [n]
	logp                kernels.Tensor // F32 [n]
	hist                kernels.Tensor // I32 [n, ldHist]
	ban                 kernels.Tensor // I32 [maxBan]
	hTemp, hTopP, hPres []float32
	hTopK, hSteps       []int32
	hHistLen, hBanRows  []int32
	hSeeds, hSeqIDs     []uint64
	hToks               []int32
	hLogp               []float32
	hHist               []int32
}

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
		{&b.temp, kernels.F32, []int{n}}, {&b.topP, kernels.F32, []int{n}}, {&b.pres, kernels.F32, []int{n}},
		{&b.topK, kernels.I32, []int{n}}, {&b.steps, kernels.I32, []int{n}}, {&b.toks, kernels.I32, []int{n}},
		{&b.histLen, kernels.I32, []int{n}}, {&b.banRows, kernels.I32, []int{n}},
		{&b.seeds, kernels.U64, []int{n}}, {&b.seqIDs, kernels.U64, []int{n}},
		{&b.logp, kernels.F32, []int{n}},
		{&b.hist, kernels.I32, []int{n, ldHist}},
		{&b.ban, kernels.I32, []int{maxBan}},
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
	b.hTemp, b.hTopP, b.hPres = make([]float32, n), make([]float32, n), make([]float32, n)
	b.hTopK, b.hSteps, b.hHistLen, b.hBanRows = make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
	b.hSeeds, b.hSeqIDs = make([]uint64, n), make([]uint64, n)
	b.hToks, b.hLogp = make([]int32, n), make([]float32, n)
	b.hHist = make([]int32, n*ldHist)
	return nil
}

func (b *samplerBuffers) free() {
	for _, t := range []kernels.Tensor{b.logits, b.temp, b.topP, b.pres, b.topK, b.steps, b.toks, b.histLen,
		b.banRows, b.seeds, b.seqIDs, b.logp, b.hist, b.ban} {
		if t.Valid() {
			b.d.Free(t)
		}
	}
}

// setRow stages row r's settings: the request's parameters, its key (seed, sample, step), and whether
// its stop ids are banned (fewer than MinNewTokens drawn yet).
func (b *samplerBuffers) setRow(r int, p *Params, sample, step int, banned bool) {
	b.hTemp[r], b.hPres[r] = p.Temperature, p.PresencePenalty
	b.hTopP[r] = p.TopP
	if !(p.TopP > 0) || p.TopP > 1 {
		b.hTopP[r] = 1
	}
	b.hTopK[r] = int32(p.TopK)
	b.hSeeds[r], b.hSeqIDs[r], b.hSteps[r] = p.Seed, uint64(sample), int32(step)
	b.hBanRows[r] = 0
	if banned {
		b.hBanRows[r] = 1
	}
	b.hHistLen[r] = 0
}

// draw samples rows [0, n) of logits with the staged settings; hist says whether the staged history
// matters (some row has a presence penalty), banIDs is the stop set banned in flagged rows.
func (b *samplerBuffers) draw(logits kernels.Tensor, n int, hist bool, banIDs []int32) ([]int32, []float32, error) {
	if len(banIDs) > maxBan {
		return nil, nil, fmt.Errorf("%d stop ids (at most %d)", len(banIDs), maxBan)
	}
	type up struct {
		t   kernels.Tensor
		f32 []float32
		i32 []int32
		u64 []uint64
	}
	for _, u := range [...]up{{t: b.temp, f32: b.hTemp}, {t: b.topP, f32: b.hTopP}, {t: b.pres, f32: b.hPres},
		{t: b.topK, i32: b.hTopK}, {t: b.steps, i32: b.hSteps}, {t: b.banRows, i32: b.hBanRows},
		{t: b.seeds, u64: b.hSeeds}, {t: b.seqIDs, u64: b.hSeqIDs}} {
		var err error
		switch {
		case u.f32 != nil:
			err = kernels.Upload(u.t.MustSlice(0, n), u.f32[:n])
		case u.i32 != nil:
			err = kernels.Upload(u.t.MustSlice(0, n), u.i32[:n])
		default:
			err = kernels.Upload(u.t.MustSlice(0, n), u.u64[:n])
		}
		if err != nil {
			return nil, nil, err
		}
	}
	p := kernels.Sample{Logits: logits, Temperature: b.temp.MustSlice(0, n), TopP: b.topP.MustSlice(0, n),
		PresencePenalty: b.pres.MustSlice(0, n), TopK: b.topK.MustSlice(0, n), Seeds: b.seeds.MustSlice(0, n),
		SeqIDs: b.seqIDs.MustSlice(0, n), Steps: b.steps.MustSlice(0, n), Tokens: b.toks.MustSlice(0, n),
		LogP: b.logp.MustSlice(0, n)}
	if hist {
		if err := kernels.Upload(b.hist.MustSlice(0, n), b.hHist[:n*b.ldHist]); err != nil {
			return nil, nil, err
		}
		if err := kernels.Upload(b.histLen.MustSlice(0, n), b.hHistLen[:n]); err != nil {
			return nil, nil, err
		}
		p.Hist, p.HistLen = b.hist.MustSlice(0, n), b.histLen.MustSlice(0, n)
	}
	if len(banIDs) > 0 {
		if err := kernels.Upload(b.ban.MustSlice(0, len(banIDs)), banIDs); err != nil {
			return nil, nil, err
		}
		p.BanIDs, p.BanRows = b.ban.MustSlice(0, len(banIDs)), b.banRows.MustSlice(0, n)
	}
	if err := b.d.Sample(p); err != nil {
		return nil, nil, err
	}
	if err := kernels.Download(b.hToks[:n], b.toks.MustSlice(0, n)); err != nil {
		return nil, nil, err
	}
	if err := kernels.Download(b.hLogp[:n], b.logp.MustSlice(0, n)); err != nil {
		return nil, nil, err
	}
	return b.hToks[:n], b.hLogp[:n], nil
}

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
			b.setRow(r, p, lo+r, 0, p.MinNewTokens > 0)
		}
		t, l, err := b.draw(b.logits.MustSlice(0, n), n, false, st.stopList)
		if err != nil {
			return nil, nil, err
		}
		toks = append(toks, t...)
		logps = append(logps, l...)
	}
	return toks, logps, nil
}
