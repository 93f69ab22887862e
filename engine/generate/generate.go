// Package generate is serl's sampler: batched generation on the paged KV cache with continuous
// batching, one prefill per prompt shared by its n samples (reference-counted blocks, copy-on-write),
// per-request sampling settings, and reproducible draws keyed by (seed, sample, step), so a sample does
// not depend on what else is in the batch.
//
// A decode step's inputs live on the device. The model's inputs (pending tokens, positions, block table)
// and the sampler's per-row settings, histories and ban sets go up in one copy when the batch changes —
// a sequence finishes or joins — one step behind, and every step kernels.DecodeAdvance brings them on
// from the tokens last drawn (ids, positions, cache slots, lengths, steps); the host sends only the
// block-table entries of KV blocks it takes, and reads back each step's tokens and log-probs in one
// download, which it needs for stop checks and detokenising. So every step of a batch shape issues the
// same ops with the same arguments, and is captured once per shape — the batch padded up to a size
// bucket — and launched as one graph (graphs.go).
package generate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/kernels"
)

// Params are one request's sampling settings (vLLM's SamplingParams, as SeRL uses them).
type Params struct {
	MaxNewTokens    int
	MinNewTokens    int     // stop tokens are banned before this many new tokens
	Temperature     float32 // 0: greedy
	TopP            float32 // ≤ 0 or ≥ 1: off
	TopK            int     // ≤ 0: off
	PresencePenalty float32
	StopIDs         []int32 // nil: the model's EOS ids
	StopStrings     []string
	Seed            uint64
}

// Request asks for N samples of a prompt.
type Request struct {
	Prompt []int32
	N      int
	Params Params
}

// FinishReason says why a sample ended.
type FinishReason string

const (
	FinishStop   FinishReason = "stop"   // a stop id or stop string
	FinishLength FinishReason = "length" // MaxNewTokens
)

// Sample is one generated continuation. Tokens include a final stop id (EOS is an action in SeRL);
// Text (with a Detokenizer) is the decoded continuation without special tokens, cut after a stop string.
type Sample struct {
	Tokens   []int32
	LogProbs []float32 // per token, under the penalised, temperature-scaled distribution
	Text     string
	Finish   FinishReason
}

// Detokenizer turns ids into text (engine/tokenizer's Tokenizer satisfies it).
type Detokenizer interface {
	Decode(ids []int32, skipSpecial bool) (string, error)
}

// Config sizes an engine.
type Config struct {
	BlockSize        int // tokens per KV block
	NumBlocks        int // blocks in the cache
	MaxBatch         int // sequences decoded together
	MaxPrefillTokens int // prompt tokens per prefill batch
	MaxSeqLen        int // longest prompt + continuation
}

// Stats counts the engine's work since it was made.
type Stats struct {
	Prefills        int // prompts prefilled (once per request, however many samples)
	PrefillTokens   int
	DecodeSteps     int
	GeneratedTokens int
	PrefillTime     time.Duration
	DecodeTime      time.Duration
	SampleTime      time.Duration
	GraphCaptures   int // decode steps captured as a graph (once per batch shape)
	GraphLaunches   int // decode steps run as one graph launch
	PaddingRows     int // rows decoded to pad batches to their bucket, summed over steps
}

// TokensPerSecond is generated tokens over the time spent generating.
func (s Stats) TokensPerSecond() float64 {
	t := (s.PrefillTime + s.DecodeTime + s.SampleTime).Seconds()
	if t == 0 {
		return 0
	}
	return float64(s.GeneratedTokens) / t
}

// Engine generates with one model, cache and workspace. Not safe for concurrent use.
type Engine struct {
	m     *model.Model
	cfg   Config
	kv    *model.KVCache
	ws    *model.Workspace
	pool  *blockPool
	stats Stats

	maxBlocks int
	padBlocks []int32 // a KV block for each padding row a batch can have (padRows)
	sp        samplerBuffers
	dec       decodeState
	graphs    graphCache
}

