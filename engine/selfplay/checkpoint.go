package selfplay

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/safetensors"
)

// Layout of a run directory.
const (
	configFile    = "config.json"
	checkpointDir = "checkpoint" // the last completed training step: model/, moments, state.json
	referenceDir  = "reference"  // the frozen initial model, saved once at the start
)

// Start creates a run directory (it must not exist, or be empty) with config.json and the reference
// model, and returns a runner at step 0.
func Start(path string, cfg Config, in Inputs) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(path); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("selfplay: run directory %s exists and is not empty (use resume)", path)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, err
	}
	dir := &runDir{path: path}
	if err := dir.writeJSON(configFile, cfg); err != nil {
		return nil, err
	}
	if in.Reference != nil {
		if err := in.Reference.Save(dir.file(referenceDir), safetensors.F32); err != nil {
			return nil, err
		}
	}
	return newRunner(cfg, in, dir, State{})
}

// LoadRun reads a run directory's configuration and tells where its last checkpointed policy and its
// reference model are, so the caller can load both before Resume.
func LoadRun(path string) (cfg Config, policyDir, refDir string, err error) {
	b, err := os.ReadFile(filepath.Join(path, configFile))
	if err != nil {
		return Config{}, "", "", fmt.Errorf("selfplay: %s is not a run directory: %w", path, err)
	}
	cfg = DefaultConfig()
	if err := json.Unmarshal(b, &cfg); err != nil {
		return Config{}, "", "", fmt.Errorf("selfplay: %s: %w", filepath.Join(path, configFile), err)
	}
	policyDir = filepath.Join(path, checkpointDir, "model")
	if _, err := os.Stat(policyDir); err != nil {
		// killed before the first step finished: start again from the reference
		policyDir = filepath.Join(path, referenceDir)
	}
	return cfg, policyDir, filepath.Join(path, referenceDir), nil
}

// Resume continues a run from its last checkpoint: in.Policy must hold the checkpointed weights
// (LoadRun says where), in.Reference the reference model.
func Resume(path string, in Inputs) (*Runner, error) {
	cfg, _, _, err := LoadRun(path)
	if err != nil {
		return nil, err
	}
	dir := &runDir{path: path}
	var st State
	ck := dir.file(checkpointDir)
	b, err := os.ReadFile(filepath.Join(ck, "state.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return newRunner(cfg, in, dir, State{}) // no step finished yet
	case err != nil:
		return nil, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("selfplay: %s: %w", filepath.Join(ck, "state.json"), err)
	}
	r, err := newRunner(cfg, in, dir, st)
	if err != nil {
		return nil, err
	}
	for _, mo := range []struct {
		file string
		blob *model.Blob
	}{{"adam_m.safetensors", r.opt.M}, {"adam_v.safetensors", r.opt.V}} {
		if err := readBlob(filepath.Join(ck, mo.file), mo.blob); err != nil {
			r.Free()
			return nil, err
		}
	}
	return r, nil
}

// readBlob fills a blob from a safetensors file written by Blob.WriteSafetensors.
func readBlob(path string, b *model.Blob) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, s := range b.Layout.Specs {
		v := b.View(i)
		host := v.F32()
		if host == nil {
			host = make([]float32, s.Len)
		}
		if err := f.Float32(s.Name, host); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if v.F32() == nil {
			if err := uploadF32(v, host); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkpoint writes the state after a training step: weights, both AdamW moments and the loop state,
// assembled in a temporary folder and renamed into place, so a kill at any moment leaves either the
// previous checkpoint or this one.
func (r *Runner) checkpoint() error {
	if r.dir.err != nil {
		return r.dir.err
	}
	pcg, err := r.loopPCG.MarshalBinary()
	if err != nil {
		return err
	}
	few, err := r.fewShot.MarshalBinary()
	if err != nil {
		return err
	}
	r.state.LoopRNG, r.state.FewShotRNG = pcg, few
	var suffix [6]byte
	rand.Read(suffix[:])
	final := r.dir.file(checkpointDir)
	tmp := final + ".tmp-" + hex.EncodeToString(suffix[:])
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("selfplay: checkpoint: %w", err)
	}
	if err := r.in.Policy.Save(filepath.Join(tmp, "model"), safetensors.F32); err != nil {
		return fail(err)
	}
	if err := r.opt.M.WriteSafetensors(filepath.Join(tmp, "adam_m.safetensors"), safetensors.F32); err != nil {
		return fail(err)
	}
	if err := r.opt.V.WriteSafetensors(filepath.Join(tmp, "adam_v.safetensors"), safetensors.F32); err != nil {
		return fail(err)
	}
	b, err := json.Marshal(r.state)
	if err != nil {
		return fail(err)
	}
	if err := writeAtomic(filepath.Join(tmp, "state.json"), b); err != nil {
		return fail(err)
	}
	old := final + ".old-" + hex.EncodeToString(suffix[:])
	if _, err := os.Stat(final); err == nil {
		if err := os.Rename(final, old); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Rename(old, final)
		return fail(err)
	}
	os.RemoveAll(old)
	return nil
}

// saveIteration keeps the model at an iteration boundary as a Hugging Face folder (iter<k>/).
func (d *runDir) saveIteration(r *Runner, it int) error {
	return r.in.Policy.Save(d.file(fmt.Sprintf("iter%d", it)), safetensors.F32)
}
