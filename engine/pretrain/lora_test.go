package pretrain

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/checkpoint"
	"github.com/serl-go/serl/engine/evaluate"
	"github.com/serl-go/serl/engine/model"
	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/engine/tokenizer"
	"github.com/serl-go/serl/internal/testenv"
)

// toyBase pretrains a tiny model for two steps: the base the LoRA runs adapt.
func toyBase(t *testing.T, dir string) string {
	c := toyConfig()
	c.Steps, c.SaveEvery = 2, 0
	r := &Run{Dir: dir, Config: c, Source: toySource}
	require.NoError(t, r.Train(context.Background(), testDevice(t), false))
	return filepath.Join(dir, ModelDir)
}

func loraConfig(init string) Config {
	c := toyConfig()
	c.Init, c.LoRARank, c.LoRAAlpha, c.LoRATargets = init, 4, 8, model.LoRATargets
	c.LR, c.SaveEvery = 1e-2, 2
	return c
}

func readFile(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// A LoRA run from --init keeps the base bit-identical, trains and checkpoints only the adapters and
// their moments, resumes exactly, and leaves the adapters (PEFT) beside the merged model.
func TestLoRAFromInit(t *testing.T) {
	d := testDevice(t)
	tmp := t.TempDir()
	init := toyBase(t, filepath.Join(tmp, "base"))
	held := []evaluate.Problem{toySource(1, 1), toySource(2, 1)}

	full := &Run{Dir: filepath.Join(tmp, "full"), Config: loraConfig(init), Source: toySource, HeldOut: held}
	var losses []float64
	full.Report = func(e Event) {
		if e.Message == "" {
			losses = append(losses, e.Loss)
		}
	}
	require.NoError(t, full.Train(context.Background(), d, false))
	require.Len(t, losses, 6)
	assert.Less(t, losses[5], losses[0], "the adapters learn")

	// The frozen base: saved once, bit-identical to --init's weights.
	assert.Equal(t, readParams(t, init), readParams(t, filepath.Join(full.Dir, BaseDir)))
	// Checkpoints hold the adapters (PEFT folder naming the run's base) and only their moments.
	ck, err := checkpoint.Open(full.Dir)
	require.NoError(t, err)
	require.True(t, model.IsAdapterDir(ck.ModelDir()))
	_, err = os.Stat(filepath.Join(ck.ModelDir(), "model.safetensors"))
	assert.True(t, os.IsNotExist(err), "no base weights in a LoRA checkpoint")
	for _, name := range []string{checkpoint.MomentM, checkpoint.MomentV} {
		f, err := safetensors.Open(filepath.Join(ck.Dir, name))
		require.NoError(t, err)
		require.NotEmpty(t, f.Names())
		for _, n := range f.Names() {
			assert.Contains(t, n, ".lora_", "%s: %s", name, n)
		}
	}
	// The outputs: adapters over ../base, and the merged plain model (packed too).
	lc, err := model.ReadLoRAConfig(filepath.Join(full.Dir, AdapterDir))
	require.NoError(t, err)
	assert.Equal(t, 4, lc.Rank)
	var ac map[string]any
	require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(full.Dir, AdapterDir, model.AdapterConfigFile)), &ac))
	assert.Equal(t, "../"+BaseDir, ac["base_model_name_or_path"])
	merged, err := model.LoadMerged(d, filepath.Join(full.Dir, BaseDir), filepath.Join(full.Dir, AdapterDir))
	require.NoError(t, err)
	want := testenv.Read[float32](t, merged.Params.Data)
	merged.Free()
	got := readParams(t, filepath.Join(full.Dir, ModelDir))
	assert.Equal(t, want, got)
	assert.NotEqual(t, readParams(t, init), got, "the adapters changed the model")
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "serl.json"} {
		_, err := os.Stat(filepath.Join(full.Dir, ModelDir, name))
		assert.NoError(t, err, name)
	}
	_, err = os.Stat(filepath.Join(full.Dir, PackedModel))
	assert.NoError(t, err)

	// Interrupted after step 3 and resumed: the same adapters and metrics as the uninterrupted run.
	ctx, cancel := context.WithCancel(context.Background())
	part := &Run{Dir: filepath.Join(tmp, "part"), Config: loraConfig(init), Source: toySource, HeldOut: held}
	part.Config.SaveEvery = 0
	part.Report = func(e Event) {
		if e.Step == 3 {
			cancel()
		}
	}
	require.True(t, errors.Is(part.Train(ctx, d, false), context.Canceled))
	resumed := &Run{Dir: part.Dir, Config: DefaultConfig(), Source: toySource, HeldOut: held}
	require.NoError(t, resumed.Train(context.Background(), d, true))
	for _, name := range []string{model.AdapterWeightsFile, model.AdapterConfigFile} {
		assert.Equal(t, readFile(t, filepath.Join(full.Dir, AdapterDir, name)), readFile(t, filepath.Join(part.Dir, AdapterDir, name)), name)
	}
	assert.Equal(t, readFile(t, filepath.Join(full.Dir, ModelDir, "model.safetensors")), readFile(t, filepath.Join(part.Dir, ModelDir, "model.safetensors")))
	var fl, pl []string
	for _, l := range strings.Split(string(readFile(t, filepath.Join(full.Dir, MetricsFile))), "\n") {
		fl = append(fl, l[:strings.Index(l+",\"tokens_per_s", ",\"tokens_per_s")])
	}
	for _, l := range strings.Split(string(readFile(t, filepath.Join(part.Dir, MetricsFile))), "\n") {
		pl = append(pl, l[:strings.Index(l+",\"tokens_per_s", ",\"tokens_per_s")])
	}
	assert.Equal(t, fl, pl, "the losses, learning rates and gradient norms of every step")
}