// decodeState is what the device holds of the decode batch between steps: the model's inputs (the
// workspace's DecodeInputs), the sampler's per-row settings, histories and ban sets. It describes rows
// (in this order) when valid; a step over exactly those rows then only advances it on the device
// (kernels.DecodeAdvance), and any other batch — a sequence finished or joined — uploads it afresh.
type decodeState struct {
	valid  bool
	rows   []*seq
	table  []int32 // the device block table as the host last wrote it, [MaxBatch·maxBlocks]
	known  []int   // per sequence row, the table entries written for its blocks (the rest are zeros)
	hist   bool    // the device keeps the rows' histories (some row has a presence penalty)
	groups []group
	patch  []int32 // this step's patches: a count, then (flat table index, block) pairs, [1 + 2·MaxBatch]
	// host staging of a new batch's pending tokens and positions less one, [MaxBatch]
	toks, pos []int32
	// forceUpload uploads the whole state every step (tests compare it with the advancing path)
	forceUpload bool
	// exactRows decodes each batch at its own row count, without padding (tests compare the two)
	exactRows bool
	// padToken is the token padding rows start from (0; tests vary it: no padding row may reach a
	// sequence's draws)
	padToken int32
}

// group is a run of rows [lo, hi) that share their stop set: one sample call.
type group struct {
	lo, hi      int
	banAt, nBan int  // the rows' stop set in the sampler's ban view
	hist        bool // some row has a presence penalty
}

// BlockSize is the KV block size Size chooses: 16 tokens, vLLM's default.
const BlockSize = 16

// Sizing is what an engine must serve: prompts of up to MaxPrompt tokens, continuations of up to
// MaxNew tokens, MaxBatch sequences decoded together, and at most Prompts requests per Generate call
// (0: no bound).
type Sizing struct {
	MaxPrompt, MaxNew, MaxBatch, Prompts int
}

// Size is the one KV sizing rule every caller uses (training, evaluation, serl generate), so the
// memory plan and the allocation cannot disagree. The cache holds MaxBatch sequences of the longest
// length — each sample's own blocks — plus the shared prompt blocks of every prompt that can be live at
// once (at most MaxBatch, and at most Prompts), so the cache never holds back a sequence the batch has
// room for, and a block for each padding row a batch can have (padRows). A prefill batch packs up to 8
// of the longest prompts.
func Size(mc model.Config, s Sizing) (Config, error) {
	if s.MaxPrompt < 1 || s.MaxNew < 1 || s.MaxBatch < 1 || s.Prompts < 0 {
		return Config{}, fmt.Errorf("generate: sizing %+v: prompt, new tokens and batch must be positive", s)
	}
	live := s.MaxBatch
	if s.Prompts > 0 {
		live = min(live, s.Prompts)
	}
	seqLen := min(s.MaxPrompt+s.MaxNew, mc.MaxPositions)
	perSeq := (seqLen + BlockSize - 1) / BlockSize
	promptBlocks := (min(s.MaxPrompt, seqLen) + BlockSize - 1) / BlockSize
	return Config{BlockSize: BlockSize, MaxBatch: s.MaxBatch, MaxPrefillTokens: min(live, 8) * s.MaxPrompt,
		MaxSeqLen: seqLen, NumBlocks: s.MaxBatch*perSeq + live*promptBlocks + 1 + padRows(s.MaxBatch)}, nil
}

// Plan is the memory an engine of configuration cfg allocates for a model of configuration mc at
// precision p: its KV cache, workspace and sampler buffers, each item's name starting with name.
func (cfg Config) Plan(name string, mc model.Config, p model.Precision) []model.PlanItem {
	mb := (cfg.MaxSeqLen + cfg.BlockSize - 1) / cfg.BlockSize
	items := []model.PlanItem{mc.KVCachePlan(name+": KV cache", cfg.NumBlocks, cfg.BlockSize, p)}
	items = append(items, mc.WorkspacePlan(fmt.Sprintf("%s: workspace (prefill %d tokens, %d sequences)", name,
		max(cfg.MaxPrefillTokens, cfg.MaxBatch), cfg.MaxBatch), max(cfg.MaxPrefillTokens, cfg.MaxBatch), cfg.MaxBatch, mb, p)...)
	return append(items, samplerPlan(name+": sampler", cfg.MaxBatch, mb, cfg.MaxSeqLen, mc.Vocab)...)
}

