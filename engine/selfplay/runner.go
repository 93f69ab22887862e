package selfplay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/dist"
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/mathans"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/reward"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/selfinstruct"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/engine/train"
	"github.com/serl-go/serl/internal/crashpoint"
)

// Inputs are what a run works with besides its configuration.
type Inputs struct {
	Policy *model.Model // trained in place
	// Reference is the frozen initial weights, for the KL term. A run with no KL term (kl_coef 0)
	// and no LoRA may leave it nil, holding no second copy of the weights: its run directory's
	// reference folder is then saved from the policy's weights at the start, which are the same model.
	Reference *model.Model
	Tokenizer *tokenizer.Tokenizer
	Chat      chat.Template // the model's chat template (self-instruction prompts always use it)
	ChatOpts  chat.Options  // its BOS/EOS tokens and date string
	Seeds     []Problem     // serl: few-shot examples and ROUGE-L references
	Train     []Problem     // maj/gt: the fixed prompt set (gt: with labels)
	// Evaluate, when set, runs at every iteration boundary (and before training); its result is written
	// to eval_iter<k>.json.
	Evaluate func(ctx context.Context, m *model.Model, iteration int) (any, error)
	// RunFiles are written into a new run directory before it appears (name → contents), such as the
	// caller's settings and copies of its data files, so that a start killed at any moment leaves either
	// no run directory or a complete one.
	RunFiles map[string][]byte
	// Comm is the process group the run is split over (nil: this process alone). Every rank gets the
	// same configuration and inputs; rank 0 owns the run directory.
	Comm *dist.Comm
}

// Runner runs the SeRL loop.
type Runner struct {
	cfg   Config
	in    Inputs
	dir   *runDir
	state State
	comm  *dist.Comm

	engine   *generate.Engine
	opt      *train.Optimizer
	grads    *model.Blob
	acts     *model.Activations
	rlw      *rl.Workspace
	rlc      rl.Config
	loopRNG  *rand.Rand
	loopPCG  *rand.PCG
	fewShot  *selfinstruct.RNG
	builder  *selfinstruct.Builder
	pool     *selfinstruct.Pool
	filter   *selfinstruct.Filter
	onStep   func(StepMetrics)
	counters tickCounters
	// stepStart is when the ticks towards the next step began (after the last checkpoint or the first
	// evaluation); lastCheckpoint is how long that checkpoint took to write (0: none written here).
	stepStart      time.Time
	lastCheckpoint time.Duration
	// unsettled is the last checkpoint while the other ranks have not yet learnt its outcome.
	unsettled *unsettled
	// unsaved is the state after the last step when that step was not checkpointed (checkpoint_every),
	// while the weights and moments still hold it: an interrupt before the next weight update saves it.
	unsaved *snapshot
}

// snapshot is the loop state after a training step, with its generators, as a checkpoint records it.
type snapshot struct {
	step  int
	state json.RawMessage
}

// tickCounters accumulate over the ticks of one training step, for its metrics line.
type tickCounters struct {
	generated, accepted    int
	rejected               selfinstruct.Counts
	kept, dropped, expire  int
	shares                 []float64
	genTokens, instrTokens int // instrTokens: of genTokens, the self-instruction completions'
	instrTime, filterTime  time.Duration
	rolloutTime            time.Duration
	rewardTime             time.Duration
}

// ArenaTokens sizes the training arena: MicroBatchTokens, or by default a whole optimizer step.
func (c Config) ArenaTokens() int {
	if c.MicroBatchTokens > 0 {
		return c.MicroBatchTokens
	}
	return c.stepTokens()
}

// stepTokens is an optimizer step's worst case: TrainBatch sequences of the longest length.
func (c Config) stepTokens() int { return c.TrainBatch * (c.MaxPromptTokens + c.MaxNewTokens) }

