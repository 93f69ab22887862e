package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/kernels"
)

// serl train has two sets of defaults: sized for the built-in model (with neither --model nor
// --resume) and SeRL's official ones (with --model). This file makes both visible: in -h, and as the
// effective settings with the source of each printed before a run starts, with an estimate of its time.

// trainDefaults is a flag set holding one set of serl train's defaults.
func trainDefaults(forBuiltin bool) *flag.FlagSet {
	fs := flag.NewFlagSet("defaults", flag.ContinueOnError)
	cfg := selfplay.DefaultConfig()
	var tf trainFlags
	if forBuiltin {
		cfg, tf.EvalK = builtin.SelfPlayConfig(), builtin.EvalK
	}
	var alg, mode, promptMode string
	var df deviceFlags // serl train's own set has them too (--precision is a setting)
	df.register(fs)
	registerTrainFlags(fs, &tf, &cfg, &alg, &mode, &promptMode)
	var lf loraFlags // and the LoRA flags
	lf.register(fs)
	return fs
}

// trainUsage is serl train's -h: the flags with the defaults that apply to this command line, then the
// other set's values wherever they differ.
func trainUsage(fs *flag.FlagSet, useBuiltin bool) func() {
	return func() {
		w := fs.Output()
		this, other := "the built-in model's (no --model)", "with --model DIR, SeRL's official defaults apply instead"
		if !useBuiltin {
			this, other = "SeRL's official ones (--model)", "without --model (the built-in model), these defaults apply instead"
		}
		fmt.Fprintf(w, "usage: serl train [flags]\n\nThe defaults shown are %s.\n", this)
		fs.PrintDefaults()
		alt := trainDefaults(!useBuiltin)
		var diff []string
		fs.VisitAll(func(f *flag.Flag) {
			if o := alt.Lookup(f.Name); o != nil && o.DefValue != f.DefValue {
				diff = append(diff, fmt.Sprintf("--%s %s", f.Name, o.DefValue))
			}
		})
		if len(diff) > 0 {
			fmt.Fprintf(w, "\nOther defaults: %s:\n  %s\n", other, strings.Join(diff, ", "))
		}
		fmt.Fprintf(w, "\nWithout --prompt-mode, a model folder's serl.json (written with every model serl saves) sets it.\n")
	}
}

// nonSettings are serl train's flags that do not change what the run computes.
var nonSettings = map[string]bool{"device": true, "threads": true, "profile": true, "profile-dir": true,
	"op-profile": true, "run": true, "resume": true, "plan": true}

// writeSettings prints every setting of a new run with where its value came from: the command line,
// the model folder (its prompt mode), the built-in model's sizing or SeRL's official defaults.
func writeSettings(w io.Writer, fs *flag.FlagSet, cfg selfplay.Config, tf trainFlags, useBuiltin bool, promptSource string) {
	set := explicit(fs)
	official := trainDefaults(false)
	value := map[string]string{"prompt-mode": string(cfg.PromptMode), "model": tf.Model, "seeds": tf.Seeds,
		"data": tf.Data, "eval": tf.Eval}
	if useBuiltin {
		value["model"] = builtin.Name
	}
	fmt.Fprintln(w, "serl: effective settings (source):")
	fs.VisitAll(func(f *flag.Flag) {
		if nonSettings[f.Name] {
			return
		}
		v, ok := value[f.Name]
		if !ok {
			v = f.Value.String()
		}
		if v == "" {
			return
		}
		var src string
		switch {
		case set[f.Name]:
			src = "flag"
		case f.Name == "prompt-mode" && promptSource != "":
			src = promptSource
		case useBuiltin && (official.Lookup(f.Name).DefValue != f.DefValue || strings.HasPrefix(v, "builtin:")):
			src = "built-in model default"
		case useBuiltin && f.Name == "model":
			src = "no --model"
		default:
			src = "SeRL default"
		}
		if f.Name == "max-batch" && !set[f.Name] && v != "0" {
			// Printed before the device opens: a GPU's fit follows once it has.
			src += "; on a GPU, the largest that free memory holds"
		}
		fmt.Fprintf(w, "  --%-28s %-20s (%s)\n", f.Name, v, src)
	})
}

// runEstimate bounds the time of the steps left and the evaluations by a stated formula at measured
// rates: 2·params FLOPs per generated token and 10·params per trained token (the old policy's and the
// reference's forward passes plus forward and backward; 8·params at --kl 0, which has no reference),
// with every response at its token budget and one self-instruction round per step. Generation runs at the rate of a decode-sized product (the
// batch's rows) and training at that of a packed batch's (estimateTrainRows), each measured on this
// device at the model's shapes. Responses end well before their budget (the built-in model's average a
// third of it), so the bound is a ceiling; the step lines give the time left as it is measured.
type runEstimate struct {
	GenTokens, TrainTokens, EvalTokens float64
	GenRate, TrainRate                 float64 // FLOP/s
	TrainFLOPs                         float64 // per parameter and trained token
	Time                               time.Duration
}

// estimateTrainRows is the rows of the training products the estimate times: a packed micro-batch of
// real responses is thousands of tokens, and past a thousand rows a product's rate is flat.
const estimateTrainRows = 1024