// New makes an engine for m.
func New(m *model.Model, cfg Config) (*Engine, error) {
	if cfg.BlockSize < 1 || cfg.NumBlocks < 1 || cfg.MaxBatch < 1 || cfg.MaxPrefillTokens < 1 || cfg.MaxSeqLen < 2 {
		return nil, fmt.Errorf("generate: config %+v: every size must be positive", cfg)
	}
	if cfg.MaxSeqLen > m.Config.MaxPositions {
		return nil, fmt.Errorf("generate: MaxSeqLen %d exceeds the model's max_position_embeddings %d", cfg.MaxSeqLen, m.Config.MaxPositions)
	}
	mb := (cfg.MaxSeqLen + cfg.BlockSize - 1) / cfg.BlockSize
	kv, err := m.NewKVCache(cfg.NumBlocks, cfg.BlockSize)
	if err != nil {
		return nil, err
	}
	ws, err := m.NewWorkspace(max(cfg.MaxPrefillTokens, cfg.MaxBatch), cfg.MaxBatch, mb)
	if err != nil {
		kv.Free()
		return nil, err
	}
	graphs, err := graphsDefault()
	if err != nil {
		return nil, err
	}
	n := cfg.MaxBatch
	e := &Engine{m: m, cfg: cfg, kv: kv, ws: ws, pool: newBlockPool(cfg.NumBlocks), maxBlocks: mb,
		dec: decodeState{table: make([]int32, n*mb), known: make([]int, n), patch: make([]int32, 1, 1+2*n),
			toks: make([]int32, n), pos: make([]int32, n)}}
	e.graphs.on, e.graphs.limit = graphs, maxGraphs
	p := padRows(n)
	if !e.pool.reserve(p) {
		e.Free()
		return nil, fmt.Errorf("generate: config %+v: %d KV blocks leave none for the %d padding rows of a batch", cfg, cfg.NumBlocks, p)
	}
	for range p {
		b, _ := e.pool.take() // reserved just above
		e.padBlocks = append(e.padBlocks, b)
	}
	if err := e.sp.init(m.Device(), cfg.MaxBatch, mb, cfg.MaxSeqLen, m.Config.Vocab); err != nil {
		e.Free()
		return nil, err
	}
	return e, nil
}

// Free releases the engine's memory.
func (e *Engine) Free() {
	e.graphs.reset() // before the buffers the graphs name
	e.kv.Free()
	e.ws.Free()
	e.sp.free()
}

// Stats returns the work counters.
func (e *Engine) Stats() Stats { return e.stats }

// Config returns the engine's sizes.
func (e *Engine) Config() Config { return e.cfg }

// seq is one sample being generated.
type seq struct {
	req, idx int
	blocks   []int32 // block table
	cached   int     // tokens whose keys/values are in the cache
	next     int32   // sampled token not yet in the cache
	reserved int     // blocks still promised to this sequence
	out      Sample
	done     bool
	st       *reqState // the request's settings (kept after the request has started every sample)
}

// reqState is a request between its prefill and the start of its last sample.
type reqState struct {
	r          *Request
	stop       map[int32]bool
	stopList   []int32 // the stop set, sorted: banned while fewer than MinNewTokens are drawn
	stopKey    string  // identifies the stop set, to group rows that share their bans
	prompt     []int32 // blocks holding the prompt, shared by the samples
	started    int     // samples started
	firsts     []int32 // first token of each sample, drawn from the prompt's logits
	firstLogps []float32
	perSample  int // blocks one sample may need beyond the shared full prompt blocks
}

// Generate runs every request to completion and returns, per request, its N samples in order.
// onToken, when not nil, is called with each new token as it is drawn (for streaming).
func (e *Engine) Generate(reqs []Request, tok Detokenizer, onToken func(req, sample int, token int32)) ([][]Sample, error) {
	return e.GenerateContext(context.Background(), reqs, tok, onToken)
}