// newRunner checks the inputs and builds the engine, optimizer and buffers around a state (fresh or
// restored). It writes nothing: the run directory is attached afterwards.
func newRunner(cfg Config, in Inputs, st State) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkInputs(cfg, in); err != nil {
		return nil, err
	}
	m := in.Policy
	p, _ := model.ParsePrecision(cfg.Precision)
	if m.Precision() != p {
		return nil, fmt.Errorf("selfplay: the run is %s but the policy is %s", cfg.Precision, m.Precision())
	}
	if in.Reference != nil && in.Reference.Precision() != p {
		return nil, fmt.Errorf("selfplay: the run is %s but the reference is %s", cfg.Precision, in.Reference.Precision())
	}
	if (cfg.LoRARank > 0) != (m.LoRA() != nil) {
		return nil, fmt.Errorf("selfplay: lora_rank %d but the policy has adapters: %v", cfg.LoRARank, m.LoRA() != nil)
	}
	gcfg, err := cfg.generationConfig(m.Config)
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, in: in, state: st, comm: in.comm()}
	if r.engine, err = generate.New(m, gcfg); err != nil {
		return nil, err
	}
	sched, err := train.NewSchedule(cfg.LR, cfg.OptimizerSteps(), cfg.WarmupRatio, cfg.MinLRRatio)
	if err != nil {
		return nil, err
	}
	if r.opt, err = train.NewOptimizer(m, train.AdamWConfig{Schedule: sched, Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: 1e-8, ClipNorm: cfg.ClipNorm}); err != nil {
		return nil, err
	}
	if r.grads, err = m.NewGrads(); err != nil {
		return nil, err
	}
	if r.acts, err = m.NewActivations(cfg.ArenaTokens(), cfg.TrainBatch); err != nil {
		return nil, err
	}
	r.rlw = rl.NewWorkspace(m.Device(), r.acts)
	r.rlc = rl.DefaultConfig(cfg.Algorithm)
	r.rlc.KLCoef, r.rlc.ClipEps = cfg.KLCoef, cfg.ClipEps
	r.loopPCG = rand.NewPCG(cfg.Seed, 0x5e71)
	r.fewShot = selfinstruct.NewRNG(cfg.Seed ^ 0xfe75)
	if st.LoopRNG != nil {
		if err := r.loopPCG.UnmarshalBinary(st.LoopRNG); err != nil {
			return nil, fmt.Errorf("selfplay: restoring the loop RNG: %w", err)
		}
		if err := r.fewShot.UnmarshalBinary(st.FewShotRNG); err != nil {
			return nil, fmt.Errorf("selfplay: restoring the few-shot RNG: %w", err)
		}
	}
	r.loopRNG = rand.New(r.loopPCG)
	r.builder = &selfinstruct.Builder{Template: selfinstruct.DefaultTemplate(), K: cfg.FewShot, FromKeep: cfg.FewShotFromKeep}
	if cfg.FewShotFromKeep == 0 {
		r.builder.FromKeep = -1
	}
	// The ROUGE-L pool is rebuilt in its original order — seeds, every accepted problem, then pending —
	// so a resumed run scores candidates exactly as the uninterrupted one (docs/SERL.md D6).
	r.pool = selfinstruct.NewPool()
	for _, p := range in.Seeds {
		r.pool.Add(p.Text)
	}
	for _, t := range st.Accepted {
		r.pool.Add(t)
	}
	r.filter = &selfinstruct.Filter{Pool: r.pool, Threshold: cfg.RougeThreshold, Capitalization: cfg.Capitalization}
	return r, nil
}

