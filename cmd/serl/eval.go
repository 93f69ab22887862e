package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/serl-go/serl/engine/chat"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/generate"
	"github.com/serl-go/serl/engine/selfinstruct"
	"github.com/serl-go/serl/engine/task/arith"
	"github.com/serl-go/serl/engine/tokenizer"
)

func init() {
	addCommand(command{name: "eval", summary: "pass@1 and maj@K of a model on a JSONL problem set, per level", run: runEval})
}

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", stderr)
	var df deviceFlags
	df.register(fs)
	dir := fs.String("model", "", "Hugging Face model folder with its tokenizer (default: the built-in model)")
	adapter := fs.String("adapter", "", "PEFT LoRA adapter folder over --model (e.g. a LoRA run's iter<k>/)")
	data := fs.String("data", "", "JSONL problems (problem|question, answer or solution with \\boxed{}, level) (default: the built-in held-out set, or its seed set with --self-instruct)")
	k := fs.Int("n", 16, "samples per problem for maj@K (temperature 1.0, top-p 0.95); 0: greedy pass@1 only")
	mode := fs.String("prompt-mode", "", "raw: problem text + newline (official); chat: chat template with a \\boxed{} system prompt (default: the model's own, from its serl.json; chat for the built-in model; else raw)")
	system := fs.String("system", "", "system prompt of --prompt-mode chat (default: the model's own, else \""+evaluate.SystemPrompt+"\")")
	maxNew := fs.Int("max-new-tokens", 1024, "response budget (by default shortened to fit the model's context)")
	limit := fs.Int("limit", 0, "evaluate only the first N problems (0: all)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	batch := fs.Int("batch", 64, "sequences decoded together (0: the most the device's free memory holds, at most problems × (1 + n), the default on a GPU; --self-instruct: 64)")
	outPath := fs.String("out", "", "write the report as JSON here")
	respPath := fs.String("responses", "", "write every problem's responses and verdicts as JSONL here")
	instruct := fs.Int("self-instruct", 0, "instead: run N self-instruction prompts with --data as the seed problems and report how many generated problems pass the filters")
	checker := fs.String("checker", "", "with --self-instruct: the task checker that says whether a problem is solvable (arith; the built-in model's default)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *k < 0:
		return usagef("--n %d: want ≥ 0 (0: greedy pass@1 only)", *k)
	case *maxNew < 1:
		return usagef("--max-new-tokens %d: want at least 1", *maxNew)
	case *limit < 0:
		return usagef("--limit %d: want ≥ 0 (0: all)", *limit)
	case *batch < 0:
		return usagef("--batch %d: want ≥ 0 (0: as many as the device's free memory holds)", *batch)
	case *instruct < 0:
		return usagef("--self-instruct %d: want ≥ 0 (0: evaluate problems instead)", *instruct)
	}
	set := explicit(fs)
	var isBuiltin bool
	var err error
	if *dir, isBuiltin, err = modelOrBuiltin("model", *dir, stderr); err != nil {
		return err
	}
	pc, source, err := modelPrompt(*dir)
	if err != nil {
		return err
	}
	if set["prompt-mode"] {
		source = "--prompt-mode"
	} else {
		*mode = pc.Mode
	}
	if !set["system"] {
		*system = pc.System
	}
	if isBuiltin && !set["checker"] {
		*checker = "arith"
	}
	var problems []evaluate.Problem
	switch {
	case *data == "" && *instruct > 0:
		*data = builtinSeedsName
	case *data == "":
		*data = builtinEvalName
	}
	if problems, err = readProblems(*data); err != nil {
		return err
	}
	if *limit > 0 && *limit < len(problems) {
		problems = problems[:*limit]
	}
	tok, err := loadTokenizer(*dir)
	if err != nil {
		return err
	}
	if *instruct > 0 {
		if *respPath != "" {
			return usagef("--responses is for problem evaluation; --self-instruct reports with --out")
		}
		instrMax := *maxNew
		if !set["max-new-tokens"] {
			instrMax = 0 // a third of the context: room for the few-shot prompt
		}
		return runInstructProbe(df, *dir, *adapter, tok, problems, *instruct, *checker, *seed, *batch, instrMax, *outPath, stdout, stderr)
	}
	var prompt evaluate.PromptFunc
	switch *mode {
	case evaluate.ModeRaw:
		prompt = evaluate.RawPrompt(tok)
	case evaluate.ModeChat:
		cfg, err := chat.LoadTokenizerConfig(filepath.Join(*dir, "tokenizer_config.json"))
		if err != nil {
			return err
		}
		tmpl, err := cfg.Template()
		if err != nil {
			return err
		}
		prompt = evaluate.ChatPrompt(tok, tmpl, cfg.Options(true), *system)
	default:
		return usagef("--prompt-mode %q: want raw or chat", *mode)
	}
	fmt.Fprintf(stderr, "serl: prompt mode %s (from %s)\n", *mode, source)
	ctx, cancel := interruptContext()
	defer cancel()
	d, m, done, err := openInference(df, *dir, *adapter, stderr)
	if err != nil {
		return err
	}
	defer done()
	ev := &evaluate.Evaluator{Model: m, Prompt: prompt, Decoder: tok, Options: evaluate.Options{
		K: *k, MaxNewTokens: *maxNew, Seed: *seed, MaxBatch: *batch, FitContext: !set["max-new-tokens"],
		StopIDs: evaluate.StopIDs(m.Config, tok), StopStrings: evaluate.OfficialStopStrings}}
	if *batch == 0 || d.Info().Backend == "cuda" && !set["batch"] {
		longest, maxNew, err := ev.Shape(problems)
		if err != nil {
			return err
		}
		if ev.Options.MaxBatch, err = fitEngineBatch(d, m, "--batch", len(problems)*(1+*k), func(b int) (generate.Config, error) {
			return evaluate.EngineConfig(m.Config, longest, maxNew, b)
		}, stderr); err != nil {
			return err
		}
	}
	start := time.Now()
	pr := newReporter(stderr, isTerminal(stderr))
	defer pr.Start()()
	rep, results, err := runEvaluation(ctx, pr, "evaluating", ev, problems)
	if err != nil {
		return interrupted(err)
	}
	st := ev.Stats
	fmt.Fprintf(stderr, "serl eval: %d problems, %d responses, %d tokens in %s (%.0f tokens/s)\n", len(problems),
		len(problems)*(1+*k), st.GeneratedTokens, time.Since(start).Round(time.Millisecond), st.TokensPerSecond())
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if *outPath != "" {
		b, err := json.MarshalIndent(map[string]any{"model": *dir, "data": *data, "prompt_mode": *mode,
			"max_new_tokens": *maxNew, "seed": *seed, "report": rep}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*outPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *respPath != "" {
		f, err := os.Create(*respPath)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		enc := json.NewEncoder(w)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				f.Close()
				return err
			}
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return nil
}

// runEvaluation runs an evaluation as a phase of r: a status after every chunk of problems, and the
// tokens generated so far in the heartbeat while a chunk runs.
func runEvaluation(ctx context.Context, r *reporter, name string, ev *evaluate.Evaluator, problems []evaluate.Problem) (evaluate.Report, []evaluate.Result, error) {
	start := time.Now()
	var done atomic.Int64
	defer r.Phase("%s: %d problems", name, len(problems))()
	r.Live(func() string {
		return fmt.Sprintf("%s: %d/%d problems done, %d tokens generated", name, done.Load(), len(problems), ev.Tokens())
	})
	rep, results, err := ev.Run(ctx, problems, func(d, total int) {
		done.Store(int64(d))
		r.Status("%s: %d/%d problems, %d tokens (%s)", name, d, total, ev.Tokens(), time.Since(start).Round(time.Second))
	})
	return rep, results, err
}

// runInstructProbe is serl eval --self-instruct: SeRL's self-instruction step over the data's problems
// as seeds, always through the chat template (docs/SERL.md D1).
func runInstructProbe(df deviceFlags, dir, adapter string, tok *tokenizer.Tokenizer, problems []evaluate.Problem, n int,
	checker string, seed uint64, batch, maxNew int, outPath string, stdout, stderr io.Writer) error {
	var solve func(string) bool
	switch checker {
	case "":
	case "arith":
		solve = func(p string) bool { _, ok := arith.Solve(p); return ok }
	default:
		return usagef("--checker %q: want arith", checker)
	}
	cfg, err := chat.LoadTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return err
	}
	tmpl, err := cfg.Template()
	if err != nil {
		return err
	}
	opts := cfg.Options(true)
	render := func(p selfinstruct.Prompt) ([]int32, error) {
		s, err := tmpl.Render([]chat.Message{{Role: "system", Content: p.System}, {Role: "user", Content: p.User}}, opts)
		if err != nil {
			return nil, err
		}
		return tok.Encode(s, tokenizer.EncodeOptions{ParseSpecial: true}), nil
	}
	seeds := make([]string, len(problems))
	for i, p := range problems {
		seeds[i] = p.Problem
	}
	_, m, done, err := openInference(df, dir, adapter, stderr)
	if err != nil {
		return err
	}
	defer done()
	if maxNew == 0 {
		maxNew = m.Config.MaxPositions / 3
	}
	ctx, cancel := interruptContext()
	defer cancel()
	pr := newReporter(stderr, isTerminal(stderr))
	defer pr.Start()()
	end := pr.Phase("self-instruction: %d prompts of up to %d new tokens", n, maxNew)
	rep, err := evaluate.ProbeSelfInstruct(ctx, m, tok, render, seeds, evaluate.InstructOptions{Prompts: n,
		MaxNewTokens: maxNew, Seed: seed, MaxBatch: batch, StopIDs: evaluate.StopIDs(m.Config, tok), Solve: solve})
	end()
	if err != nil {
		return interrupted(err)
	}
	fmt.Fprintf(stdout, "self-instruction: %d prompts, %d candidates, %d accepted (%.1f%%)", rep.Prompts, rep.Candidates,
		rep.Accepted, 100*rep.AcceptRate)
	if solve != nil {
		fmt.Fprintf(stdout, ", %d solvable (%.1f%% of accepted)", rep.Solvable, 100*rep.SolvableRate)
	}
	fmt.Fprintf(stdout, "\nfilter verdicts: %v\n", rep.Reasons)
	for _, e := range rep.Examples {
		fmt.Fprintf(stdout, "  %s\n", e)
	}
	if outPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(outPath, append(b, '\n'), 0o644)
	}
	return nil
}
