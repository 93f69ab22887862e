package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/chart"
	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/dist"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/rl"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

func init() {
	addCommand(command{name: "train", summary: "run SeRL (or the maj/gt baselines) end to end", run: runTrain})
}

// trainFlags are serl train's settings beyond the loop's own Config. The data files and evaluation
// settings are kept in the run directory (cli.json and copies of the files), so a resumed run needs
// nothing but its directory.
type trainFlags struct {
	Model       string `json:"-"`
	Seeds       string `json:"seeds,omitempty"`
	Data        string `json:"data,omitempty"`
	Eval        string `json:"eval,omitempty"`
	Run         string `json:"-"`
	Resume      string `json:"-"`
	EvalK       int    `json:"eval_k"`
	EvalKAll    bool   `json:"eval_k_all"`
	EvalKBefore bool   `json:"eval_k_before"`
	EvalLimit   int    `json:"eval_limit"`
	EvalMaxNew  int    `json:"eval_max_new_tokens"`
	Plan        bool   `json:"-"` // print the memory plan and stop
}

const cliFile = "cli.json"

// runFiles are the files a new run directory starts with besides the loop's own: copies of the data
// files and cli.json recording where they are, so a resumed run needs nothing but its directory.
func runFiles(tf trainFlags) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, f := range []struct {
		path *string
		name string
	}{{&tf.Seeds, "seeds.jsonl"}, {&tf.Data, "data.jsonl"}, {&tf.Eval, "eval.jsonl"}} {
		if *f.path == "" {
			continue
		}
		b, err := problemFileBytes(*f.path)
		if err != nil {
			return nil, err
		}
		files[f.name] = b
		*f.path = f.name
	}
	b, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return nil, err
	}
	files[cliFile] = append(b, '\n')
	return files, nil
}

// checkResumeFlags refuses, with --resume, every flag that would change the run: a resumed run keeps
// the settings it was started with (config.json, cli.json; pretrain.json). It says which flags apply:
// those of where it runs, not of what it computes. names are the command's other flags a resume takes
// (pretrain's --out, which names the run; train's --plan, which only prints).
func checkResumeFlags(fs *flag.FlagSet, stderr io.Writer, names ...string) error {
	var refused, applied []string
	fs.Visit(func(f *flag.Flag) {
		switch {
		case f.Name == "resume" || slices.Contains(names, f.Name):
		case deviceFlagNames[f.Name]:
			applied = append(applied, "--"+f.Name)
		default:
			refused = append(refused, "--"+f.Name)
		}
	})
	if len(refused) > 0 {
		also := ""
		if len(names) > 0 {
			also = " and --" + strings.Join(names, ", --")
		}
		return usagef("%s with --resume: a resumed run keeps the model, data and settings it was started with "+
			"(saved in its directory); only --device, --threads, the profiling flags%s may be given", strings.Join(refused, ", "), also)
	}
	if len(applied) > 0 {
		fmt.Fprintf(stderr, "serl: %s apply to the resumed run\n", strings.Join(applied, ", "))
	}
	return nil
}