// checkInputs checks everything about the inputs that can fail later in the loop, so that a run that
// cannot work is refused before its directory exists: the models and data a mode needs, enough seeds
// for a few-shot prompt, chat templates that render, and a prompt budget that holds the prompts.
func checkInputs(cfg Config, in Inputs) error {
	if in.Policy == nil || in.Tokenizer == nil {
		return errors.New("selfplay: policy and tokenizer are required")
	}
	switch {
	case in.Reference == nil && cfg.KLCoef != 0:
		return fmt.Errorf("selfplay: kl_coef %g needs a reference model (only a run with kl_coef 0 goes without)", cfg.KLCoef)
	case in.Reference == nil && cfg.LoRARank > 0:
		return errors.New("selfplay: a LoRA run needs its reference, the policy's frozen base (model.Base)")
	}
	if cfg.Mode == ModeSeRL && (len(in.Seeds) == 0 || in.Chat == nil) {
		return errors.New("selfplay: serl mode needs seed problems and a chat template")
	}
	if cfg.Mode == ModeSeRL && len(in.Seeds) < cfg.FewShot {
		return fmt.Errorf("selfplay: serl mode needs at least few_shot = %d seed problems for its self-instruction prompts, have %d", cfg.FewShot, len(in.Seeds))
	}
	if cfg.Mode != ModeSeRL && len(in.Train) < cfg.RolloutBatch {
		return fmt.Errorf("selfplay: %s mode needs at least %d training problems, have %d", cfg.Mode, cfg.RolloutBatch, len(in.Train))
	}
	if cfg.Mode == ModeGT {
		for i, p := range in.Train {
			if p.Label == "" {
				return fmt.Errorf("selfplay: gt mode: training problem %d has no label", i)
			}
		}
	}
	opts := in.ChatOpts
	opts.AddGenerationPrompt = true
	if cfg.PromptMode == PromptChat {
		if in.Chat == nil {
			return errors.New("selfplay: prompt_mode chat needs the model's chat template")
		}
		// The template's own tokens must leave room for the problem, or every task prompt is cut inside it.
		s, err := in.Chat.Render([]chat.Message{{Role: "system", Content: cfg.SystemPrompt}, {Role: "user", Content: ""}}, opts)
		if err != nil {
			return fmt.Errorf("selfplay: rendering a task prompt with the chat template: %w", err)
		}
		if n := len(in.Tokenizer.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true})); n >= cfg.MaxPromptTokens {
			return fmt.Errorf("selfplay: max_prompt_tokens %d: the chat template and system prompt alone take %d tokens", cfg.MaxPromptTokens, n)
		}
	}
	if cfg.Mode == ModeSeRL {
		// The shortest self-instruction prompt: one seed example, as Build falls back to.
		b := selfinstruct.Builder{Template: selfinstruct.DefaultTemplate(), K: 1, FromKeep: -1}
		p, err := b.Build(selfinstruct.NewRNG(cfg.Seed), []string{shortest(in.Seeds)}, nil, nil)
		if err != nil {
			return fmt.Errorf("selfplay: self-instruction prompt: %w", err)
		}
		s, err := in.Chat.Render([]chat.Message{{Role: "system", Content: p.System}, {Role: "user", Content: p.User}}, opts)
		if err != nil {
			return fmt.Errorf("selfplay: rendering the self-instruction prompt with the chat template: %w", err)
		}
		if n := len(in.Tokenizer.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true})); n > cfg.MaxPromptTokens {
			return fmt.Errorf("selfplay: max_prompt_tokens %d: a self-instruction prompt with a single example takes %d tokens", cfg.MaxPromptTokens, n)
		}
	}
	return nil
}

func shortest(ps []Problem) string {
	s := ps[0].Text
	for _, p := range ps[1:] {
		if len(p.Text) < len(s) {
			s = p.Text
		}
	}
	return s
}

// Free releases the runner's buffers (not the models) and gives up its run directory.
func (r *Runner) Free() {
	if r.dir != nil {
		r.dir.lock.Release()
	}
	if r.engine != nil {
		r.engine.Free()
	}
	if r.opt != nil {
		r.opt.Free()
	}
	if r.rlw != nil {
		r.rlw.Free()
	}
	r.grads.Free()
	r.acts.Free()
}

// State returns the loop state (for tests and embedding programs).
func (r *Runner) State() State { return r.state }

// Run runs until the last iteration is trained or ctx is cancelled. The state after every training
// step is checkpointed (with checkpoint_every, every such step and each iteration's last), so a killed
// run resumes from its last checkpoint; a cancelled one also keeps the step it stopped after when it
// stopped before the next step updated the weights (saveUnsaved).
func (r *Runner) Run(ctx context.Context, onStep func(StepMetrics)) error {
	err := r.run(ctx, onStep)
	// Every rank stops with context.Canceled where one was interrupted (cancelled), its own context
	// cancelled or not, so all of them take this branch together.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if serr := r.saveUnsaved(); serr != nil {
			return fmt.Errorf("%w (and %w)", err, serr)
		}
	}
	return err
}