func estimateRun(d *kernels.Device, mc model.Config, cfg selfplay.Config, steps, evalResponses, evalMaxNew int) (runEstimate, error) {
	var e runEstimate
	prec, err := model.ParsePrecision(cfg.Precision)
	if err != nil {
		return e, err
	}
	if e.GenRate, err = measureMatMul(d, min(cfg.MaxBatch, 64), mc.Hidden, mc.Intermediate, prec.Act()); err != nil {
		return e, err
	}
	if e.TrainRate, err = measureMatMul(d, estimateTrainRows, mc.Hidden, mc.Intermediate, prec.Act()); err != nil {
		return e, err
	}
	responses := float64(cfg.RolloutBatch * cfg.Samples)
	e.GenTokens = float64(steps) * responses * float64(cfg.MaxNewTokens)
	if cfg.Mode == selfplay.ModeSeRL {
		e.GenTokens += float64(steps * cfg.GenPrompts * cfg.InstrMaxNewTokens)
	}
	e.TrainTokens = float64(steps) * responses * float64(cfg.MaxPromptTokens+cfg.MaxNewTokens)
	e.EvalTokens = float64(evalResponses * evalMaxNew)
	e.TrainFLOPs = 10
	if cfg.KLCoef == 0 {
		e.TrainFLOPs = 8
	}
	params := float64(model.NewLayout(mc).NumParams())
	sec := 2*params*(e.GenTokens+e.EvalTokens)/e.GenRate + e.TrainFLOPs*params*e.TrainTokens/e.TrainRate
	e.Time = time.Duration(sec * float64(time.Second))
	return e, nil
}

// measureMatMul times [m × k]·[n × k]ᵀ products on d, with operands in dt (the run's activation and
// weight dtype) and a float32 result, for at least measureMatMulTime after a warm-up, and returns
// FLOP/s. A decode-sized product takes well under a millisecond, so a fixed handful of them would time
// the thread pool's wake-up rather than the product.
func measureMatMul(d *kernels.Device, m, k, n int, dt kernels.DType) (float64, error) {
	var ts []kernels.Tensor
	defer func() {
		for _, t := range ts {
			d.Free(t)
		}
	}()
	for i, dims := range [][2]int{{m, k}, {n, k}, {m, n}} {
		tdt := dt
		if i == 2 {
			tdt = kernels.F32
		}
		t, err := d.Alloc(tdt, dims[0], dims[1])
		if err != nil {
			return 0, err
		}
		if err := d.Zero(t); err != nil {
			return 0, err
		}
		ts = append(ts, t)
	}
	p := kernels.MatMul{A: ts[0], B: ts[1], C: ts[2], TransB: true, Alpha: 1}
	row, err := ts[2].Slice(0, 1)
	if err != nil {
		return 0, err
	}
	host := make([]float32, n)
	run := func(reps int) (time.Duration, error) {
		start := time.Now()
		for range reps {
			if err := d.MatMul(p); err != nil {
				return 0, err
			}
		}
		if err := kernels.Download(host, row); err != nil { // waits for an asynchronous device
			return 0, err
		}
		return time.Since(start), nil
	}
	if _, err := run(1); err != nil { // warm-up
		return 0, err
	}
	// Doubling batches until the time is reached: a big model's product (seconds on a CPU) is timed once,
	// a small one thousands of times.
	reps, elapsed := 0, time.Duration(0)
	for batch := 1; elapsed < measureMatMulTime; batch *= 2 {
		took, err := run(batch)
		if err != nil {
			return 0, err
		}
		reps, elapsed = reps+batch, elapsed+took
	}
	sec := math.Max(elapsed.Seconds(), 1e-9)
	return float64(reps) * 2 * float64(m) * float64(k) * float64(n) / sec, nil
}

// measureMatMulTime is how long each rate is measured for: long against a launch or a wake-up, short
// against a run.
const measureMatMulTime = 50 * time.Millisecond

func (e runEstimate) write(w io.Writer) {
	fmt.Fprintf(w, "serl: estimated time at most ~%s: %.3g generated + %.3g evaluation tokens at 2·params FLOPs and %.1f GFLOP/s, "+
		"%.3g trained tokens at %g·params and %.1f GFLOP/s (measured matrix products), every response at its token limit; "+
		"the step lines give the time left as measured\n",
		e.Time.Round(time.Second), e.GenTokens, e.EvalTokens, e.GenRate/1e9, e.TrainTokens, e.TrainFLOPs, e.TrainRate/1e9)
}

// evalResponses counts the responses of the evaluations a run has left: greedy on every problem at
// each iteration boundary from the next one on, plus K samples where maj@K is measured.
func evalResponses(tf trainFlags, cfg selfplay.Config, evaluated int) (int, error) {
	if tf.Eval == "" {
		return 0, nil
	}
	ps, err := readProblems(tf.Eval)
	if err != nil {
		return 0, err
	}
	n := len(ps)
	if tf.EvalLimit > 0 {
		n = min(n, tf.EvalLimit)
	}
	total := 0
	for it := evaluated; it <= cfg.Iterations; it++ {
		k := tf.EvalK
		if it != 0 && it != cfg.Iterations && !tf.EvalKAll || it == 0 && !tf.EvalKBefore {
			k = 0
		}
		total += n * (1 + k)
	}
	return total, nil
}
