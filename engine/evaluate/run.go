package evaluate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/dist"
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/tokenizer"
)

// SystemPrompt is the system message of the chat prompt mode (docs/SERL.md D1): the official evaluation
// has none, so this is serl's own, short, and the one the built-in model is trained with.
const SystemPrompt = "Please reason step by step, and put your final answer within \\boxed{}."

// Official sampling settings of maj@K (docs/SERL.md §6).
const (
	SampleTemperature = 1.0
	SampleTopP        = 0.95
)

// OfficialStopStrings are the evaluation's stop strings besides the EOS ids (docs/SERL.md §6); the special-token
// ones never survive decoding, so only the triple newline acts on text.
var OfficialStopStrings = []string{"\n\n\n"}

// PromptFunc turns a problem's text into prompt ids.
type PromptFunc func(problem string) ([]int32, error)

// RawPrompt is the official prompt: the problem text and a newline, spaces stripped, tokenised with
// the tokenizer's own special tokens (a Llama BOS) as vLLM does for a string prompt.
func RawPrompt(tok *tokenizer.Tokenizer) PromptFunc {
	return func(problem string) ([]int32, error) {
		return tok.Encode(strings.Trim(problem+"\n", " "), tokenizer.EncodeOptions{AddSpecial: true}), nil
	}
}

// ChatPrompt renders [system, user] through the model's chat template with the generation prompt.
// The template writes any BOS itself, so the tokenizer adds none.
func ChatPrompt(tok *tokenizer.Tokenizer, tmpl chat.Template, opts chat.Options, system string) PromptFunc {
	opts.AddGenerationPrompt = true
	return func(problem string) ([]int32, error) {
		var msgs []chat.Message
		if system != "" {
			msgs = append(msgs, chat.Message{Role: "system", Content: system})
		}
		msgs = append(msgs, chat.Message{Role: "user", Content: problem})
		s, err := tmpl.Render(msgs, opts)
		if err != nil {
			return nil, err
		}
		return tok.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true}), nil
	}
}

