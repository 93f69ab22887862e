package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/kernels"
)

func init() {
	addCommand(command{name: "merge", summary: "fold LoRA adapters into their base model: a plain Hugging Face folder", run: runMerge})
}

// loraFlags are --lora-rank, --lora-alpha and --lora-targets (serl train, pretrain, info).
type loraFlags struct {
	rank    int
	alpha   float64
	targets string
}

func (lf *loraFlags) register(fs interface {
	IntVar(*int, string, int, string)
	Float64Var(*float64, string, float64, string)
	StringVar(*string, string, string, string)
}) {
	fs.IntVar(&lf.rank, "lora-rank", 0, "train LoRA adapters of this rank over the frozen base weights (0: full fine-tuning)")
	fs.Float64Var(&lf.alpha, "lora-alpha", 0, "LoRA alpha: the adapters' term is scaled by alpha/rank (0: 2×rank)")
	fs.StringVar(&lf.targets, "lora-targets", strings.Join(model.LoRATargets, ","), "projections that get adapters")
}

// config is the adapters the flags ask for, nil without --lora-rank.
func (lf loraFlags) config() (*model.LoRAConfig, error) {
	if lf.rank == 0 {
		if lf.alpha != 0 {
			return nil, usagef("--lora-alpha without --lora-rank")
		}
		return nil, nil
	}
	targets, err := model.ParseLoRATargets(lf.targets)
	if err != nil {
		return nil, usagef("--lora-targets: %v", err)
	}
	lc := &model.LoRAConfig{Rank: lf.rank, Alpha: lf.alpha, Targets: targets}
	if lc.Alpha == 0 {
		lc.Alpha = 2 * float64(lf.rank)
	}
	if err := lc.Validate(); err != nil {
		return nil, usagef("--lora-rank/--lora-alpha: %v", err)
	}
	return lc, nil
}

// loadAdapted loads a model and, when adapter is set, attaches the PEFT adapters of that folder (the
// base is then frozen whatever o says: only the adapters could be trained).
func loadAdapted(d *kernels.Device, dir, adapter string, o model.Options) (*model.Model, error) {
	if adapter != "" {
		o.Frozen = true
		if !model.IsAdapterDir(adapter) {
			return nil, fmt.Errorf("--adapter %s: no %s (not a PEFT adapter folder)", adapter, model.AdapterConfigFile)
		}
	}
	m, err := model.LoadWith(d, dir, o)
	if err != nil {
		return nil, err
	}
	if adapter != "" {
		if _, err := m.LoadLoRA(adapter); err != nil {
			m.Free()
			return nil, err
		}
	}
	return m, nil
}

// openInference opens the device of df and loads the model of dir (with the adapters of adapter, if
// set) frozen at df's precision, for the commands that only decode (eval, generate). done frees both.
func openInference(df deviceFlags, dir, adapter string, stderr io.Writer) (d *kernels.Device, m *model.Model, done func(), err error) {
	prec, err := df.prec()
	if err != nil {
		return nil, nil, nil, err
	}
	d, stop, err := df.open(stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	if m, err = loadAdapted(d, dir, adapter, model.Options{Precision: prec, Frozen: true}); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return d, m, func() { m.Free(); stop() }, nil
}

func runMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("merge", stderr)
	var df deviceFlags
	df.register(fs)
	base := fs.String("model", "", "the base model folder the adapters were trained on")
	adapter := fs.String("adapter", "", "PEFT adapter folder (adapter_config.json, adapter_model.safetensors)")
	out := fs.String("out", "", "output folder: the base with W + (alpha/r)·B·A folded in, float32")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *base == "" || *adapter == "" || *out == "" {
		return usagef("--model, --adapter and --out are required")
	}
	if filepath.Clean(*out) == filepath.Clean(*base) {
		return usagef("--out %s is the base model's folder", *out)
	}
	d, stop, err := df.open(stderr)
	if err != nil {
		return err
	}
	defer stop()
	pc, from, known, err := mergedPrompt(*base, *adapter)
	if err != nil {
		return err
	}
	// Merged in float32 whatever --precision says: the folded weights are saved in float32.
	m, err := model.LoadMerged(d, *base, *adapter)
	if err != nil {
		return err
	}
	defer m.Free()
	if known && from != "" {
		m.Files = map[string][]byte{evaluate.PromptFile: pc.Marshal()}
		fmt.Fprintf(stderr, "serl: prompt mode %s (from %s), recorded in the merged model's %s\n", pc.Mode, from, evaluate.PromptFile)
	}
	if err := m.Save(*out, safetensors.F32); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "merged %s into %s: %s\n", *adapter, *base, *out)
	fmt.Fprintln(stdout, *out)
	return nil
}

// mergedPrompt is the prompt format the model the adapters were trained in expects, for the merged model
// to record (a chat-trained model prompted raw answers badly, and a merged folder no longer sits in its
// run): the base's serl.json, which Save copies itself (from is then empty), else the config.json of the
// run the base or the adapters were saved in. known is false when nothing says.
func mergedPrompt(base, adapter string) (pc evaluate.PromptConfig, from string, known bool, err error) {
	if pc, ok, err := evaluate.ReadPromptConfig(base); err != nil || ok {
		return pc, "", ok, err
	}
	if pc, ok := runPrompt(base); ok {
		return pc, "the base's run config.json", true, nil
	}
	if pc, ok := runPrompt(adapter); ok {
		return pc, "the adapters' run config.json", true, nil
	}
	return pc, "", false, nil
}