func (r *Runner) run(ctx context.Context, onStep func(StepMetrics)) error {
	r.onStep = onStep
	total := r.cfg.Iterations * r.cfg.StepsPerIteration()
	if r.dir == nil {
		return errors.New("selfplay: Run needs a runner from Start or Resume")
	}
	if r.state.Evaluated == 0 && r.in.Evaluate != nil {
		if err := r.evaluate(ctx, 0); err != nil {
			return err
		}
		r.state.Evaluated = 1
	}
	r.stepStart = time.Now()
	for r.state.Steps < total {
		// Alone, stop here when interrupted; with other ranks, every phase's gather carries the
		// interrupt flags (gatherPhase), so that all stop at the same point without a collective of
		// their own.
		if r.comm.Size() == 1 && ctx.Err() != nil {
			return ctx.Err()
		}
		trained, err := r.tick(ctx)
		if err != nil {
			return err
		}
		if !trained {
			r.state.NoStepTicks++
			if r.state.NoStepTicks > r.cfg.MaxTicksNoStep {
				c := r.counters
				return fmt.Errorf("selfplay: %d rollouts and generation rounds without enough medium-difficulty groups for a training step "+
					"(since the last step: %d problems written, %d passed the filters; %d groups kept, %d dropped); "+
					"the model may be unable to produce usable problems or answers", r.state.NoStepTicks, c.generated, c.accepted, c.kept, c.dropped)
			}
			continue
		}
		r.state.NoStepTicks = 0
		if r.state.Steps%r.cfg.StepsPerIteration() == 0 {
			it := r.state.Steps / r.cfg.StepsPerIteration()
			if r.in.Evaluate != nil {
				if err := r.evaluate(ctx, it); err != nil {
					return err
				}
			}
			r.state.Evaluated = it + 1
			if err := r.dir.saveIteration(r, it); err != nil {
				return err
			}
		}
		if r.cfg.checkpointAfter(r.state.Steps) {
			t0 := time.Now()
			if err := r.checkpointStep(); err != nil {
				return err
			}
			r.lastCheckpoint = time.Since(t0)
			r.unsaved = nil
		} else if r.unsaved, err = r.snapshot(); err != nil {
			return err
		}
		r.stepStart = time.Now()
	}
	return r.settleLast()
}

func (r *Runner) evaluate(ctx context.Context, it int) error {
	crashpoint.Here("selfplay.eval")
	res, err := r.in.Evaluate(ctx, r.in.Policy, it)
	if err != nil {
		return fmt.Errorf("selfplay: evaluation at iteration %d: %w", it, err)
	}
	if err := r.dir.writeJSON(fmt.Sprintf("eval_iter%d.json", it), res); err != nil {
		return err
	}
	crashpoint.Here("selfplay.eval.written")
	return nil
}

// tick is one pass of the loop: a generation round, or a rollout with its filtering, accumulation and
// (when 16 groups are ready) a training step. It reports whether a training step happened.
func (r *Runner) tick(ctx context.Context) (bool, error) {
	r.state.Ticks++
	var problems []Problem
	switch r.cfg.Mode {
	case ModeSeRL:
		if len(r.state.Pending) < r.cfg.RolloutBatch {
			crashpoint.Here("selfplay.generate")
			return false, r.generateProblems(ctx)
		}
		problems = append([]Problem(nil), r.state.Pending[:r.cfg.RolloutBatch]...)
		r.state.Pending = append(r.state.Pending[:0], r.state.Pending[r.cfg.RolloutBatch:]...)
	default:
		problems = r.nextTrainingProblems()
	}
	crashpoint.Here("selfplay.rollout")
	groups, err := r.rollout(ctx, problems)
	if err != nil {
		return false, err
	}
	lo, hi := r.cfg.DifficultyLow, r.cfg.DifficultyHigh
	if r.cfg.Mode == ModeGT {
		lo, hi = 0, 1 // the oracle baseline filters nothing (official: bounds [0, 1])
	}
	fr := difficultyFilter(groups, lo, hi)
	r.counters.kept += len(fr.kept)
	r.counters.dropped += len(fr.dropped)
	if err := r.dir.appendProblems(fmt.Sprintf("filtered_data_%d.jsonl", r.state.Steps), fr.dropped); err != nil {
		return false, err
	}
	for _, g := range fr.kept {
		if r.cfg.Mode == ModeSeRL {
			r.state.Keep = append(r.state.Keep, g.Problem.Text)
		}
		g.Tag = r.state.Steps
		r.state.Accum = append(r.state.Accum, g)
	}
	expired := r.state.expire()
	r.counters.expire += len(expired)
	if err := r.dir.appendProblems(fmt.Sprintf("expired_data_%d.jsonl", r.state.Steps), expired); err != nil {
		return false, err
	}
	batch, ok := r.state.takeBatch(r.cfg.RolloutBatch)
	if !ok {
		return false, nil
	}
	if err := r.dir.appendProblems(fmt.Sprintf("keep_train_data_%d.jsonl", r.state.Steps), batch); err != nil {
		return false, err
	}
	crashpoint.Here("selfplay.train")
	if err := r.trainStep(ctx, batch); err != nil {
		return false, err
	}
	return true, nil
}