// StopIDs is the model's EOS ids plus the ids of the official stop tokens the tokenizer has
// (<|im_end|>, <|endoftext|>, </s>), so a chat-trained model stops at the end of its turn.
func StopIDs(c model.Config, tok *tokenizer.Tokenizer) []int32 {
	var ids []int32
	seen := map[int32]bool{}
	add := func(id int32) {
		if !seen[id] && id >= 0 && int(id) < c.Vocab {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, id := range c.EOS {
		add(int32(id))
	}
	if tok != nil {
		for _, s := range []string{"<|im_end|>", "<|endoftext|>", "</s>"} {
			if id, ok := tok.TokenID(s); ok {
				add(id)
			}
		}
	}
	return ids
}

// Options sets an evaluation's generation.
type Options struct {
	K            int    // samples per problem for maj@K; 0: greedy pass@1 only
	MaxNewTokens int    // per response
	Seed         uint64 // sampling seed; each problem draws from its own stream
	StopIDs      []int32
	StopStrings  []string
	MaxBatch     int // sequences decoded together (default 64)
	// FitContext shortens MaxNewTokens to what the model's context leaves after the longest prompt,
	// instead of refusing (the official 1024-token budget exceeds a small model's context).
	FitContext bool
	// FirstIndex is the index of problems[0] in the whole evaluation set, which keys each problem's
	// sampling stream: a rank's share of a split evaluation samples what one process would.
	FirstIndex int
	// Chunk is the number of problems handed to the engine at once (default: about 16 batches' worth
	// of sequences); progress is reported between chunks.
	Chunk int
}

// Evaluator runs problems through a model with the generation engine.
type Evaluator struct {
	Model   *model.Model
	Prompt  PromptFunc
	Decoder generate.Detokenizer
	Options Options
	// Comm, when it holds several processes, splits Run's problems over them: each decodes its share
	// and the responses are gathered in order, so every rank grades the whole set alike.
	Comm *dist.Comm
	// Stats is the engine's work over the last Run (this rank's share).
	Stats  generate.Stats
	tokens atomic.Int64
}

// Tokens is the number of tokens the current (or last) Run has generated so far; it may be read from
// another goroutine, to show the progress of a chunk that takes minutes.
func (e *Evaluator) Tokens() int64 { return e.tokens.Load() }

// Generate returns each problem's greedy response and, with K > 0, its K sampled responses. All of a
// chunk's requests go to the engine together (continuous batching); the K samples of a problem are one
// request, so they share its prompt's prefill. Once ctx is done it stops at the next decoding step and
// returns ctx's error.
func (e *Evaluator) Generate(ctx context.Context, problems []Problem, progress func(done, total int)) (greedy []string, samples [][]string, err error) {
	o := e.Options
	if o.MaxNewTokens < 1 || o.K < 0 {
		return nil, nil, fmt.Errorf("evaluate: MaxNewTokens %d, K %d", o.MaxNewTokens, o.K)
	}
	if len(problems) == 0 {
		return nil, nil, errors.New("evaluate: no problems to evaluate")
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.Chunk <= 0 {
		o.Chunk = max(1, 16*o.MaxBatch/(o.K+1))
	}
	prompts, longest, maxNew, err := e.prompts(problems)
	if err != nil {
		return nil, nil, err
	}
	o.MaxNewTokens = maxNew
	eng, err := newEngine(e.Model, longest, o.MaxNewTokens, o.MaxBatch)
	if err != nil {
		return nil, nil, err
	}
	defer eng.Free()

	e.tokens.Store(0)
	count := func(int, int, int32) { e.tokens.Add(1) }
	greedy = make([]string, len(problems))
	if o.K > 0 {
		samples = make([][]string, len(problems))
	}
	stop := o.StopIDs
	for lo := 0; lo < len(problems); lo += o.Chunk {
		hi := min(lo+o.Chunk, len(problems))
		var reqs []generate.Request
		for i := lo; i < hi; i++ {
			reqs = append(reqs, generate.Request{Prompt: prompts[i], N: 1, Params: generate.Params{
				MaxNewTokens: o.MaxNewTokens, Temperature: 0, StopIDs: stop, StopStrings: o.StopStrings}})
			if o.K > 0 {
				reqs = append(reqs, generate.Request{Prompt: prompts[i], N: o.K, Params: generate.Params{
					MaxNewTokens: o.MaxNewTokens, Temperature: SampleTemperature, TopP: SampleTopP,
					StopIDs: stop, StopStrings: o.StopStrings, Seed: problemSeed(o.Seed, o.FirstIndex+i)}})
			}
		}
		out, err := eng.GenerateContext(ctx, reqs, e.Decoder, count)
		if err != nil {
			return nil, nil, err
		}
		per := 1
		if o.K > 0 {
			per = 2
		}
		for i := lo; i < hi; i++ {
			r := out[(i-lo)*per:]
			greedy[i] = strings.TrimSpace(r[0][0].Text)
			if o.K > 0 {
				samples[i] = make([]string, o.K)
				for j, s := range r[1] {
					samples[i][j] = strings.TrimSpace(s.Text)
				}
			}
		}
		if progress != nil {
			progress(hi, len(problems))
		}
	}
	e.Stats = eng.Stats()
	return greedy, samples, nil
}

// Shape is what an evaluation of problems sizes its engine by (EngineConfig): the longest prompt in
// tokens and the response budget, MaxNewTokens cut to the model's context with FitContext.
func (e *Evaluator) Shape(problems []Problem) (longest, maxNew int, err error) {
	_, longest, maxNew, err = e.prompts(problems)
	return longest, maxNew, err
}

// prompts tokenizes problems' prompts and settles the response budget against the model's context.
func (e *Evaluator) prompts(problems []Problem) (prompts [][]int32, longest, maxNew int, err error) {
	prompts = make([][]int32, len(problems))
	longest, maxNew = 1, e.Options.MaxNewTokens
	for i, p := range problems {
		if prompts[i], err = e.Prompt(p.Problem); err != nil {
			return nil, 0, 0, fmt.Errorf("evaluate: problem %d: %w", i, err)
		}
		if len(prompts[i]) == 0 {
			return nil, 0, 0, fmt.Errorf("evaluate: problem %d: empty prompt", i)
		}
		longest = max(longest, len(prompts[i]))
	}
	window := e.Model.Config.MaxPositions
	if e.Options.FitContext && longest < window && longest+maxNew > window {
		maxNew = window - longest
	}
	if longest+maxNew > window {
		return nil, 0, 0, fmt.Errorf("evaluate: the longest prompt (%d tokens) + %d new tokens exceeds the model's context of %d",
			longest, maxNew, window)
	}
	return prompts, longest, maxNew, nil
}

// Run generates and grades; a done ctx stops it at the next decoding step with ctx's error.
func (e *Evaluator) Run(ctx context.Context, problems []Problem, progress func(done, total int)) (Report, []Result, error) {
	if e.Comm == nil || e.Comm.Size() == 1 {
		greedy, samples, err := e.Generate(ctx, problems, progress)
		if err != nil {
			return Report{}, nil, err
		}
		return Grade(problems, greedy, samples, e.Options.K)
	}
	lo, hi := e.Comm.Split(len(problems))
	if e.Options.FitContext {
		// Fit to the longest prompt of the whole set, as one process would, not of this rank's share.
		// (A prompt that fails, fails alike on every rank.)
		saved := e.Options
		defer func() { e.Options = saved }()
		longest := 1
		for i, p := range problems {
			ids, err := e.Prompt(p.Problem)
			if err != nil {
				return Report{}, nil, fmt.Errorf("evaluate: problem %d: %w", i, err)
			}
			longest = max(longest, len(ids))
		}
		if window := e.Model.Config.MaxPositions; longest < window && longest+e.Options.MaxNewTokens > window {
			e.Options.MaxNewTokens = window - longest
		}
		e.Options.FitContext = false
	}
	type share struct {
		Greedy  string   `json:"g"`
		Samples []string `json:"s,omitempty"`
	}
	var mine []share
	var genErr error
	if hi > lo {
		first := e.Options.FirstIndex
		e.Options.FirstIndex = first + lo
		greedy, samples, err := e.Generate(ctx, problems[lo:hi], progress)
		e.Options.FirstIndex = first
		genErr = err
		for i, g := range greedy {
			sh := share{Greedy: g}
			if samples != nil {
				sh.Samples = samples[i]
			}
			mine = append(mine, sh)
		}
	}
	// Every rank takes part in both collectives whatever happened to its share, and all fail together.
	if err := dist.Agree(e.Comm, "evaluate: generating this rank's share", genErr); err != nil {
		if genErr == nil && ctx.Err() != nil {
			return Report{}, nil, ctx.Err()
		}
		return Report{}, nil, err
	}
	all, err := dist.Gather(e.Comm, "evaluation responses", mine)
	if err != nil {
		return Report{}, nil, fmt.Errorf("evaluate: %w", err)
	}
	greedy := make([]string, len(all))
	var samples [][]string
	if e.Options.K > 0 {
		samples = make([][]string, len(all))
	}
	for i, sh := range all {
		greedy[i] = sh.Greedy
		if samples != nil {
			samples[i] = sh.Samples
		}
	}
	return Grade(problems, greedy, samples, e.Options.K)
}

// problemSeed gives each problem its own sampling stream (SplitMix64 of seed and index), so a
// problem's samples do not depend on which others are evaluated with it.
func problemSeed(seed uint64, i int) uint64 {
	z := seed + 0x9E3779B97F4A7C15*uint64(i+1)
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// EngineConfig is the generation engine an evaluation of prompts of up to longest tokens with maxNew
// new tokens runs (generate.Size's rule), so a memory plan can count it before anything is allocated.
// maxBatch ≤ 0 is the default of 64.
func EngineConfig(mc model.Config, longest, maxNew, maxBatch int) (generate.Config, error) {
	if maxBatch <= 0 {
		maxBatch = 64
	}
	return generate.Size(mc, generate.Sizing{MaxPrompt: longest, MaxNew: maxNew, MaxBatch: maxBatch})
}

// newEngine makes the engine EngineConfig sizes.
func newEngine(m *model.Model, longest, maxNew, maxBatch int) (*generate.Engine, error) {
	cfg, err := EngineConfig(m.Config, longest, maxNew, maxBatch)
	if err != nil {
		return nil, err
	}
	return generate.New(m, cfg)
}
