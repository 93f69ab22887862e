package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/data"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/safetensors"
)

func init() {
	addCommand(command{name: "logprobs", summary: "per-token log-probabilities of token-id sequences", run: runLogprobs})
	addCommand(command{name: "grad", summary: "gradient of the mean NLL of token-id sequences, as safetensors", run: runGrad})
}

// modelInput is what logprobs and grad share: a model folder, a JSONL file of {"ids":[...]} lines, and
// the token budget of one packed batch.
type modelInput struct {
	df          deviceFlags
	dir, in     string
	adapter     string
	batchTokens int
}

func (mi *modelInput) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
}) {
	fs.StringVar(&mi.dir, "model", "", "Hugging Face model folder (config.json, model.safetensors), or "+builtin.Name)
	fs.StringVar(&mi.adapter, "adapter", "", "PEFT LoRA adapter folder over --model (grad: the adapters' gradients)")
	fs.StringVar(&mi.in, "in", "", `JSONL file of {"ids":[...]} lines ("-" for stdin)`)
	fs.IntVar(&mi.batchTokens, "batch-tokens", 4096, "tokens per packed batch (the activation arena's size)")
}

func (mi *modelInput) validate() error {
	if mi.dir == "" || mi.in == "" {
		return usagef("--model and --in are required")
	}
	if mi.batchTokens < 1 {
		return usagef("--batch-tokens %d: must be positive", mi.batchTokens)
	}
	return nil
}

// load opens the device, reads the sequences and the model, prints the plan and allocates the arena.
func (mi *modelInput) load(stderr io.Writer, training bool) (*model.Model, *model.Activations, [][]int32, func(), error) {
	seqs, err := readIDFile(mi.in)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	longest := 0
	for _, s := range seqs {
		longest = max(longest, len(s))
	}
	budget := max(mi.batchTokens, longest)
	if mi.dir, _, err = modelOrBuiltin("model", mi.dir, stderr); err != nil {
		return nil, nil, nil, nil, err
	}
	p, err := mi.df.prec()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cfg, err := model.LoadConfig(filepath.Join(mi.dir, "config.json"))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// Scoring needs only the weights the ops read (frozen: under bf16, no float32 master); the gradient
	// needs the master weights and a gradient blob.
	opts := model.Options{Precision: p, Frozen: !training || mi.adapter != ""}
	var lc *model.LoRAConfig
	if mi.adapter != "" {
		c, err := model.ReadLoRAConfig(mi.adapter)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		lc = &c
	}
	var plan model.Plan
	plan.Add(cfg.WeightsPlan("parameters", opts)...)
	switch {
	case lc != nil:
		plan.Add(cfg.LoRAWeightsPlan(*lc, p)...)
		if training {
			plan.Add(cfg.LoRAOptimizerPlan(*lc)[0]) // the adapters' gradients
		}
	case training:
		plan.Add(cfg.OptimizerPlan()[0])
	}
	plan.Add(cfg.LoRAActivationPlan(budget, budget, p, lc)...)
	d, stop, err := mi.df.open(stderr)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	fmt.Fprintln(stderr, "memory plan:")
	plan.Write(stderr)
	if err := plan.Check(d.Info().FreeMemory); err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	m, err := loadAdapted(d, mi.dir, mi.adapter, opts)
	if err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	a, err := m.NewActivations(budget, budget)
	if err != nil {
		m.Free()
		stop()
		return nil, nil, nil, nil, err
	}
	return m, a, seqs, func() { a.Free(); m.Free(); stop() }, nil
}

func readIDFile(path string) ([][]int32, error) {
	r := io.Reader(os.Stdin)
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	seqs, err := data.ReadIDs(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(seqs) == 0 {
		return nil, fmt.Errorf("%s: no sequences", path)
	}
	for i, s := range seqs {
		if len(s) == 0 {
			return nil, fmt.Errorf("%s: sequence %d is empty", path, i+1)
		}
	}
	return seqs, nil
}

func runLogprobs(args []string, stdout, stderr io.Writer) error {
	var mi modelInput
	fs := newFlags("logprobs", stderr)
	mi.df.register(fs)
	mi.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := mi.validate(); err != nil {
		return err
	}
	m, a, seqs, done, err := mi.load(stderr, false)
	if err != nil {
		return err
	}
	defer done()
	w := bufio.NewWriter(stdout)
	if err := m.Score(a, seqs, func(i int, logp []float32) error { return data.WriteFloats(w, "logprobs", logp) }); err != nil {
		return err
	}
	return w.Flush()
}

func runGrad(args []string, stdout, stderr io.Writer) error {
	var mi modelInput
	fs := newFlags("grad", stderr)
	mi.df.register(fs)
	mi.register(fs)
	out := fs.String("out", "", "output safetensors file (F32, one tensor per parameter under its HF name)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := mi.validate(); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	m, a, seqs, done, err := mi.load(stderr, true)
	if err != nil {
		return err
	}
	defer done()
	g, err := m.NewGrads()
	if err != nil {
		return err
	}
	defer g.Free()
	loss, err := m.GradNLL(a, g, seqs)
	if err != nil {
		return err
	}
	if err := g.WriteSafetensors(*out, safetensors.F32); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "loss %.6f over %d sequences; gradients written to %s\n", loss, len(seqs), *out)
	return nil
}