// LoRA under bf16: the base is held in bf16 only, the adapters train with float32 masters.
func TestLoRAFromInitBF16(t *testing.T) {
	tmp := t.TempDir()
	init := toyBase(t, filepath.Join(tmp, "base"))
	c := loraConfig(init)
	c.Steps, c.Precision = 2, "bf16"
	r := &Run{Dir: filepath.Join(tmp, "lora"), Config: c, Source: toySource}
	require.NoError(t, r.Train(context.Background(), testDevice(t), false))
	require.True(t, model.IsAdapterDir(filepath.Join(r.Dir, AdapterDir)))
	got := readParams(t, filepath.Join(r.Dir, ModelDir))
	assert.NotEqual(t, readParams(t, filepath.Join(r.Dir, BaseDir)), got, "the adapters changed the model")
}

// A full-model run from --init starts from its weights and takes its shape and tokenizer.
func TestInitFullModel(t *testing.T) {
	tmp := t.TempDir()
	init := toyBase(t, filepath.Join(tmp, "base"))
	c := toyConfig()
	c.Init, c.Steps, c.Hidden, c.VocabSize = init, 1, 999, 999 // the shape settings are --init's
	r := &Run{Dir: filepath.Join(tmp, "cont"), Config: c, Source: toySource}
	require.NoError(t, r.Train(context.Background(), testDevice(t), false))
	saved, err := readConfig(filepath.Join(r.Dir, ConfigFile))
	require.NoError(t, err)
	assert.Equal(t, 32, saved.Hidden)
	assert.Equal(t, readFile(t, filepath.Join(init, "tokenizer.json")), readFile(t, filepath.Join(r.Dir, TokenizerDir, "tokenizer.json")))
	_, err = os.Stat(filepath.Join(r.Dir, BaseDir))
	assert.True(t, os.IsNotExist(err), "no base folder without LoRA")
}

// Bad --init folders and LoRA without one are refused, naming the file and field.
func TestInitRefusals(t *testing.T) {
	d := testDevice(t)
	tmp := t.TempDir()
	init := toyBase(t, filepath.Join(tmp, "base"))

	c := toyConfig()
	c.LoRARank = 4
	require.ErrorContains(t, c.Validate(), "init")

	clone := func(name string) string {
		dir := filepath.Join(tmp, name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		entries, err := os.ReadDir(init)
		require.NoError(t, err)
		for _, e := range entries {
			require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), readFile(t, filepath.Join(init, e.Name())), 0o644))
		}
		return dir
	}
	try := func(dir string) error {
		r := &Run{Dir: filepath.Join(tmp, "run-"+filepath.Base(dir)), Config: loraConfig(dir), Source: toySource}
		return r.Train(context.Background(), d, false)
	}

	// A tokenizer without serl's chat tokens.
	noSpecial := clone("nospecial")
	tok, err := tokenizer.Train(NewCorpus(toySource, 1, 0, nil).Texts(40), 300, tokenizer.TrainOptions{})
	require.NoError(t, err)
	require.NoError(t, tok.Save(noSpecial, tokenizer.Config{}))
	err = try(noSpecial)
	require.ErrorContains(t, err, filepath.Join(noSpecial, "tokenizer.json"))
	require.ErrorContains(t, err, "<|endoftext|>")

	// A model whose embedding is smaller than the tokenizer.
	small := clone("small")
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(small, "config.json")), &cfg))
	cfg["vocab_size"] = 100
	b, _ := json.Marshal(cfg)
	require.NoError(t, os.WriteFile(filepath.Join(small, "config.json"), b, 0o644))
	err = try(small)
	require.ErrorContains(t, err, "vocab_size 100")
	require.ErrorContains(t, err, filepath.Join(small, "config.json"))

	// No tokenizer at all.
	none := clone("none")
	require.NoError(t, os.Remove(filepath.Join(none, "tokenizer.json")))
	require.ErrorContains(t, try(none), "tokenizer.json")
}