// GenerateContext is Generate that stops at the next decoding step once ctx is done, returning
// ctx.Err(); the engine's blocks are all free again, so it can be used further.
func (e *Engine) GenerateContext(ctx context.Context, reqs []Request, tok Detokenizer, onToken func(req, sample int, token int32)) ([][]Sample, error) {
	states, err := e.validate(reqs, tok)
	if err != nil {
		return nil, err
	}
	e.dec.valid = false
	e.graphs.begin(e.m.LoRA(), e.m.Device().Profiling())
	out := make([][]Sample, len(reqs))
	for i := range out {
		out[i] = make([]Sample, reqs[i].N)
	}
	var active []*seq
	nextReq, startedTotal := 0, 0
	prefilled := map[int]bool{}
	// --op-profile's phases: admission (prefills, first tokens, forks of the prompt's blocks) and decoding
	dev := e.m.Device()
	defer dev.SetProfilePhase(dev.SetProfilePhase("prefill"))
	for {
		if err := ctx.Err(); err != nil {
			e.abandon(active, states, prefilled)
			return nil, err
		}
		// Admission: prefill waiting prompts that fit, then start samples while slots and blocks last.
		dev.SetProfilePhase("prefill")
		admittedBefore, startedBefore := nextReq, startedTotal
		if err := e.admitPrefills(states, &nextReq, prefilled, len(active)); err != nil {
			return nil, err
		}
		for ri := range states {
			st := states[ri]
			if st == nil || !prefilled[ri] {
				continue
			}
			for st.started < st.r.N && len(active) < e.cfg.MaxBatch && e.pool.reserve(st.perSample) {
				s := e.startSample(ri, st, onToken)
				startedTotal++
				if err := e.checkStop(s, tok); err != nil {
					return nil, err
				}
				if s.done {
					e.finish(s, tok, out)
				} else {
					active = append(active, s)
				}
			}
			if st.started == st.r.N {
				for _, b := range st.prompt {
					e.pool.release(b)
				}
				states[ri] = nil
			}
		}
		if len(active) == 0 {
			if nextReq >= len(reqs) && allNil(states) {
				return out, nil
			}
			// Nothing runs and this pass neither prefilled nor started anything: waiting cannot free a
			// block. Per-request reservations make this unreachable; if it ever happens it is an error,
			// not a hang.
			if nextReq == admittedBefore && startedTotal == startedBefore {
				return nil, errors.New("generate: no request can be admitted with nothing running (block accounting broken)")
			}
			continue
		}
		dev.SetProfilePhase("decode")
		if err := e.decodeStep(active, tok, onToken); err != nil {
			return nil, err
		}
		kept := active[:0]
		for _, s := range active {
			if s.done {
				e.finish(s, tok, out)
			} else {
				kept = append(kept, s)
			}
		}
		for i := len(kept); i < len(active); i++ {
			active[i] = nil
		}
		active = kept
	}
}

// abandon gives back the blocks of the running sequences and of the prefilled prompts not yet fully
// started, after a cancelled Generate.
func (e *Engine) abandon(active []*seq, states []*reqState, prefilled map[int]bool) {
	for _, s := range active {
		for _, b := range s.blocks {
			e.pool.release(b)
		}
		e.pool.unreserve(s.reserved)
		s.blocks, s.reserved = nil, 0
	}
	for ri, st := range states {
		if st != nil && prefilled[ri] {
			for _, b := range st.prompt {
				e.pool.release(b)
			}
		}
	}
}

func allNil(states []*reqState) bool {
	for _, s := range states {
		if s != nil {
			return false
		}
	}
	return true
}

// validate checks every request and works out its block needs; a request that could never fit the
// cache is an error now rather than a stall later.
func (e *Engine) validate(reqs []Request, tok Detokenizer) ([]*reqState, error) {
	bs := e.cfg.BlockSize
	states := make([]*reqState, len(reqs))
	for i := range reqs {
		r := &reqs[i]
		p := r.Params
		switch {
		case len(r.Prompt) == 0:
			return nil, fmt.Errorf("generate: request %d: empty prompt", i)
		case r.N < 1:
			return nil, fmt.Errorf("generate: request %d: N = %d samples", i, r.N)
		case p.MaxNewTokens < 1:
			return nil, fmt.Errorf("generate: request %d: MaxNewTokens = %d", i, p.MaxNewTokens)
		case p.MinNewTokens < 0 || p.MinNewTokens > p.MaxNewTokens:
			return nil, fmt.Errorf("generate: request %d: MinNewTokens %d outside [0, MaxNewTokens]", i, p.MinNewTokens)
		case !(p.Temperature >= 0):
			return nil, fmt.Errorf("generate: request %d: temperature %v", i, p.Temperature)
		case len(r.Prompt)+p.MaxNewTokens > e.cfg.MaxSeqLen:
			return nil, fmt.Errorf("generate: request %d: prompt of %d tokens + %d new tokens exceeds the context of %d",
				i, len(r.Prompt), p.MaxNewTokens, e.cfg.MaxSeqLen)
		case len(r.Prompt) > e.cfg.MaxPrefillTokens:
			return nil, fmt.Errorf("generate: request %d: prompt of %d tokens exceeds the prefill budget of %d", i, len(r.Prompt), e.cfg.MaxPrefillTokens)
		case len(p.StopStrings) > 0 && tok == nil:
			return nil, fmt.Errorf("generate: request %d: stop strings need a detokenizer", i)
		}
		for j, id := range r.Prompt {
			if id < 0 || int(id) >= e.m.Config.Vocab {
				return nil, fmt.Errorf("generate: request %d: prompt token %d is id %d, outside the vocabulary of %d", i, j, id, e.m.Config.Vocab)
			}
		}
		stop := map[int32]bool{}
		ids := p.StopIDs
		if ids == nil {
			for _, id := range e.m.Config.EOS {
				ids = append(ids, int32(id))
			}
		}
		for _, id := range ids {
			if id < 0 || int(id) >= e.m.Config.Vocab {
				return nil, fmt.Errorf("generate: request %d: stop id %d outside the vocabulary", i, id)
			}
			stop[id] = true
		}
		promptBlocks := (len(r.Prompt) + bs - 1) / bs
		full := len(r.Prompt) / bs
		total := (len(r.Prompt) + p.MaxNewTokens + bs - 1) / bs
		st := &reqState{r: r, stop: stop, perSample: total - full}
		for id := range stop {
			st.stopList = append(st.stopList, id)
		}
		slices.Sort(st.stopList)
		st.stopKey = fmt.Sprint(st.stopList)
		if len(st.stopList) > maxBan {
			return nil, fmt.Errorf("generate: request %d: %d stop ids (at most %d)", i, len(st.stopList), maxBan)
		}
		// The shared prompt blocks plus one sample's own must fit an otherwise empty cache.
		if promptBlocks+st.perSample > e.cfg.NumBlocks {
			return nil, fmt.Errorf("generate: request %d needs %d KV blocks of %d tokens, the cache has %d", i,
				promptBlocks+st.perSample, bs, e.cfg.NumBlocks)
		}
		states[i] = st
	}
	return states, nil
}

