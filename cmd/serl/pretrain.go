package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/pretrain"
	"github.com/serl-go/serl/engine/task/arith"
)

func init() {
	addCommand(command{name: "pretrain", summary: "train the built-in model from scratch (or --init, optionally LoRA) on the built-in task", run: runPretrain})
}

// arithSource draws training problems from the built-in world (level 0: all levels in turn), skipping
// any problem whose text or structure (arith.Signature) is in the evaluation set.
func arithSource() pretrain.Source {
	evalText, evalSig := map[string]bool{}, map[string]bool{}
	for _, p := range arith.EvalSet() {
		evalText[p.Problem] = true
		evalSig[arith.Signature(p)] = true
	}
	return func(seed uint64, level int) evaluate.Problem {
		if level < 1 || level > arith.Levels {
			level = 1 + int(seed%arith.Levels)
		}
		for k := uint64(0); ; k++ {
			p := arith.Generate(seed+k*0x9E3779B97F4A7C15, level)
			if !evalText[p.Problem] && !evalSig[arith.Signature(p)] {
				return toEval(p)
			}
		}
	}
}

func toEval(p arith.Problem) evaluate.Problem {
	return evaluate.Problem{Problem: p.Problem, Answer: p.Answer, Solution: p.Solution, Level: p.LevelNum()}
}

