package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/serl-go/serl/engine/model"
)

func init() {
	addCommand(command{name: "info", summary: "show the device and native library, and a model's memory plan", run: runInfo})
}

func runInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("info", stderr)
	var df deviceFlags
	df.register(fs)
	dir := fs.String("model", "", "Hugging Face model folder: print its configuration and training memory plan")
	batchTokens := fs.Int("batch-tokens", 4096, "tokens per training micro-batch, for the plan")
	seqs := fs.Int("seqs", 16, "sequences per micro-batch, for the plan")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batchTokens < 1 || *seqs < 1 || *seqs > *batchTokens {
		return usagef("want 1 ≤ --seqs ≤ --batch-tokens")
	}
	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	in := d.Info()
	fmt.Fprintf(stdout, "backend   %s\ndevice    %s\nlibrary   %s\nthreads   %d\nsimd      %s\nmemory    %.1f GiB total, %.1f GiB free\n",
		in.Backend, in.Name, in.Library, in.Threads, in.SIMD, float64(in.TotalMemory)/(1<<30), float64(in.FreeMemory)/(1<<30))
	if *dir == "" {
		return nil
	}
	if *dir, _, err = modelOrBuiltin(*dir, stderr); err != nil {
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
	plan := c.TrainingPlan(*batchTokens, *seqs, true)
	fmt.Fprintf(stdout, "training memory plan (micro-batch %d tokens in %d sequences):\n", *batchTokens, *seqs)
	if err := plan.Write(stdout); err != nil {
		return err
	}
	if err := plan.Check(in.FreeMemory); err != nil {
		fmt.Fprintf(stdout, "does not fit: %v\n", err)
	}
	return nil
}