// admitPrefills prefills, in one packed batch, the next waiting prompts whose blocks (and at least one
// sample's) fit, and draws every sample's first token from the prompt's last logits.
func (e *Engine) admitPrefills(states []*reqState, nextReq *int, prefilled map[int]bool, running int) error {
	bs := e.cfg.BlockSize
	var batch []int
	tokens := 0
	for *nextReq < len(states) && len(batch) < e.cfg.MaxBatch {
		st := states[*nextReq]
		n := len(st.r.Prompt)
		if tokens+n > e.cfg.MaxPrefillTokens {
			break
		}
		need := (n + bs - 1) / bs
		// Only admit what can also start a sample now, so prompts do not pile up holding blocks.
		if running+len(batch) >= e.cfg.MaxBatch || !e.pool.reserve(need+st.perSample) {
			break
		}
		e.pool.unreserve(st.perSample)
		st.prompt = make([]int32, need)
		for j := range st.prompt {
			b, err := e.pool.take()
			if err != nil {
				return err
			}
			st.prompt[j] = b
		}
		batch = append(batch, *nextReq)
		tokens += n
		*nextReq++
	}
	if len(batch) == 0 {
		return nil
	}
	ids := make([]int32, 0, tokens)
	lens := make([]int, 0, len(batch))
	slots := make([]int32, 0, tokens)
	for _, ri := range batch {
		st := states[ri]
		ids = append(ids, st.r.Prompt...)
		lens = append(lens, len(st.r.Prompt))
		for p := range st.r.Prompt {
			slots = append(slots, st.prompt[p/bs]*int32(bs)+int32(p%bs))
		}
	}
	t0 := time.Now()
	e.dec.valid = false // the prefill and the first draws overwrite the decode batch's device state
	if err := e.m.Prefill(e.ws, e.kv, ids, lens, slots); err != nil {
		return err
	}
	e.stats.PrefillTime += time.Since(t0)
	e.stats.Prefills += len(batch)
	e.stats.PrefillTokens += tokens
	t0 = time.Now()
	for row, ri := range batch {
		st := states[ri]
		toks, logps, err := e.sp.sampleFirst(e.ws.Logits(len(batch)).MustSlice(row, row+1), st)
		if err != nil {
			return fmt.Errorf("generate: request %d: %w", ri, err)
		}
		st.firsts, st.firstLogps = toks, logps
		prefilled[ri] = true
	}
	e.stats.SampleTime += time.Since(t0)
	return nil
}