// nextTrainingProblems takes the next RolloutBatch problems of the shuffled training set (maj/gt),
// reshuffling at each epoch and dropping the last partial batch, as the official dataloader.
func (r *Runner) nextTrainingProblems() []Problem {
	n := len(r.in.Train)
	if r.state.DataCursor+r.cfg.RolloutBatch > n || r.state.DataCursor == 0 {
		if r.state.DataCursor != 0 {
			r.state.DataEpoch++
		}
		r.state.DataCursor = 0
	}
	perm := rand.New(rand.NewPCG(r.cfg.Seed+uint64(r.state.DataEpoch), 0xda7a)).Perm(n)
	out := make([]Problem, r.cfg.RolloutBatch)
	for i := range out {
		out[i] = r.in.Train[perm[r.state.DataCursor+i]]
	}
	r.state.DataCursor += r.cfg.RolloutBatch
	return out
}

// responseKey derives a sampling seed for one purpose of one tick, so draws depend only on the run's
// seed and position, never on batching or on what ran before a resume.
func (r *Runner) responseKey(purpose uint64) uint64 {
	x := r.cfg.Seed*0x9e3779b97f4a7c15 ^ uint64(r.state.Ticks)*0xbf58476d1ce4e5b9 ^ purpose*0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// taskPrompt renders a problem as the policy sees it (docs/SERL.md D1).
func (r *Runner) taskPrompt(text string) ([]int32, error) {
	if r.cfg.PromptMode == PromptChat {
		s, err := r.in.Chat.Render([]chat.Message{{Role: "system", Content: r.cfg.SystemPrompt}, {Role: "user", Content: text}}, r.chatOpts())
		if err != nil {
			return nil, err
		}
		return r.in.Tokenizer.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true}), nil
	}
	// Raw mode: the problem text as is, no special tokens (official RL prompts), and special-token text
	// inside model-written problems stays plain text.
	return r.in.Tokenizer.Encode(text, tokenizer.EncodeOptions{}), nil
}

func (r *Runner) chatOpts() chat.Options {
	o := r.in.ChatOpts
	o.AddGenerationPrompt = true
	return o
}

// rollout samples Samples responses for each problem and rewards them.
func (r *Runner) rollout(ctx context.Context, problems []Problem) ([]Group, error) {
	reqs := make([]generate.Request, 0, len(problems))
	groups := make([]Group, 0, len(problems))
	for i, p := range problems {
		ids, err := r.taskPrompt(p.Text)
		if err != nil {
			return nil, fmt.Errorf("selfplay: prompt of problem %d: %w", p.ID, err)
		}
		if len(ids) > r.cfg.MaxPromptTokens {
			ids = ids[:r.cfg.MaxPromptTokens] // as official: truncated from the right (task prompts only)
		}
		reqs = append(reqs, generate.Request{Prompt: ids, N: r.cfg.Samples, Params: generate.Params{
			MaxNewTokens: r.cfg.MaxNewTokens, MinNewTokens: 1, Temperature: float32(r.cfg.Temperature),
			TopP: float32(r.cfg.TopP), Seed: r.responseKey(uint64(i) + 1)}})
		groups = append(groups, Group{Problem: p, Prompt: ids})
	}
	// This rank's share of the groups: sampled, decoded and rewarded here, then gathered.
	lo, hi := r.comm.Split(len(reqs))
	t0 := time.Now()
	before := r.engine.Stats().GeneratedTokens
	var out [][]generate.Sample
	if hi > lo {
		var err error
		if out, err = r.engine.GenerateContext(ctx, reqs[lo:hi], r.in.Tokenizer, nil); err != nil {
			return nil, interrupted[Group](ctx, r, "rollout groups", err)
		}
	}
	r.counters.rolloutTime += time.Since(t0)
	genTokens := r.engine.Stats().GeneratedTokens - before
	t0 = time.Now()
	mine := groups[lo:hi]
	for i := range mine {
		g := &mine[i]
		answers := make([]mathans.Answer, len(out[i]))
		g.Responses = make([]Response, len(out[i]))
		for j, s := range out[i] {
			g.Responses[j] = Response{Tokens: s.Tokens, Text: s.Text}
			answers[j] = mathans.Extract(s.Text) // from the response only (docs/SERL.md D7)
		}
		var rewards []float64
		if r.cfg.Mode == ModeGT {
			gold := mathans.ParseGold(g.Problem.Label)
			rewards = make([]float64, len(answers))
			for j, a := range answers {
				if mathans.Same(gold, a) {
					rewards[j] = 1
				}
			}
		} else {
			rewards, _ = reward.Majority(answers)
		}
		for j := range g.Responses {
			g.Responses[j].Reward = rewards[j]
		}
		g.Share = reward.Share(rewards)
	}
	r.counters.rewardTime += time.Since(t0)
	all, err := gatherPhase(ctx, r, "rollout groups", mine, genTokens)
	if err != nil {
		return nil, err
	}
	for _, g := range all {
		r.counters.shares = append(r.counters.shares, g.Share)
	}
	return all, nil
}