// arithHeldOut is the evaluation set with levels interleaved, so that any prefix is balanced.
func arithHeldOut() []evaluate.Problem {
	byLevel := map[int][]evaluate.Problem{}
	for _, p := range arith.EvalSet() {
		byLevel[p.LevelNum()] = append(byLevel[p.LevelNum()], toEval(p))
	}
	var out []evaluate.Problem
	for i := 0; ; i++ {
		added := false
		for l := 1; l <= arith.Levels; l++ {
			if i < len(byLevel[l]) {
				out = append(out, byLevel[l][i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

func runPretrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pretrain", stderr)
	var df deviceFlags
	df.register(fs)
	c := pretrain.DefaultConfig()
	out := fs.String("out", "", "run folder (config, tokenizer, checkpoint, metrics, chart, final model)")
	resume := fs.Bool("resume", false, "continue the run in --out from its checkpoint (its saved settings apply)")
	fs.IntVar(&c.Steps, "steps", c.Steps, "optimizer steps")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the corpus, the initialisation and everything else")
	fs.IntVar(&c.Hidden, "hidden", c.Hidden, "hidden size")
	fs.IntVar(&c.Layers, "layers", c.Layers, "transformer layers")
	fs.IntVar(&c.Heads, "heads", c.Heads, "attention heads")
	fs.IntVar(&c.KVHeads, "kv-heads", c.KVHeads, "key/value heads")
	fs.IntVar(&c.Intermediate, "intermediate", c.Intermediate, "MLP intermediate size")
	fs.IntVar(&c.VocabSize, "vocab", c.VocabSize, "BPE vocabulary size (with the 3 special tokens)")
	fs.IntVar(&c.TokenizerDocs, "tokenizer-docs", c.TokenizerDocs, "documents the tokenizer is trained on")
	fs.Float64Var(&c.SelfInstructShare, "self-instruct-share", c.SelfInstructShare, "fraction of self-instruction documents")
	fs.IntVar(&c.InstructMinNew, "instruct-min-new", c.InstructMinNew, "new problems per self-instruction answer, at least")
	fs.IntVar(&c.InstructMaxNew, "instruct-max-new", c.InstructMaxNew, "new problems per self-instruction answer, at most")
	fs.Float64Var(&c.LR, "lr", c.LR, "peak learning rate (warm-up, then cosine to min-lr-ratio)")
	fs.Float64Var(&c.WarmupRatio, "warmup-ratio", c.WarmupRatio, "share of steps warming up")
	fs.Float64Var(&c.MinLRRatio, "min-lr-ratio", c.MinLRRatio, "final learning rate over the peak")
	fs.Float64Var(&c.WeightDecay, "weight-decay", c.WeightDecay, "AdamW decoupled weight decay")
	fs.IntVar(&c.BatchTokens, "batch-tokens", c.BatchTokens, "tokens per optimizer step")
	fs.IntVar(&c.MicroTokens, "micro-tokens", c.MicroTokens, "tokens per forward/backward pass")
	fs.IntVar(&c.MicroSeqs, "micro-seqs", c.MicroSeqs, "documents per forward/backward pass, at most")
	fs.IntVar(&c.EvalEvery, "eval-every", c.EvalEvery, "steps between held-out pass@1 evaluations (0: at the end only)")
	fs.IntVar(&c.EvalProblems, "eval-problems", c.EvalProblems, "held-out problems per evaluation (levels balanced)")
	fs.IntVar(&c.EvalMaxNewTokens, "eval-max-new-tokens", c.EvalMaxNewTokens, "response budget in evaluation")
	fs.IntVar(&c.SaveEvery, "save-every", c.SaveEvery, "steps between checkpoints (0: at the end only)")
	levels := fs.String("level-weights", "", "comma-separated weights of levels 1..5 in the training problems (default "+
		joinFloats(c.LevelWeights)+"; 1,1,1,1,1: uniform)")
	fs.Float64Var(&c.DirectShare, "direct-share", c.DirectShare, "fraction of solving documents that give the answer without working")
	endings := fs.String("direct-endings", strings.Join(c.DirectEndings, ","), "comma-separated question endings (a problem's last word) "+
		"that may be answered without working; other problems are always worked out (\"\": any problem may be)")
	fs.Float64Var(&c.ListShare, "list-share", c.ListShare, `fraction of solving documents that number their steps "1) …" instead of "Step 1: …"`)
	fs.BoolVar(&c.ProblemLoss, "problem-loss", c.ProblemLoss, "train on the problem text of solving documents too")
	fs.StringVar(&c.Init, "init", "", "start from this Hugging Face model folder (its weights, shape and tokenizer), or "+builtin.Name+", instead of a random init")
	var lf loraFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *levels != "" {
		c.LevelWeights = nil
		for _, f := range strings.Split(*levels, ",") {
			w, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return usagef("--level-weights: %q is not a number", f)
			}
			c.LevelWeights = append(c.LevelWeights, w)
		}
	}
	c.DirectEndings = nil
	for _, w := range strings.Split(*endings, ",") {
		if w = strings.TrimSpace(w); w != "" {
			c.DirectEndings = append(c.DirectEndings, w)
		}
	}
	if *out == "" {
		return usagef("give --out DIR")
	}
	lc, err := lf.config()
	if err != nil {
		return err
	}
	if lc != nil {
		if c.Init == "" {
			return usagef("--lora-rank needs --init DIR: LoRA adapts an existing model (e.g. the built-in one, or a pretrain output's model/)")
		}
		c.LoRARank, c.LoRAAlpha, c.LoRATargets = lc.Rank, lc.Alpha, lc.Targets
	}
	if c.Init == builtin.Name {
		if c.Init, _, err = modelOrBuiltin("init", c.Init, stderr); err != nil {
			return err
		}
	}
	if c.Init != "" {
		for _, name := range []string{"hidden", "layers", "heads", "kv-heads", "intermediate", "vocab", "tokenizer-docs"} {
			if explicit(fs)[name] {
				return usagef("--%s with --init: the model's shape and tokenizer are --init's", name)
			}
		}
	}
	if _, err := df.prec(); err != nil {
		return err
	}
	if df.precision != "f32" {
		c.Precision = df.precision // f32 stays unwritten, so the run's config matches runs from before the setting
	}
	if *resume {
		if err := checkResumeFlags(fs, stderr, "out"); err != nil {
			return err
		}
	}
	if !*resume {
		if err := c.Validate(); err != nil {
			return usagef("%v", err)
		}
	}
	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	prog := newProgress(stderr)
	r := &pretrain.Run{Dir: *out, Config: c, Source: arithSource(), HeldOut: arithHeldOut(),
		Exclude: arithHeldOut(), Report: prog.report}
	err = r.Train(ctx, d, *resume)
	prog.done()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "serl pretrain: interrupted; checkpoint saved in %s (continue with --resume)\n", *out)
		return nil
	}
	return err
}

func joinFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

// deviceFlagNames are the flags that may change on --resume: where it runs, not what it computes.
var deviceFlagNames = map[string]bool{"device": true, "threads": true, "profile": true, "profile-dir": true, "op-profile": true}

// progress shows a bar on a terminal and plain log lines otherwise.
type progress struct {
	w       io.Writer
	tty     bool
	lastLog time.Time
	barLen  int
	eval    string
}

func newProgress(w io.Writer) *progress { return &progress{w: w, tty: isTerminal(w)} }

func (p *progress) report(e pretrain.Event) {
	if e.Message != "" {
		p.clear()
		fmt.Fprintf(p.w, "serl pretrain: %s\n", e.Message)
		return
	}
	if e.Eval != nil {
		var lv []string
		for _, l := range e.Eval.Levels {
			lv = append(lv, fmt.Sprintf("L%d %.0f%%", l.Level, 100*l.Pass1))
		}
		p.eval = fmt.Sprintf("pass@1 %.1f%% (%s)", 100*e.Eval.Overall.Pass1, strings.Join(lv, ", "))
		p.clear()
		fmt.Fprintf(p.w, "serl pretrain: step %d held-out %s\n", e.Step, p.eval)
	}
	line := fmt.Sprintf("step %d/%d loss %.4f lr %.2e grad %.2f %.0f tok/s", e.Step, e.Steps, e.Loss, e.LR, e.Grad, e.TokensPerSec)
	if !p.tty {
		// A log line per step, but at most one every 10 s unless something happened.
		if e.Saved || e.Eval != nil || e.Step == e.Steps || time.Since(p.lastLog) >= 10*time.Second {
			fmt.Fprintf(p.w, "serl pretrain: %s elapsed %s\n", line, e.Elapsed.Round(time.Second))
			p.lastLog = time.Now()
		}
		return
	}
	const width = 30
	done := width * e.Step / max(e.Steps, 1)
	eta := time.Duration(float64(e.Elapsed) / float64(max(e.Step, 1)) * float64(e.Steps-e.Step))
	s := fmt.Sprintf("\r[%s%s] %s eta %s", strings.Repeat("#", done), strings.Repeat(".", width-done), line, eta.Round(time.Second))
	fmt.Fprint(p.w, s, strings.Repeat(" ", max(0, p.barLen-len(s))))
	p.barLen = len(s)
}

func (p *progress) clear() {
	if p.tty && p.barLen > 0 {
		fmt.Fprint(p.w, "\r", strings.Repeat(" ", p.barLen), "\r")
		p.barLen = 0
	}
}

func (p *progress) done() {
	if p.tty && p.barLen > 0 {
		fmt.Fprintln(p.w)
		p.barLen = 0
	}
}