// startSample forks sample st.started off the prompt: it shares the prompt's blocks (the partly filled
// last one is copied when first written) and begins with its first token already drawn.
func (e *Engine) startSample(ri int, st *reqState, onToken func(int, int, int32)) *seq {
	s := &seq{req: ri, idx: st.started, cached: len(st.r.Prompt), reserved: st.perSample, st: st}
	s.blocks = append(make([]int32, 0, e.maxBlocks), st.prompt...)
	for _, b := range s.blocks {
		e.pool.retain(b)
	}
	st.started++
	tokn := st.firsts[s.idx]
	s.next = tokn
	// Full capacity up front: appending a token during decode never allocates.
	s.out.Tokens = append(make([]int32, 0, st.r.Params.MaxNewTokens), tokn)
	s.out.LogProbs = append(make([]float32, 0, st.r.Params.MaxNewTokens), st.firstLogps[s.idx])
	e.stats.GeneratedTokens++
	if onToken != nil {
		onToken(ri, s.idx, tokn)
	}
	return s
}

// makeRoom makes room for the sequence's next token: a fresh block at a block boundary, or a private
// copy of a shared, partly filled block (copy-on-write).
func (e *Engine) makeRoom(s *seq) error {
	bs := e.cfg.BlockSize
	bi := s.cached / bs
	if s.cached%bs == 0 {
		b, err := e.pool.take()
		if err != nil {
			return err
		}
		s.reserved--
		s.blocks = append(s.blocks, b)
	} else if old := s.blocks[bi]; e.pool.refs[old] > 1 {
		b, err := e.pool.take()
		if err != nil {
			return err
		}
		s.reserved--
		if err := e.kv.CopyBlock(int(b), int(old)); err != nil {
			return err
		}
		e.pool.release(old)
		s.blocks[bi] = b
	}
	return nil
}

// decodeStep feeds every active sequence its pending token and draws the next one. When the batch is
// the one the device state describes, nothing goes up but the table entries of blocks taken for this
// step; the sampled tokens and log-probs come back in one download. The batch decodes as
// batchRows(S) rows (graphs.go): the sequences, then padding rows.
func (e *Engine) decodeStep(active []*seq, tok Detokenizer, onToken func(int, int, int32)) error {
	// Rows that share a stop set are contiguous, so each group's bans are exact with one sample call.
	slices.SortStableFunc(active, func(a, b *seq) int { return strings.Compare(a.st.stopKey, b.st.stopKey) })
	S, mb, dec := len(active), e.maxBlocks, &e.dec
	B := batchRows(S, e.cfg.MaxBatch)
	if dec.exactRows {
		B = S
	}
	steady := dec.valid && !dec.forceUpload && slices.Equal(active, dec.rows)
	dec.valid = false // until this step has succeeded
	dec.patch = dec.patch[:1]
	for r, s := range active {
		if err := e.makeRoom(s); err != nil {
			return err
		}
		if steady {
			// a block taken at a boundary (or copied on write) is the only change to the row's table
			bi := s.cached / e.cfg.BlockSize
			if b := s.blocks[bi]; bi >= dec.known[r] || dec.table[r*mb+bi] != b {
				dec.table[r*mb+bi], dec.known[r] = b, max(dec.known[r], bi+1)
				dec.patch = append(dec.patch, int32(r*mb+bi), b)
			}
		}
	}
	t0 := time.Now()
	in := e.ws.DecodeInputs(B)
	var err error
	if steady {
		err = e.uploadPatches()
	} else {
		err = e.uploadBatch(active, B, in)
	}
	if err != nil {
		return err
	}
	if err := e.deviceStep(B, in, t0); err != nil {
		return err
	}
	e.stats.PaddingRows += B - S
	t0 = time.Now()
	out, err := e.sp.fetch(B)
	if err != nil {
		return err
	}
	dec.rows = append(dec.rows[:0], active...)
	dec.valid = true
	for r, s := range active {
		s.cached++
		s.next = out[r]
		s.out.Tokens = append(s.out.Tokens, out[r])
		s.out.LogProbs = append(s.out.LogProbs, logProb(out, B, r))
		e.stats.GeneratedTokens++
		if onToken != nil {
			onToken(s.req, s.idx, out[r])
		}
		if err := e.checkStop(s, tok); err != nil {
			return err
		}
	}
	e.stats.SampleTime += time.Since(t0)
	return nil
}