// generateProblems is one self-instruction round: GenPrompts few-shot prompts through the chat
// template, one completion each, parsed and filtered into the pending pool (docs/SERL.md §2).
func (r *Runner) generateProblems(ctx context.Context) error {
	seeds := make([]string, len(r.in.Seeds))
	for i, p := range r.in.Seeds {
		seeds[i] = p.Text
	}
	reqs := make([]generate.Request, r.cfg.GenPrompts)
	var renderErr error
	for i := range reqs {
		var ids []int32
		fits := func(p selfinstruct.Prompt) bool {
			s, err := r.in.Chat.Render([]chat.Message{{Role: "system", Content: p.System}, {Role: "user", Content: p.User}}, r.chatOpts())
			if err != nil {
				renderErr = err
				return true
			}
			ids = r.in.Tokenizer.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true})
			return len(ids) <= r.cfg.MaxPromptTokens
		}
		if _, err := r.builder.Build(r.fewShot, seeds, r.state.Keep, fits); err != nil {
			return fmt.Errorf("selfplay: self-instruction prompt: %w", err)
		}
		if renderErr != nil {
			return fmt.Errorf("selfplay: rendering the self-instruction prompt: %w", renderErr)
		}
		reqs[i] = generate.Request{Prompt: ids, N: 1, Params: generate.Params{MaxNewTokens: r.cfg.InstrMaxNewTokens, MinNewTokens: 1,
			Temperature: float32(r.cfg.InstrTemperature), TopP: float32(r.cfg.InstrTopP),
			PresencePenalty: float32(r.cfg.InstrPresencePenalty), Seed: r.responseKey(1<<20 + uint64(i))}}
	}
	// Every rank built every prompt (the few-shot draws advance the same RNG everywhere); each decodes
	// its share, and the completions are filtered in their global order on every rank, so the pool
	// and the ROUGE-L references stay identical.
	lo, hi := r.roundShare(len(reqs))
	t0 := time.Now()
	before := r.engine.Stats().GeneratedTokens
	var texts []string
	if hi > lo {
		out, err := r.engine.GenerateContext(ctx, reqs[lo:hi], r.in.Tokenizer, nil)
		if err != nil {
			return interrupted[string](ctx, r, "self-instruction completions", err)
		}
		for _, o := range out {
			texts = append(texts, o[0].Text)
		}
	}
	r.counters.instrTime += time.Since(t0)
	gathered := r.counters.genTokens
	texts, err := gatherPhase(ctx, r, "self-instruction completions", texts, r.engine.Stats().GeneratedTokens-before)
	if err != nil {
		return err
	}
	r.counters.instrTokens += r.counters.genTokens - gathered
	t0 = time.Now()
	defer func() { r.counters.filterTime += time.Since(t0) }()
	for _, text := range texts {
		res := r.filter.Process(text)
		r.counters.generated += len(res.Candidates)
		r.counters.accepted += len(res.Accepted)
		r.counters.rejected.Add(res.Counts)
		for _, text := range res.Accepted {
			r.state.Pending = append(r.state.Pending, Problem{ID: r.state.GenIdx, Text: text})
			r.state.Accepted = append(r.state.Accepted, text)
			r.state.GenIdx++
		}
	}
	return nil
}
