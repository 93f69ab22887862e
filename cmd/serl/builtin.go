package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/serl-go/serl/engine/builtin"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/task/arith"
)

// modelOrBuiltin is the model folder given as --flagName, or the built-in model's (unpacked on first use)
// when none is given or it is named as printed (builtin:arith); the second result says which.
func modelOrBuiltin(flagName, dir string, stderr io.Writer) (string, bool, error) {
	if dir != "" && dir != builtin.Name {
		if err := isModelFolder(dir); err != nil {
			return "", false, fmt.Errorf("--%s %w", flagName, err)
		}
		return dir, false, nil
	}
	d, err := builtin.ModelDir()
	if err != nil {
		return "", false, fmt.Errorf("built-in model: %w", err)
	}
	how := "no --" + flagName
	if dir != "" {
		how = "--" + flagName + " " + dir
	}
	fmt.Fprintf(stderr, "serl: %s: the built-in model (%s, unpacked at %s)\n", how, builtin.Name, d)
	return d, true, nil
}

// isModelFolder says plainly when dir cannot be a model folder, before a command reads a file of it
// and fails on that file's name. Which files it needs is the command's (tokenize reads only the
// tokenizer; model.LoadConfig names a missing config.json).
func isModelFolder(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: no such model folder", dir)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is a file: a model is a Hugging Face folder (config.json, model.safetensors, tokenizer.json)", dir)
	}
	return nil
}

// modelPrompt is how the model in dir expects its prompts, and where that comes from: the folder's
// serl.json (written with every model serl saves, and beside the unpacked built-in model), else the
// config.json of the serl run it was saved in, else the official raw prompt. Commands let --prompt-mode
// and --system override it.
func modelPrompt(dir string) (evaluate.PromptConfig, string, error) {
	pc, ok, err := evaluate.ReadPromptConfig(dir)
	switch {
	case err != nil:
		return pc, "", err
	case ok:
		if pc.Mode == evaluate.ModeChat && pc.System == "" {
			pc.System = evaluate.SystemPrompt
		}
		return pc, "the model folder's " + evaluate.PromptFile, nil
	}
	if pc, ok := runPrompt(dir); ok {
		return pc, "the run's config.json", nil
	}
	return evaluate.PromptConfig{Mode: evaluate.ModeRaw, System: evaluate.SystemPrompt}, "the official default", nil
}

// runPrompt is the prompt format of the serl run whose directory holds dir (an iter<k> folder saved
// before model folders carried serl.json): the run's config.json, recognised by its SeRL settings.
func runPrompt(dir string) (evaluate.PromptConfig, bool) {
	var pc evaluate.PromptConfig
	b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Clean(dir)), "config.json"))
	if err != nil {
		return pc, false
	}
	var c struct {
		PromptMode   string `json:"prompt_mode"`
		SystemPrompt string `json:"system_prompt"`
		Instructions *int   `json:"instructions_per_iteration"`
	}
	if json.Unmarshal(b, &c) != nil || c.Instructions == nil || (c.PromptMode != evaluate.ModeRaw && c.PromptMode != evaluate.ModeChat) {
		return pc, false
	}
	pc = evaluate.PromptConfig{Mode: c.PromptMode, System: c.SystemPrompt}
	if pc.System == "" {
		pc.System = evaluate.SystemPrompt
	}
	return pc, true
}

// explicit reports which flags the command line set.
func explicit(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// hasFlag reports whether args set the named flag (any of -name, --name, -name=v, --name=v), for the
// commands whose defaults depend on it before the flags are parsed.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// flagValue is the value args give the named flag (the last one wins, as in package flag), for the
// commands whose defaults depend on it before the flags are parsed.
func flagValue(args []string, name string) (string, bool) {
	var v string
	var found bool
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case strings.HasPrefix(a, name+"="):
			v, found = strings.TrimPrefix(a, name+"="), true
		case a == name && i+1 < len(args):
			v, found = args[i+1], true
			i++
		}
	}
	return v, found
}

// builtinSeeds and builtinEval are the world's shipped seed set (100 problems) and held-out set (500,
// levels interleaved so that any prefix is balanced).
func builtinSeeds() []evaluate.Problem {
	var out []evaluate.Problem
	for _, p := range arith.SeedSet() {
		out = append(out, toEval(p))
	}
	return out
}

func builtinEval() []evaluate.Problem { return arithHeldOut() }

// Names that stand for the built-in data sets wherever a problem file is expected.
const (
	builtinSeedsName = "builtin:seed100"
	builtinEvalName  = "builtin:eval500"
	builtinTrainName = "builtin:train7500" // the labelled training set of the gt and maj baselines
)

// builtinTrain is 7,500 labelled problems from the world's generator (levels in turn, none from the
// held-out set): the counterpart of MATH's 7.5k training set.
func builtinTrain() []evaluate.Problem {
	var out []evaluate.Problem
	for p := range arith.Corpus(1, 7500, nil) {
		out = append(out, toEval(p))
	}
	return out
}

// readProblems reads a JSONL problem file or names a built-in set.
func readProblems(path string) ([]evaluate.Problem, error) {
	switch path {
	case builtinSeedsName:
		return builtinSeeds(), nil
	case builtinEvalName:
		return builtinEval(), nil
	case builtinTrainName:
		return builtinTrain(), nil
	}
	if strings.HasPrefix(path, "builtin:") {
		return nil, fmt.Errorf("%s: no such built-in set (%s, %s or %s)", path, builtinSeedsName, builtinEvalName, builtinTrainName)
	}
	return evaluate.ReadFile(path)
}

// problemFileBytes is a problem file's content; a built-in set is written out as JSONL.
func problemFileBytes(path string) ([]byte, error) {
	if !strings.HasPrefix(path, "builtin:") {
		return os.ReadFile(path)
	}
	ps, err := readProblems(path)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, p := range ps {
		if err := enc.Encode(p); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}