// checkTrainFlags checks serl train's own settings of a new run before anything is loaded or written.
func checkTrainFlags(tf trainFlags, cfg selfplay.Config) error {
	switch {
	case tf.EvalK < 0:
		return usagef("--eval-k %d: want 0 (greedy pass@1 only) or more samples", tf.EvalK)
	case tf.EvalLimit < 0:
		return usagef("--eval-limit %d: want 0 (all) or more", tf.EvalLimit)
	case tf.EvalMaxNew < 0:
		return usagef("--eval-max-new-tokens %d: want 0 (--max-new-tokens) or more", tf.EvalMaxNew)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 1 // --max-batch 0: sized from the device's free memory once it is open
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// restoreInputs reads cli.json back, with the file names resolved inside the run directory.
func restoreInputs(run string) (trainFlags, error) {
	var tf trainFlags
	b, err := os.ReadFile(filepath.Join(run, cliFile))
	if err != nil {
		return tf, err
	}
	if err := json.Unmarshal(b, &tf); err != nil {
		return tf, fmt.Errorf("%s: %w", filepath.Join(run, cliFile), err)
	}
	for _, f := range []*string{&tf.Seeds, &tf.Data, &tf.Eval} {
		if *f != "" {
			*f = filepath.Join(run, *f)
		}
	}
	return tf, nil
}

func registerTrainFlags(fs interface {
	BoolVar(*bool, string, bool, string)
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	Float64Var(*float64, string, float64, string)
	Uint64Var(*uint64, string, uint64, string)
}, tf *trainFlags, c *selfplay.Config, alg, mode, promptMode *string) {
	fs.StringVar(&tf.Model, "model", "", "Hugging Face model folder (config.json, model.safetensors, tokenizer files); without it, the built-in model")
	fs.StringVar(&tf.Seeds, "seeds", "", "serl mode: the few labelled seed problems (SeRL JSONL: problem, answer, …); built-in model: "+builtinSeedsName)
	fs.StringVar(&tf.Data, "data", "", "maj/gt modes: the training problems (gt uses their answers); also "+builtinTrainName+" or "+builtinSeedsName)
	fs.StringVar(&tf.Eval, "eval", "", "held-out problems evaluated before training and at every iteration boundary; built-in model: "+builtinEvalName)
	fs.IntVar(&tf.EvalK, "eval-k", tf.EvalK, "samples per eval problem for maj@K, before training and after the last iteration (0: greedy pass@1 only)")
	fs.BoolVar(&tf.EvalKAll, "eval-k-all", false, "maj@K at every iteration boundary too")
	fs.BoolVar(&tf.EvalKBefore, "eval-k-before", true, "maj@K before training too (false: greedy pass@1 only, e.g. where the base model's maj@K is already known)")
	fs.IntVar(&tf.EvalLimit, "eval-limit", 0, "evaluate only the first N held-out problems (0: all)")
	fs.IntVar(&tf.EvalMaxNew, "eval-max-new-tokens", 0, "new tokens per eval response (0: --max-new-tokens)")
	fs.StringVar(&tf.Run, "run", "", "run directory (default runs/<time>)")
	fs.StringVar(&tf.Resume, "resume", "", "continue the run in this directory from its last checkpoint")
	fs.BoolVar(&tf.Plan, "plan", false, "print the run's memory plan, with the decode batch fitted to free memory where it is, and stop: no model is loaded, no run directory written")
	fs.StringVar(mode, "mode", string(c.Mode), "serl (self-instruction + majority reward), maj (majority reward on --data) or gt (ground truth on --data)")
	fs.StringVar(alg, "algorithm", string(c.Algorithm), "reinforce++, grpo or rloo")
	fs.StringVar(promptMode, "prompt-mode", string(c.PromptMode), "raw (problem text as is, official) or chat (chat template, boxed answer asked)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	fs.IntVar(&c.Iterations, "iterations", c.Iterations, "iterations (evaluation and a saved model after each)")
	fs.IntVar(&c.InstructionsPerIteration, "instructions-per-iteration", c.InstructionsPerIteration, "problems trained per iteration")
	fs.IntVar(&c.RolloutBatch, "rollout-batch", c.RolloutBatch, "problems per training step")
	fs.IntVar(&c.Samples, "samples", c.Samples, "responses per problem")
	fs.IntVar(&c.TrainBatch, "train-batch", c.TrainBatch, "sequences per optimizer step")
	fs.IntVar(&c.MicroBatchTokens, "micro-batch-tokens", c.MicroBatchTokens, "tokens the training arena holds: each optimizer step's gradients accumulate over micro-batches of at most this many (0: a whole step, --train-batch × (--max-prompt-tokens + --max-new-tokens), or where the decode batch is fitted to free memory and a whole step leaves no room to decode 64 sequences, the largest arena that does)")
	fs.Float64Var(&c.LR, "lr", c.LR, "peak learning rate (warm-up 3%, cosine to 10%)")
	fs.Float64Var(&c.KLCoef, "kl", c.KLCoef, "KL coefficient β (0: no KL term, and no reference model is held or scored)")
	fs.IntVar(&c.MaxPromptTokens, "max-prompt-tokens", c.MaxPromptTokens, "prompt budget (task prompts are cut, few-shot prompts drop examples)")
	fs.IntVar(&c.MaxNewTokens, "max-new-tokens", c.MaxNewTokens, "tokens per response")
	fs.IntVar(&c.InstrMaxNewTokens, "instr-max-new-tokens", c.InstrMaxNewTokens, "tokens per self-instruction completion")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", c.CheckpointEvery, "training steps between checkpoints (0 or 1: every step; each iteration's last step always, and Ctrl-C keeps the step it stopped after unless the next one had begun updating)")
	fs.IntVar(&c.MaxBatch, "max-batch", c.MaxBatch, "sequences decoded together (0: the most the device's free memory holds, the default on a GPU)")
	fs.Float64Var(&c.DifficultyLow, "difficulty-low", c.DifficultyLow, "keep groups whose majority share is at least this")
	fs.Float64Var(&c.DifficultyHigh, "difficulty-high", c.DifficultyHigh, "and at most this")
}

// runTrain is serl train in the process group it was launched in (mpirun -np N: data parallel).
func runTrain(args []string, stdout, stderr io.Writer) error {
	return inGroup(stdout, stderr, func(c *dist.Comm, stdout, stderr io.Writer) error { return trainRank(c, args, stdout, stderr) })
}

func trainRank(comm *dist.Comm, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("train", stderr)
	var df deviceFlags
	df.register(fs)
	// With neither --model nor --resume the run is on the built-in model, with settings sized for it
	// (and shown as the flags' defaults).
	modelArg, _ := flagValue(args, "model")
	useBuiltin := (!hasFlag(args, "model") || modelArg == builtin.Name) && !hasFlag(args, "resume")
	cfg := selfplay.DefaultConfig()
	var tf trainFlags
	if useBuiltin {
		cfg = builtin.SelfPlayConfig()
		tf.EvalK = builtin.EvalK
	}
	var alg, mode, promptMode string
	registerTrainFlags(fs, &tf, &cfg, &alg, &mode, &promptMode)
	var lf loraFlags
	lf.register(fs)
	fs.Usage = trainUsage(fs, useBuiltin)
	if err := parse(fs, args); err != nil {
		return err
	}
	if lc, err := lf.config(); err != nil {
		return err
	} else if lc != nil {
		cfg.LoRARank, cfg.LoRAAlpha, cfg.LoRATargets = lc.Rank, lc.Alpha, lc.Targets
	}
	cfg.Mode, cfg.PromptMode = selfplay.Mode(mode), selfplay.PromptMode(promptMode)
	if err := checkTrainChoices(cfg); err != nil {
		return err
	}
	if _, err := df.prec(); err != nil {
		return err
	}
	cfg.Precision = df.precision
	a, err := rl.ParseAlgorithm(alg)
	if err != nil {
		return usagef("--algorithm: %v", err)
	}
	cfg.Algorithm = a
	var promptSource string
	if !useBuiltin && tf.Resume == "" && tf.Model != "" && !explicit(fs)["prompt-mode"] {
		// A model folder says how it was trained to be prompted (serl.json); the official raw prompt
		// otherwise.
		pc, source, err := modelPrompt(tf.Model)
		if err != nil {
			return err
		}
		cfg.PromptMode, cfg.SystemPrompt, promptSource = selfplay.PromptMode(pc.Mode), pc.System, source
	}
	fitBatch := tf.Resume == "" && cfg.MaxBatch == 0
	if tf.Resume != "" {
		if err := checkResumeFlags(fs, stderr, "plan"); err != nil {
			return err
		}
	} else if err := checkTrainFlags(tf, cfg); err != nil {
		return err
	}
	if useBuiltin {
		if tf.Model, _, err = modelOrBuiltin("model", modelArg, stderr); err != nil {
			return err
		}
		if tf.Seeds == "" && cfg.Mode == selfplay.ModeSeRL {
			tf.Seeds = builtinSeedsName
		}
		if tf.Eval == "" {
			tf.Eval = builtinEvalName
		}
	}
	if tf.Resume == "" {
		writeSettings(stderr, fs, cfg, tf, useBuiltin, promptSource)
	}

	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	if err := comm.UseDevice(d); err != nil { // NCCL for CUDA tensors under MPI
		return err
	}
	defer func() { // before the device closes
		if err := comm.ReleaseDevice(); err != nil {
			fmt.Fprintf(stderr, "serl: %v\n", err)
		}
	}()
	if comm.Backend() == dist.BackendNCCL {
		fmt.Fprintf(stderr, "serl: gradients all-reduced through NCCL over %d rank(s) (%s=mpi: through host memory)\n", comm.Size(), dist.GPUEnv)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	var r *selfplay.Runner
	var runPath string
	var in selfplay.Inputs
	if tf.Resume != "" {
		runPath = tf.Resume
		// Locked first: a second process on the directory fails here at once, naming the owner.
		stored, err := selfplay.OpenRunIn(runPath, comm)
		if err != nil {
			return err
		}
		defer stored.Close() // a no-op once Resume has handed the lock to the runner
		cfg = stored.Config
		plan := tf.Plan
		if tf, err = restoreInputs(runPath); err != nil {
			return err
		}
		tf.Plan = plan
		if in, err = trainInputs(d, comm, stored.PolicyDir, stored.ReferenceDir, tf, &cfg, false, stderr); err != nil || tf.Plan {
			return err
		}
		if r, err = stored.Resume(in); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "serl: resuming %s at step %d\n", runPath, r.State().Steps)
	} else {
		runPath = tf.Run
		if runPath == "" {
			runPath = filepath.Join("runs", time.Now().Format("2006-01-02_15-04-05"))
		}
		if in, err = trainInputs(d, comm, tf.Model, tf.Model, tf, &cfg, fitBatch || d.Info().Backend == "cuda" && !explicit(fs)["max-batch"], stderr); err != nil || tf.Plan {
			return err
		}
		if in.RunFiles, err = runFiles(tf); err != nil {
			return err
		}
		// Everything is checked before the run directory appears, with all its first files at once.
		if r, err = selfplay.Start(runPath, cfg, in); err != nil {
			return err
		}
	}
	defer r.Free()
	fmt.Fprintf(stderr, "serl: %s / %s, %d iterations × %d problems, %d samples each; run directory %s\n",
		cfg.Mode, cfg.Algorithm, cfg.Iterations, cfg.InstructionsPerIteration, cfg.Samples, runPath)
	if settings, err := json.Marshal(cfg); err == nil {
		fmt.Fprintf(stderr, "settings: %s\n", settings)
	}
	total := cfg.Iterations * cfg.StepsPerIteration()
	if r.State().Steps < total {
		n, err := evalResponses(tf, cfg, r.State().Evaluated)
		if err != nil {
			return err
		}
		est, err := estimateRun(d, in.Policy.Config, cfg, total-r.State().Steps, n, evalMaxNew(tf, cfg))
		if err != nil {
			return err
		}
		est.write(stderr)
	}
	start := time.Now()
	first := r.State().Steps
	// Progress in every phase: the evaluations report through the reporter carried by ctx, self-play
	// prints a line per step, and the heartbeat speaks for a phase that has been silent a while.
	pr := newReporter(stderr, isTerminal(stderr))
	defer pr.Start()()
	ctx = withReporter(ctx, pr)
	// An interrupt stops the run at its next safe point (a decoding step of an evaluation, a micro-batch
	// of training, the end of a rollout), keeping the last completed step's checkpoint: say so at once,
	// since a rollout can take minutes, and hand the signals back so that a second Ctrl-C kills.
	running := make(chan struct{})
	defer close(running)
	go func() {
		select {
		case <-ctx.Done():
			cancel()
			pr.Line("serl: interrupted: stopping at the next safe point; the last completed step stays saved (Ctrl-C again stops at once)")
		case <-running:
		}
	}()
	selfPlay := func(step int) {
		what := "rollouts and training"
		if cfg.Mode == selfplay.ModeSeRL {
			what = "self-instruction, rollouts and training"
		}
		pr.Phase("self-play: %s towards step %d/%d", what, step+1, total)
	}
	if first < total {
		selfPlay(first)
	}
	err = r.Run(ctx, func(m selfplay.StepMetrics) {
		el := time.Since(start)
		eta := time.Duration(float64(el) / float64(m.Step-first) * float64(total-m.Step))
		pr.Line("%s", stepLine(m, total, el, eta))
		if m.Step < total {
			selfPlay(m.Step)
		} else {
			pr.Phase("last step done: final evaluation and saving the model")
		}
	})
	pr.Idle()
	if comm.Rank() == 0 { // rank 0 owns the run directory
		if chartErr := writeRunCharts(runPath); chartErr != nil {
			fmt.Fprintf(stderr, "serl: charts: %v\n", chartErr)
		}
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "serl: interrupted; the last completed step is saved. Continue with: serl train --resume %s\n", runPath)
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case first == total:
		fmt.Fprintf(stderr, "serl: the run had already finished its %d steps\n", total)
	case first > 0:
		fmt.Fprintf(stderr, "serl: finished steps %d–%d (resumed at step %d) in %s\n", first+1, total, first, time.Since(start).Round(time.Second))
	default:
		fmt.Fprintf(stderr, "serl: finished %d steps in %s\n", total, time.Since(start).Round(time.Second))
	}
	if err := writeTimeSummary(stderr, runPath); err != nil {
		fmt.Fprintf(stderr, "serl: time summary: %v\n", err)
	}
	if err := writeEvalSummary(stderr, runPath, cfg.Iterations); err != nil {
		fmt.Fprintf(stderr, "serl: evaluation summary: %v\n", err)
	}
	fmt.Fprintln(stdout, runPath)
	return nil
}

// checkTrainChoices refuses an unknown --mode or --prompt-mode by its flag, before anything depends on it.
func checkTrainChoices(c selfplay.Config) error {
	switch c.Mode {
	case selfplay.ModeSeRL, selfplay.ModeMaj, selfplay.ModeGT:
	default:
		return usagef("unknown --mode %q: want serl, maj or gt", c.Mode)
	}
	switch c.PromptMode {
	case selfplay.PromptRaw, selfplay.PromptChat:
	default:
		return usagef("unknown --prompt-mode %q: want raw or chat", c.PromptMode)
	}
	return nil
}

// trainInputs reads the tokenizer, chat template and data, prints the run's memory plan and refuses it
// when it does not fit the device — before anything is allocated — and then loads the policy and
// reference models (no reference at --kl 0).
//
// With fitBatch (a new run with --max-batch 0, or on a GPU without --max-batch) it sets cfg.MaxBatch to
// the largest decode batch the device's free memory holds (fitMaxBatch) before the plan is checked;
// first, without --micro-batch-tokens, when a whole optimizer step's training arena leaves no room to
// decode 64 sequences, it sets cfg.MicroBatchTokens to the largest arena that does (fitArena).
// With tf.Plan it stops there, loading no model (in.Policy is nil).
func trainInputs(d *kernels.Device, comm *dist.Comm, policyDir, refDir string, tf trainFlags, cfg *selfplay.Config, fitBatch bool, stderr io.Writer) (selfplay.Inputs, error) {
	in := selfplay.Inputs{Comm: comm}
	var err error
	if in.Tokenizer, err = tokenizer.Load(filepath.Join(refDir, "tokenizer.json")); err != nil {
		return in, err
	}
	if ccfg, err := chat.LoadTokenizerConfig(filepath.Join(refDir, "tokenizer_config.json")); err == nil {
		if in.Chat, err = ccfg.Template(); err != nil {
			return in, err
		}
		in.ChatOpts = ccfg.Options(true)
	} else if cfg.Mode == selfplay.ModeSeRL || cfg.PromptMode == selfplay.PromptChat {
		return in, err
	}
	toProblems := func(ps []evaluate.Problem, labels bool) []selfplay.Problem {
		out := make([]selfplay.Problem, len(ps))
		for i, p := range ps {
			out[i] = selfplay.Problem{ID: i, Text: p.Problem, Level: fmt.Sprint(p.Level)}
			if labels {
				out[i].Label = p.Answer
				if out[i].Label == "" {
					out[i].Label = p.Solution
				}
			}
		}
		return out
	}
	switch cfg.Mode {
	case selfplay.ModeSeRL:
		if tf.Seeds == "" {
			return in, usagef("serl mode needs --seeds FILE.jsonl")
		}
		ps, err := readProblems(tf.Seeds)
		if err != nil {
			return in, err
		}
		if len(ps) == 0 {
			return in, fmt.Errorf("%s: no problems", tf.Seeds)
		}
		in.Seeds = toProblems(ps, false)
	default:
		if tf.Data == "" {
			return in, usagef("%s mode needs --data FILE.jsonl", cfg.Mode)
		}
		ps, err := readProblems(tf.Data)
		if err != nil {
			return in, err
		}
		if len(ps) == 0 {
			return in, fmt.Errorf("%s: no problems", tf.Data)
		}
		in.Train = toProblems(ps, true)
	}
	evalLongest, evalNew, evalProblems := 0, 0, 0
	if tf.Eval != "" {
		ps, err := readProblems(tf.Eval)
		if err != nil {
			return in, err
		}
		if len(ps) == 0 {
			return in, fmt.Errorf("%s: no problems", tf.Eval)
		}
		if tf.EvalLimit > 0 && tf.EvalLimit < len(ps) {
			ps = ps[:tf.EvalLimit]
		}
		prompt := evaluate.RawPrompt(in.Tokenizer)
		if cfg.PromptMode == selfplay.PromptChat {
			prompt = evaluate.ChatPrompt(in.Tokenizer, in.Chat, in.ChatOpts, cfg.SystemPrompt)
		}
		// The evaluation engine is sized by its longest prompt (evaluate.EngineConfig), so the plan
		// tokenizes them now.
		for _, p := range ps {
			ids, err := prompt(p.Problem)
			if err != nil {
				return in, err
			}
			evalLongest = max(evalLongest, len(ids))
		}
		evalProblems = len(ps)
		evalNew = evalMaxNew(tf, *cfg) // cut to the context below, before the closure first runs
		tok := in.Tokenizer
		in.Evaluate = func(ctx context.Context, m *model.Model, it int) (any, error) {
			k := tf.EvalK
			if it != 0 && it != cfg.Iterations && !tf.EvalKAll || it == 0 && !tf.EvalKBefore {
				k = 0 // maj@K costs K samples per problem: before training and at the end only
			}
			ev := &evaluate.Evaluator{Comm: comm, Model: m, Prompt: prompt, Decoder: tok, Options: evaluate.Options{K: k,
				MaxNewTokens: evalNew, Seed: cfg.Seed, StopIDs: evaluate.StopIDs(m.Config, tok), MaxBatch: cfg.MaxBatch}}
			name := fmt.Sprintf("evaluation after iteration %d", it)
			if it == 0 {
				name = "evaluation before training"
			}
			if k > 0 {
				name += fmt.Sprintf(" (pass@1 and maj@%d)", k)
			}
			var rep evaluate.Report
			var err error
			if pr := reporterFrom(ctx); pr != nil {
				rep, _, err = runEvaluation(ctx, pr, name, ev, ps)
			} else {
				rep, _, err = ev.Run(ctx, ps, nil)
			}
			return rep, err
		}
	}
	mc, err := model.LoadConfig(filepath.Join(refDir, "config.json"))
	if err != nil {
		return in, err
	}
	// Settled here, before the run directory exists (the evaluation would otherwise fail inside the run).
	// As `serl eval` does, a budget that was not asked for is cut to the context, and says so; one that
	// was asked for is refused.
	if evalLongest > 0 && evalLongest+evalNew > mc.MaxPositions {
		if tf.EvalMaxNew > 0 || evalLongest >= mc.MaxPositions {
			return in, usagef("%s: the longest evaluation prompt (%d tokens) + %d new tokens exceeds the model's context of %d: set --eval-max-new-tokens ≤ %d",
				tf.Eval, evalLongest, evalNew, mc.MaxPositions, mc.MaxPositions-evalLongest)
		}
		evalNew = mc.MaxPositions - evalLongest
		fmt.Fprintf(stderr, "serl: evaluation responses get at most %d new tokens: the longest evaluation prompt (%d tokens) and the model's context of %d leave no more (--eval-max-new-tokens to choose)\n",
			evalNew, evalLongest, mc.MaxPositions)
	}
	hintBatch := cfg.MaxBatch // the decode batch a smaller training arena is proposed at, should the plan not fit
	if fitBatch {
		// The most sequences any phase decodes at once: a step's rollouts, a self-instruction round, an
		// evaluation with its maj@K samples.
		most := min(max(cfg.RolloutBatch*cfg.Samples, cfg.GenPrompts, evalProblems*max(1, tf.EvalK)), maxFitBatch)
		hintBatch = min(most, selfplay.DefaultConfig().MaxBatch)
		arena := cfg.ArenaTokens()
		if err := fitToMemory(comm, mc, cfg, most, hintBatch, evalLongest, evalNew, d.Info().FreeMemory/10*9); err != nil {
			return in, err
		}
		if cfg.ArenaTokens() < arena {
			fmt.Fprintf(stderr, "serl: --micro-batch-tokens %d: a whole optimizer step's training arena (%d tokens) leaves no room to decode %d sequences in 90%% of the %s's %.1f GiB free, so each step's gradients accumulate over micro-batches of at most %d tokens\n",
				cfg.MicroBatchTokens, arena, hintBatch, d.Info().Backend, float64(d.Info().FreeMemory)/(1<<30), cfg.MicroBatchTokens)
		}
		sayFitBatch(stderr, "--max-batch", cfg.MaxBatch, d.Info().Backend, d.Info().FreeMemory, most)
	}
	plan, err := trainPlan(mc, *cfg, evalLongest, evalNew)
	if err != nil {
		return in, err
	}
	fmt.Fprintln(stderr, "memory plan:")
	plan.Write(stderr)
	if err := plan.Check(d.Info().FreeMemory); err != nil {
		hint, herr := microBatchHint(mc, *cfg, hintBatch, evalLongest, evalNew, d.Info().FreeMemory/10*9)
		if herr != nil {
			return in, herr
		}
		if hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		return in, err
	}
	if tf.Plan {
		return in, nil
	}
	p, _ := model.ParsePrecision(cfg.Precision)
	// Every model the run saves (its reference, iterations, checkpoints) records the prompt format it is
	// trained in, so that each loads prompted as it was trained, wherever it is copied.
	files := map[string][]byte{evaluate.PromptFile: evaluate.PromptConfig{Mode: string(cfg.PromptMode), System: cfg.SystemPrompt}.Marshal()}
	if lc := cfg.LoRA(); lc != nil {
		// One frozen base (refDir: the model, or a resumed run's reference folder) serves policy,
		// reference and generation; the policy's adapters are new, or the checkpoint's.
		if in.Policy, err = model.LoadWith(d, refDir, model.Options{Precision: p, Frozen: true}); err != nil {
			return in, err
		}
		in.Policy.Files = files
		if model.IsAdapterDir(policyDir) {
			_, err = in.Policy.LoadLoRA(policyDir)
		} else {
			_, err = in.Policy.AttachLoRA(*lc, cfg.Seed)
		}
		if err != nil {
			in.Policy.Free()
			return in, err
		}
		in.Reference = in.Policy.Base()
		return in, nil
	}
	if in.Policy, err = model.LoadWith(d, policyDir, model.Options{Precision: p}); err != nil {
		return in, err
	}
	in.Policy.Files = files
	if cfg.KLCoef == 0 {
		return in, nil // no KL term: no reference is held (selfplay.Inputs), nor planned
	}
	if in.Reference, err = model.LoadWith(d, refDir, model.Options{Precision: p, Frozen: true}); err != nil {
		in.Policy.Free()
		return in, err
	}
	in.Reference.Files = files
	return in, nil
}

// maxFitBatch bounds the decode batch fitMaxBatch chooses: past it a step's weights are read for so many
// sequences that decoding is compute-bound, and a bigger batch only holds more memory.
const maxFitBatch = 1024

// fitToMemory sizes a new run to budget bytes: without cfg.MicroBatchTokens, when a whole optimizer
// step's training arena leaves no room to decode hintBatch sequences, the largest arena that does
// (fitArena); then the largest decode batch up to most (fitMaxBatch). Every rank of a data-parallel
// run takes the same, the smallest of the ranks' (the same float results as one process).
func fitToMemory(comm *dist.Comm, mc model.Config, cfg *selfplay.Config, most, hintBatch, evalLongest, evalNew int, budget int64) error {
	if cfg.MicroBatchTokens == 0 {
		t, ok, err := fitArena(mc, *cfg, hintBatch, evalLongest, evalNew, budget)
		if err != nil {
			return err
		}
		if !ok {
			t = cfg.ArenaTokens() // nothing fits: the plan's check says by how much
		}
		all, err := dist.Gather(comm, "training arena sizes", []int{t})
		if err != nil {
			return err
		}
		if t = slices.Min(all); t < cfg.ArenaTokens() {
			cfg.MicroBatchTokens = t
		}
	}
	b, err := fitMaxBatch(func(b int) (model.Plan, error) {
		c := *cfg
		c.MaxBatch = b
		return trainPlan(mc, c, evalLongest, evalNew)
	}, most, budget)
	if err != nil {
		return err
	}
	all, err := dist.Gather(comm, "decode batch sizes", []int{b})
	if err != nil {
		return err
	}
	cfg.MaxBatch = slices.Min(all)
	return nil
}

// fitMaxBatch is the largest decode batch in [1, most] whose memory plan (plan, growing with the batch)
// fits in budget bytes; 1 when none does (the plan's check then says by how much).
func fitMaxBatch(plan func(batch int) (model.Plan, error), most int, budget int64) (int, error) {
	b, _, err := largestFit(1, max(most, 1), plan, budget)
	return b, err
}

// largestFit is the largest x in [lo, hi] whose plan (growing with x) fits in budget bytes, by
// bisection; ok is false, and x lo, when not even lo's does.
func largestFit(lo, hi int, plan func(x int) (model.Plan, error), budget int64) (x int, ok bool, err error) {
	fits := func(x int) (bool, error) {
		p, err := plan(x)
		return err == nil && p.Total() <= budget, err
	}
	if ok, err := fits(lo); err != nil || !ok {
		return lo, false, err
	}
	for lo < hi { // lo fits; the answer is in [lo, hi]
		mid := lo + (hi-lo+1)/2
		ok, err := fits(mid)
		if err != nil {
			return 0, false, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, true, nil
}

// fitArena is the largest training arena, in tokens from one longest sample to cfg's own
// (selfplay.Config.ArenaTokens), whose run plan at decode batch batch fits in budget bytes; ok is false
// when not even one longest sample's does.
func fitArena(mc model.Config, cfg selfplay.Config, batch, evalLongest, evalNew int, budget int64) (tokens int, ok bool, err error) {
	arena := cfg.ArenaTokens()
	return largestFit(min(cfg.MaxPromptTokens+cfg.MaxNewTokens, arena), arena, func(t int) (model.Plan, error) {
		c := cfg
		c.MaxBatch, c.MicroBatchTokens = batch, t
		return trainPlan(mc, c, evalLongest, evalNew)
	}, budget)
}

// microBatchHint says, for a plan that does not fit, which --micro-batch-tokens would make it fit at
// decode batch batch (the training arena is often most of a full fine-tuning's memory); "" when a
// smaller arena would not be enough.
func microBatchHint(mc model.Config, cfg selfplay.Config, batch, evalLongest, evalNew int, budget int64) (string, error) {
	t, ok, err := fitArena(mc, cfg, batch, evalLongest, evalNew, budget)
	if err != nil || !ok || t == cfg.ArenaTokens() {
		return "", err
	}
	return fmt.Sprintf("--micro-batch-tokens %d (training arena %d tokens now) fits it at --max-batch %d, accumulating each optimizer step's gradients over micro-batches", t, cfg.ArenaTokens(), batch), nil
}

// evalMaxNew is the token budget of an evaluation response.
func evalMaxNew(tf trainFlags, cfg selfplay.Config) int {
	if tf.EvalMaxNew > 0 {
		return tf.EvalMaxNew
	}
	return cfg.MaxNewTokens
}

// trainPlan is the device memory of a run of cfg on a model of configuration mc: the loop's own
// (selfplay.MemoryPlan) and, when evalLongest > 0, the evaluation engine for prompts of up to
// evalLongest tokens and evalMaxNew new tokens, which is allocated beside it.
func trainPlan(mc model.Config, cfg selfplay.Config, evalLongest, evalMaxNew int) (model.Plan, error) {
	plan, err := selfplay.MemoryPlan(cfg, mc)
	if err != nil {
		return plan, err
	}
	if evalLongest > 0 {
		ecfg, err := evaluate.EngineConfig(mc, evalLongest, evalMaxNew, cfg.MaxBatch)
		if err != nil {
			return plan, err
		}
		p, _ := model.ParsePrecision(cfg.Precision)
		plan.Add(enginePlan("evaluation", mc, ecfg, p, cfg.LoRA())...)
	}
	return plan, nil
}

// writeTimeSummary prints where the run's time went (generation, rewarding, training) and its memory
// at the first and the last step, so growth over the run shows.
func writeTimeSummary(w io.Writer, run string) error {
	ms, err := selfplay.ReadMetrics(run)
	if err != nil || len(ms) == 0 {
		return err
	}
	var gen, rew, tr float64
	for _, m := range ms {
		gen, rew, tr = gen+m.GenSec, rew+m.RewardSec, tr+m.TrainSec
	}
	total := gen + rew + tr
	first, last := ms[0], ms[len(ms)-1]
	// metrics.jsonl holds each step once, also after resumes: the split covers the whole run.
	fmt.Fprintf(w, "time over steps 1–%d: generation %.0fs (%.0f%%), rewarding %.1fs (%.1f%%), training %.0fs (%.0f%%)\n",
		len(ms), gen, 100*gen/total, rew, 100*rew/total, tr, 100*tr/total)
	fmt.Fprintf(w, "memory, step %d → %d: native %.0f → %.0f MiB (peak %.0f → %.0f MiB), Go heap %.0f → %.0f MiB\n",
		first.Step, last.Step, mib(first.DeviceBytes), mib(last.DeviceBytes), mib(first.DevicePeakBytes),
		mib(last.DevicePeakBytes), mib(int64(first.GoHeapBytes)), mib(int64(last.GoHeapBytes)))
	return nil
}

// readIterEval reads the evaluation report a run wrote at iteration boundary k (serl train's Evaluate).
func readIterEval(run string, k int) (evaluate.Report, error) {
	var rep evaluate.Report
	path := filepath.Join(run, fmt.Sprintf("eval_iter%d.json", k))
	b, err := os.ReadFile(path)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// writeEvalSummary prints the held-out evaluation before training and after the last iteration side by
// side, per level; a run without --eval has none.
func writeEvalSummary(w io.Writer, run string, iterations int) error {
	before, err := readIterEval(run, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	after, err := readIterEval(run, iterations)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "held-out evaluation, before → after %d iterations:\n", iterations)
	row := func(name string, b, a evaluate.Score) {
		line := fmt.Sprintf("  %-8s %5d   pass@1 %5.1f%% → %5.1f%%", name, b.N, 100*b.Pass1, 100*a.Pass1)
		if before.K > 0 {
			line += fmt.Sprintf("   maj@%d %5.1f%% → %5.1f%%", before.K, 100*b.Maj, 100*a.Maj)
		}
		fmt.Fprintln(w, line)
	}
	for i, l := range before.Levels {
		if i < len(after.Levels) && after.Levels[i].Level == l.Level {
			row(fmt.Sprintf("level %d", l.Level), l.Score, after.Levels[i].Score)
		}
	}
	row("overall", before.Overall, after.Overall)
	return nil
}

// writeRunCharts draws reward.png, kl.png, loss.png and accuracy.png from a run's metrics and evals.
func writeRunCharts(dir string) error {
	ms, err := selfplay.ReadMetrics(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // interrupted before its first step: nothing to draw
	}
	if err != nil {
		return err
	}
	var step, rew, share, kl, loss, clip []float64
	for _, m := range ms {
		step = append(step, float64(m.Step))
		rew, share, kl = append(rew, m.RewardMean), append(share, m.ShareMean), append(kl, m.KL)
		loss, clip = append(loss, m.Loss), append(clip, m.ClipFrac)
	}
	charts := map[string]chart.Chart{
		"reward.png": {Title: "reward", XLabel: "training step", Series: []chart.Series{{Name: "trained reward", X: step, Y: rew}, {Name: "majority share", X: step, Y: share}}},
		"kl.png":     {Title: "KL to the reference (k1 per token)", XLabel: "training step", Series: []chart.Series{{Name: "KL", X: step, Y: kl}}},
		"loss.png":   {Title: "policy loss", XLabel: "training step", Series: []chart.Series{{Name: "loss", X: step, Y: loss}, {Name: "clip fraction", X: step, Y: clip}}},
	}
	if acc, ok, err := accuracyChart(dir); err != nil {
		return err
	} else if ok {
		charts["accuracy.png"] = acc
	}
	for name, c := range charts {
		if err := c.WritePNG(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// accuracyChart plots pass@1 at every evaluated iteration and maj@K only where it was measured (K > 0),
// so iterations evaluated greedily do not show as a maj@K of zero.
func accuracyChart(dir string) (chart.Chart, bool, error) {
	var it, p1, majIt, maj []float64
	k := 0
	for i := 0; ; i++ {
		rep, err := readIterEval(dir, i)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return chart.Chart{}, false, err
		}
		it, p1 = append(it, float64(i)), append(p1, rep.Overall.Pass1)
		if rep.K > 0 {
			majIt, maj, k = append(majIt, float64(i)), append(maj, rep.Overall.Maj), rep.K
		}
	}
	if len(it) == 0 {
		return chart.Chart{}, false, nil
	}
	c := chart.Chart{Title: "held-out accuracy", XLabel: "iteration", Series: []chart.Series{{Name: "pass@1", X: it, Y: p1}}}
	if len(maj) > 0 {
		c.Series = append(c.Series, chart.Series{Name: fmt.Sprintf("maj@%d", k), X: majIt, Y: maj})
	}
	return c, true, nil
}
