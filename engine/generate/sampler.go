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
	d                   *kernels.Device
	n, ldHist, vocab    int
	logits              kernels.Tensor // [n, vocab]: a prompt's last logits, replicated for its samples
	temp, topP, pres    kernels.Tensor // F32 [n]
	topK, steps         kernels.Tensor // I32 [n]; steps is also each row's history length
	banRows, minNew     kernels.Tensor // I32 [n]
	seeds, seqIDs       kernels.Tensor // U64 [n]
	out                 kernels.Tensor // I32 [2n]: for k rows, tokens in [0, k), log-prob bits in [k, 2k)
	hist                kernels.Tensor // I32 [n, ldHist]
	ban                 kernels.Tensor // I32 [n, maxBan]: a group of rows starting at row r bans ban[r, :]
	patch               kernels.Tensor // I32 [1 + 2n]: block-table patches for kernels.DecodeAdvance
	hTemp, hTopP, hPres []float32
	hTopK, hSteps       []int32
	hBanRows, hMinNew   []int32
	hSeeds, hSeqIDs     []uint64
	hOut                []int32
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
		{&b.topK, kernels.I32, []int{n}}, {&b.steps, kernels.I32, []int{n}},
		{&b.banRows, kernels.I32, []int{n}}, {&b.minNew, kernels.I32, []int{n}},
		{&b.seeds, kernels.U64, []int{n}}, {&b.seqIDs, kernels.U64, []int{n}},
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
	b.hTemp, b.hTopP, b.hPres = make([]float32, n), make([]float32, n), make([]float32, n)
	b.hTopK, b.hSteps, b.hBanRows, b.hMinNew = make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
	b.hSeeds, b.hSeqIDs = make([]uint64, n), make([]uint64, n)
	b.hOut = make([]int32, 2*n)
	b.hHist = make([]int32, n*ldHist)
	return nil
}

func (b *samplerBuffers) free() {
	for _, t := range []kernels.Tensor{b.logits, b.temp, b.topP, b.pres, b.topK, b.steps, b.banRows, b.minNew,
		b.seeds, b.seqIDs, b.out, b.hist, b.ban, b.patch} {
		if t.Valid() {
			b.d.Free(t)
		}
	}
}

// setRow stages row r's settings: the request's parameters, its key (seed, sample, step), and whether
// its stop ids are banned (fewer than MinNewTokens drawn yet).
func (b *samplerBuffers) setRow(r int, p *Params, sample, step int) {
	b.hTemp[r], b.hPres[r] = p.Temperature, p.PresencePenalty
	b.hTopP[r] = p.TopP
	if !(p.TopP > 0) || p.TopP > 1 {
		b.hTopP[r] = 1
	}
	b.hTopK[r] = int32(p.TopK)
	b.hSeeds[r], b.hSeqIDs[r], b.hSteps[r] = p.Seed, uint64(sample), int32(step)
	b.hMinNew[r] = int32(p.MinNewTokens)
	b.hBanRows[r] = 0
	if step < p.MinNewTokens {
		b.hBanRows[r] = 1
	}
}

// uploadRows uploads the staged settings of rows [0, n): nine copies, 7·4n + 2·8n bytes.
func (b *samplerBuffers) uploadRows(n int) error {
	for _, u := range [...]struct {
		t kernels.Tensor
		f []float32
	}{{b.temp, b.hTemp}, {b.topP, b.hTopP}, {b.pres, b.hPres}} {
		if err := kernels.Upload(u.t.MustSlice(0, n), u.f[:n]); err != nil {
			return err
		}
	}
	for _, u := range [...]struct {
		t kernels.Tensor
		i []int32
	}{{b.topK, b.hTopK}, {b.steps, b.hSteps}, {b.banRows, b.hBanRows}, {b.minNew, b.hMinNew}} {
		if err := kernels.Upload(u.t.MustSlice(0, n), u.i[:n]); err != nil {
			return err
		}
	}
	if err := kernels.Upload(b.seeds.MustSlice(0, n), b.hSeeds[:n]); err != nil {
		return err
	}
	return kernels.Upload(b.seqIDs.MustSlice(0, n), b.hSeqIDs[:n])
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
			b.setRow(r, p, lo+r, 0)
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
