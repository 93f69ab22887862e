package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/engine/dist"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/selfplay"
	"github.com/serl-go/serl/kernels"
)

func init() {
	addCommand(command{name: "info", summary: "show the device and native library, and a model's memory plan", run: runInfo})
}

func runInfo(args []string, stdout, stderr io.Writer) error {
	return inGroup(stdout, stderr, func(c *dist.Comm, stdout, stderr io.Writer) error { return info(c, args, stdout, stderr) })
}

func info(comm *dist.Comm, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("info", stderr)
	var df deviceFlags
	df.register(fs)
	dir := fs.String("model", "", "Hugging Face model folder: print its configuration and the memory plan of serl train on it")
	// The sizes of `serl train --model DIR` that the plan depends on, with its defaults.
	cfg := selfplay.DefaultConfig()
	fs.IntVar(&cfg.TrainBatch, "train-batch", cfg.TrainBatch, "sequences per optimizer step (the training arena holds them)")
	fs.IntVar(&cfg.MicroBatchTokens, "micro-batch-tokens", cfg.MicroBatchTokens, "tokens the training arena holds (0: a whole optimizer step)")
	fs.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "sequences decoded together")
	fs.IntVar(&cfg.MaxPromptTokens, "max-prompt-tokens", cfg.MaxPromptTokens, "prompt budget")
	fs.IntVar(&cfg.MaxNewTokens, "max-new-tokens", cfg.MaxNewTokens, "tokens per response")
	fs.IntVar(&cfg.InstrMaxNewTokens, "instr-max-new-tokens", cfg.InstrMaxNewTokens, "tokens per self-instruction completion")
	fs.Float64Var(&cfg.KLCoef, "kl", cfg.KLCoef, "KL coefficient β (0: no reference model is held)")
	var lf loraFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := df.prec(); err != nil {
		return err
	}
	if *dir != "" && cfg.MaxBatch < 1 {
		// The fit counts the evaluation set's prompts and maj@K samples, which are serl train's flags.
		return usagef("--max-batch %d: want 1 or more; the decode batch fitted to free memory is serl train's (--max-batch 0, the default on a GPU): `serl train --plan` with the run's flags prints that plan", cfg.MaxBatch)
	}
	if lc, err := lf.config(); err != nil {
		return err
	} else if lc != nil {
		cfg.LoRARank, cfg.LoRAAlpha, cfg.LoRATargets = lc.Rank, lc.Alpha, lc.Targets
	}
	cfg.Precision = df.precision
	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	in := d.Info()
	fmt.Fprintf(stdout, "backend   %s\ndevice    %s\nlibrary   %s\nthreads   %d\nsimd      %s\nmemory    %.1f GiB total, %.1f GiB free\n",
		in.Backend, in.Name, in.Library, in.Threads, simdLine(in), float64(in.TotalMemory)/(1<<30), float64(in.FreeMemory)/(1<<30))
	if comm.Size() == 1 {
		fmt.Fprintf(stdout, "parallel  %s (one process; mpirun -np N serl … runs N)\n", comm.Backend())
	} else {
		fmt.Fprintf(stdout, "parallel  %s, world size %d (this is rank %d, local rank %d), %s\n",
			comm.Backend(), comm.Size(), comm.Rank(), comm.LocalRank(), comm.Library())
	}
	if *dir == "" {
		return nil
	}
	if *dir, _, err = modelOrBuiltin("model", *dir, stderr); err != nil {
		return err
	}
	// Only the configuration is read: the plan is printed before anything is allocated.
	c, err := model.LoadConfig(filepath.Join(*dir, "config.json"))
	if err != nil {
		return err
	}
	l := model.NewLayout(c)
	fmt.Fprintf(stdout, "\nmodel     %s (%s): %d layers, hidden %d, heads %d/%d × %d, intermediate %d, vocab %d, tied %v\n",
		*dir, c.Arch, c.Layers, c.Hidden, c.Heads, c.KVHeads, c.HeadDim, c.Intermediate, c.Vocab, c.TieEmbedding)
	fmt.Fprintf(stdout, "params    %d (%d tensors)\n", l.NumParams(), len(l.Specs))
	// Evaluation prompts are counted at the prompt budget (serl train measures the eval set's longest).
	plan, err := trainPlan(c, cfg, cfg.MaxPromptTokens, cfg.MaxNewTokens)
	if err != nil {
		return usagef("%v", err)
	}
	how := "full fine-tuning"
	if cfg.LoRARank > 0 {
		how = fmt.Sprintf("LoRA rank %d over a frozen base", cfg.LoRARank)
	}
	fmt.Fprintf(stdout, "memory plan of serl train, %s, in %s (train batch %d, decode batch %d, %d prompt + %d new tokens; evaluation prompts at the prompt budget):\n",
		how, cfg.Precision, cfg.TrainBatch, cfg.MaxBatch, cfg.MaxPromptTokens, max(cfg.MaxNewTokens, cfg.InstrMaxNewTokens))
	if err := plan.Write(stdout); err != nil {
		return err
	}
	if err := plan.Check(in.FreeMemory); err != nil {
		fmt.Fprintf(stdout, "does not fit: %v\n", err)
		hint, err := microBatchHint(c, cfg, cfg.MaxBatch, cfg.MaxPromptTokens, cfg.MaxNewTokens, in.FreeMemory/10*9)
		if err != nil {
			return err
		}
		if hint != "" {
			fmt.Fprintf(stdout, "%s\n", hint)
		}
	}
	if in.Backend == "cuda" && !explicit(fs)["max-batch"] {
		fmt.Fprintf(stdout, "serl train on this device fits its decode batch to free memory unless --max-batch is given: `serl train --plan` with the run's flags prints that plan\n")
	}
	return nil
}

// simdLine is the vector ISA in use, and the CPU's best where that is another: under SERL_SIMD, or on
// an Intel CPU whose bf16 pair instruction the kernels pass over by default (half float32's rate there).
func simdLine(in kernels.Info) string {
	switch {
	case in.SIMDCPU == "" || in.SIMDCPU == "none" || in.SIMDCPU == in.SIMD:
		return in.SIMD
	case os.Getenv("SERL_SIMD") != "":
		return fmt.Sprintf("%s (SERL_SIMD; the CPU has %s)", in.SIMD, in.SIMDCPU)
	case in.SIMD == "avx512" && in.SIMDCPU == "avx512bf16":
		return "avx512 (the CPU has avx512bf16, whose bf16 pair instruction runs at half float32's multiply-add rate here; SERL_SIMD=avx512bf16 takes it)"
	default:
		return fmt.Sprintf("%s (the CPU has %s)", in.SIMD, in.SIMDCPU)
	}
}