// uploadPatches sends this step's block-table patches, if any, in one copy (4 + 8·k bytes); the next
// DecodeAdvance applies and consumes them.
func (e *Engine) uploadPatches() error {
	dec := &e.dec
	k := len(dec.patch) / 2
	if k == 0 {
		return nil
	}
	dec.patch[0] = int32(k)
	return kernels.Upload(e.sp.patch.MustSlice(0, len(dec.patch)), dec.patch)
}

// deviceStep is a decode step's device work, once its inputs are up: deviceOps, or with graphs on, the
// launch of the batch shape's graph of them (graphs.go). t0 is when the step began.
func (e *Engine) deviceStep(B int, in model.DecodeInputs, t0 time.Time) error {
	if e.graphs.cur == nil {
		return e.deviceOps(B, in, t0, true)
	}
	if err := e.graphStep(B, in, t0); err != nil {
		return err
	}
	if e.graphs.cur.g != nil { // launched: the model and the sampling in one call
		e.stats.DecodeTime += time.Since(t0)
		e.stats.DecodeSteps++
	}
	return nil
}

// deviceOps issues a decode step's ops for a batch of B rows: the advance by the tokens in the sampler's
// out buffer (the last step's draws, or those uploadBatch put there), then the model, then one sample call
// per group of rows, leaving the tokens and log-probs in the out buffer. It copies nothing between host
// and device, and for a given batch shape it calls the same ops with the same arguments every step (what
// a graph replays). timed counts the step and its time since t0 (decode, then sampling) in the stats; a
// capture issues the ops without running them, so is not timed.
func (e *Engine) deviceOps(B int, in model.DecodeInputs, t0 time.Time, timed bool) error {
	sp, dec := &e.sp, &e.dec
	a := kernels.DecodeAdvance{Tokens: sp.out.MustSlice(0, B), Patch: sp.patch, Table: in.BlockTable, IDs: in.IDs,
		Pos: in.Pos, SeqLens: in.SeqLens, Slots: in.Slots, Steps: sp.steps, BanRows: sp.banRows, MinNew: sp.minNew,
		BlockSize: e.cfg.BlockSize}
	if dec.hist {
		a.Hist = sp.hist
	}
	if err := e.m.Device().DecodeAdvance(a); err != nil {
		return err
	}
	if err := e.m.DecodeResident(e.ws, e.kv, B); err != nil {
		return err
	}
	if timed {
		e.stats.DecodeTime += time.Since(t0)
		e.stats.DecodeSteps++
		t0 = time.Now()
	}
	logits := e.ws.Logits(B)
	for _, g := range dec.groups {
		if err := sp.draw(logits.MustSlice(g.lo, g.hi), g.lo, g.hi, B, g.hist, g.banAt, g.nBan); err != nil {
			return err
		}
	}
	if timed {
		e.stats.SampleTime += time.Since(t0)
	}
	return nil
}

