package pretrain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/kernels"
)

// Folders of a run started from Init with LoRA.
const (
	BaseDir    = "base"    // the frozen base (the Init model as loaded), saved once at the start
	AdapterDir = "adapter" // the final adapters, a PEFT folder over ../base
)

// initTokenizerFiles are the tokenizer files a run started from Init takes from it.
var initTokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json"}

// adoptInit returns c with the model shape of c.Init's config.json: the run folder's settings then
// say what was trained.
func adoptInit(c Config) (Config, error) {
	path := filepath.Join(c.Init, "config.json")
	mc, err := model.LoadConfig(path)
	if err != nil {
		return c, fmt.Errorf("pretrain: --init: %w", err)
	}
	c.Hidden, c.Layers, c.Heads, c.KVHeads = mc.Hidden, mc.Layers, mc.Heads, mc.KVHeads
	c.Intermediate, c.MaxPositions, c.RopeTheta = mc.Intermediate, mc.MaxPositions, mc.RopeTheta
	if c.MaxSeqLen > c.MaxPositions {
		c.MaxSeqLen = c.MaxPositions
	}
	if c.MicroTokens < c.MaxSeqLen {
		return c, fmt.Errorf("pretrain: --init %s: micro-batch of %d tokens cannot hold a %d-token document", c.Init, c.MicroTokens, c.MaxSeqLen)
	}
	return c, nil
}

// initTokenizer copies the tokenizer of c.Init into dir and loads it. The corpus is rendered with
// serl's chat format, so the tokenizer must have its special tokens, and every id it gives must be a
// row of the model's embedding (config.json's vocab_size).
func (r *Run) initTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	init := r.Config.Init
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, name := range initTokenizerFiles {
		if err := copyFile(filepath.Join(init, name), filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("pretrain: --init %s: %s: %w", init, name, err)
		}
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("pretrain: --init %s: %w", init, err)
	}
	tokPath := filepath.Join(init, "tokenizer.json")
	for _, s := range SpecialTokens {
		if _, ok := tok.TokenID(s); !ok {
			return nil, fmt.Errorf("pretrain: --init %s: %s has no %s token: the corpus's chat format needs %v (not serl's tokenizer)",
				init, tokPath, s, SpecialTokens)
		}
	}
	cfgPath := filepath.Join(init, "config.json")
	mc, err := model.LoadConfig(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("pretrain: --init: %w", err)
	}
	if tok.VocabSize() > mc.Vocab {
		return nil, fmt.Errorf("pretrain: --init %s: %s has %d tokens but %s has vocab_size %d: not this model's tokenizer",
			init, tokPath, tok.VocabSize(), cfgPath, mc.Vocab)
	}
	r.say("tokenizer: %d tokens from %s", tok.VocabSize(), tokPath)
	return tok, nil
}

// loadInit loads the Init model into a new run folder dir. With LoRA the loaded model is the frozen
// base: it is saved into dir/base (the checkpoints' adapters name it, and a resumed run loads it from
// there) and gets new adapters; otherwise the whole model trains from the Init weights.
func (r *Run) loadInit(d *kernels.Device, dir string) (*model.Model, error) {
	cfg := r.Config
	lc := cfg.LoRA()
	m, err := model.LoadWith(d, cfg.Init, model.Options{Precision: cfg.precision(), Frozen: lc != nil})
	if err != nil {
		return nil, fmt.Errorf("pretrain: --init: %w", err)
	}
	if lc == nil {
		return m, nil
	}
	base := filepath.Join(dir, BaseDir)
	if err := m.Save(base, safetensors.F32); err != nil { // with its tokenizer files (from SourceDir, Init)
		m.Free()
		return nil, err
	}
	if _, err := m.AttachLoRA(*lc, cfg.Seed); err != nil {
		m.Free()
		return nil, err
	}
	r.say("LoRA: rank %d, alpha %g on %v over the frozen %s (%d adapter parameters)", lc.Rank, lc.Alpha, lc.Targets,
		cfg.Init, m.LoRA().Layout.NumParams())
	return m, nil
}

// loadBase loads a LoRA run's frozen base and the adapters of its checkpoint folder ckModel.
func (r *Run) loadBase(d *kernels.Device, ckModel string) (*model.Model, error) {
	m, err := model.LoadWith(d, filepath.Join(r.Dir, BaseDir), model.Options{Precision: r.Config.precision(), Frozen: true})
	if err != nil {
		return nil, err
	}
	if _, err := m.LoadLoRA(ckModel); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// copyFile copies src to dst atomically (tokenizer files: small).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("missing (a Hugging Face model folder with its tokenizer is needed)")
	}
	if err != nil {
		return err
	}
	return writeAtomic(dst, b)
}