// uploadBatch writes the whole decode state of a new batch of B rows in one copy, one step behind — so
// that the step's DecodeAdvance brings it on, as it brings a steady batch on: every row's sampler
// settings, each stop-id group's ban set, the rows' pending tokens, positions and block table and, when
// a row has a presence penalty, the histories — then copies the tokens into the sampler's out buffer
// and the positions and table into the model's workspace on the device.
//
// Rows [S, B) pad the batch to its bucket: each writes into a KV block of its own (every entry of its
// table row), starting at position 0, and draws greedily from its own logits; the draws are dropped.
// A batch cannot outlive its sequences' room (MaxSeqLen), so neither can its padding rows.
func (e *Engine) uploadBatch(active []*seq, B int, in model.DecodeInputs) error {
	S, mb, dec, sp := len(active), e.maxBlocks, &e.dec, &e.sp
	dec.groups, dec.hist = dec.groups[:0], false
	nb := 0
	for lo := 0; lo < S; {
		g := group{lo: lo, hi: lo + 1, banAt: nb, nBan: len(active[lo].st.stopList)}
		for g.hi < S && active[g.hi].st.stopKey == active[lo].st.stopKey {
			g.hi++
		}
		for _, s := range active[g.lo:g.hi] {
			g.hist = g.hist || s.st.r.Params.PresencePenalty != 0
		}
		dec.hist = dec.hist || g.hist
		nb += g.nBan
		dec.groups = append(dec.groups, g)
		lo = g.hi
	}
	dec.groups[len(dec.groups)-1].hi = B // the padding rows draw with the last group (never banned)
	if err := sp.layout(B, nb); err != nil {
		return err
	}
	e.graphs.selectShape(B, dec.hist, dec.groups)
	l, h := sp.lay, sp.hBatch
	for r, s := range active {
		sp.setRow(r, &s.st.r.Params, s.idx, len(s.out.Tokens)-1) // s.next, the last token drawn, is pending
		dec.toks[r], dec.pos[r] = s.next, int32(s.cached-1)
		row := dec.table[r*mb : (r+1)*mb]
		dec.known[r] = copy(row, s.blocks)
		clear(row[dec.known[r]:])
	}
	for r := S; r < B; r++ {
		sp.setRow(r, &padParams, 0, -1)
		dec.toks[r], dec.pos[r] = dec.padToken, -1
		row := dec.table[r*mb : (r+1)*mb]
		for i := range row {
			row[i] = e.padBlocks[r-S]
		}
	}
	for _, g := range dec.groups {
		copy(h[l.banAt+g.banAt:], active[g.lo].st.stopList)
	}
	for i, v := range [][]int32{dec.toks[:B], dec.pos[:B], dec.table[:B*mb]} {
		copy(h[l.inputsAt+i*B:], v)
	}
	end := l.histAt
	if dec.hist {
		for r, s := range active { // padding rows have no history (length 0)
			copy(h[l.histAt+r*sp.ldHist:l.histAt+(r+1)*sp.ldHist], s.out.Tokens[:len(s.out.Tokens)-1])
		}
		end = l.end
	}
	if err := sp.upload(end); err != nil {
		return err
	}
	d := e.m.Device()
	for _, c := range [...]struct{ dst, src kernels.Tensor }{{sp.out.MustSlice(0, B), sp.toks}, {in.Pos, sp.pos},
		{in.BlockTable.MustReshape(B * mb), sp.table}} {
		if err := d.Copy(c.dst, c.src); err != nil {
			return err
		}
	}
	// no patch is pending for the new batch (a memset, not a copy)
	return d.Zero(sp.patch.MustSlice(0, 1))
}

// padParams are a padding row's sampler settings: greedy, no penalty, no bans.
var padParams = Params{}

// checkStop ends a sequence on a stop id, a stop string (its text is then cut just after the string),
// or MaxNewTokens.
func (e *Engine) checkStop(s *seq, tok Detokenizer) error {
	p := &s.st.r.Params
	last := s.out.Tokens[len(s.out.Tokens)-1]
	switch {
	case s.st.stop[last] && len(s.out.Tokens) >= p.MinNewTokens:
		s.done, s.out.Finish = true, FinishStop
		return nil
	case len(p.StopStrings) > 0 && len(s.out.Tokens) >= p.MinNewTokens:
		text := decodeText(tok, s.out.Tokens)
		for _, ss := range p.StopStrings {
			if i := strings.Index(text, ss); ss != "" && i >= 0 {
				s.done, s.out.Finish, s.out.Text = true, FinishStop, text[:i+len(ss)]
				return nil
			}
		}
	}
	if len(s.out.Tokens) >= p.MaxNewTokens {
		s.done, s.out.Finish = true, FinishLength
	}
	return nil
}

// finish releases a sequence's blocks and records its sample (decoding its text with tok).
func (e *Engine) finish(s *seq, tok Detokenizer, out [][]Sample) {
	for _, b := range s.blocks {
		e.pool.release(b)
	}
	e.pool.unreserve(s.reserved)
	s.blocks, s.reserved = nil, 0
	if tok != nil && s.out.Text == "" {
		s.out.Text = decodeText(tok, s.out.Tokens)
	}
	out[s.req][s.idx] = s.out
}

// decodeText decodes a sample without special tokens. A model's vocabulary can be larger than its
// tokenizer's (padded embedding rows), so a sampled id may have no text: it shows in the text as
// "[id N: not a token]" instead of emptying the whole sample.
func decodeText(tok Detokenizer, ids []int32) string {
	if text, err := tok.Decode(ids, true); err == nil {
		return text
	}
	var b strings.Builder
	lo := 0
	for i, id := range ids {
		if _, err := tok.Decode(ids[i:i+1], true); err == nil {
			continue
		}
		if text, err := tok.Decode(ids[lo:i], true); err == nil {
			b.WriteString(text)
		}
		fmt.Fprintf(&b, "[id %d: not a token]", id)
		lo = i + 1
	}
	if text, err := tok.Decode(ids[lo:], true); err == nil {
		b.WriteString(text)
	}
	return b.String()
}
