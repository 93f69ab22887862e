// Package model is serl's decoder-only transformer (the Qwen2/Qwen2.5 and Llama-3.x families) on the
// kernels API: Hugging Face configuration and weights, one parameter blob, a planned activation arena,
// and forward/backward passes over packed variable-length sequences.
package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
)

// Arch is a supported architecture family.
type Arch string

const (
	Qwen2 Arch = "qwen2"
	Llama Arch = "llama"
)

// Config is what the model needs from a Hugging Face config.json.
type Config struct {
	Arch         Arch
	Hidden       int // hidden_size
	Layers       int // num_hidden_layers
	Heads        int // num_attention_heads
	KVHeads      int // num_key_value_heads
	HeadDim      int // head_dim (default hidden/heads)
	Intermediate int // intermediate_size
	Vocab        int // vocab_size
	MaxPositions int // max_position_embeddings
	RMSNormEps   float64
	RopeTheta    float64
	RopeScaling  *RopeScaling // llama3 frequency scaling, or nil
	TieEmbedding bool         // tie_word_embeddings: lm_head shares the embedding matrix
	QKVBias      bool         // biases on q/k/v projections (Qwen2 always; Llama attention_bias)
	OBias        bool         // bias on o_proj (Llama attention_bias)
	MLPBias      bool         // biases on gate/up/down (Llama mlp_bias)
	BOS          int          // bos_token_id, −1 if none
	EOS          []int        // eos_token_id (one or several)

	raw []byte // the config.json it came from, so a saved model keeps every field it does not use
}

// RopeScaling is rope_scaling with rope_type "llama3".
type RopeScaling struct {
	Factor         float64 `json:"factor"`
	LowFreqFactor  float64 `json:"low_freq_factor"`
	HighFreqFactor float64 `json:"high_freq_factor"`
	OriginalMaxPos int     `json:"original_max_position_embeddings"`
	RopeType       string  `json:"rope_type"`
	LegacyType     string  `json:"type"`
}

type rawConfig struct {
	Architectures     []string         `json:"architectures"`
	ModelType         string           `json:"model_type"`
	HiddenSize        *int             `json:"hidden_size"`
	NumLayers         *int             `json:"num_hidden_layers"`
	NumHeads          *int             `json:"num_attention_heads"`
	NumKVHeads        *int             `json:"num_key_value_heads"`
	HeadDim           *int             `json:"head_dim"`
	Intermediate      *int             `json:"intermediate_size"`
	VocabSize         *int             `json:"vocab_size"`
	MaxPos            *int             `json:"max_position_embeddings"`
	RMSNormEps        *float64         `json:"rms_norm_eps"`
	RopeTheta         *float64         `json:"rope_theta"`
	RopeScaling       *json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings *bool            `json:"tie_word_embeddings"`
	AttentionBias     *bool            `json:"attention_bias"`
	MLPBias           *bool            `json:"mlp_bias"`
	HiddenAct         *string          `json:"hidden_act"`
	UseSlidingWindow  *bool            `json:"use_sliding_window"`
	BOSTokenID        *int             `json:"bos_token_id"`
	EOSTokenID        json.RawMessage  `json:"eos_token_id"`
	PretrainingTP     *int             `json:"pretraining_tp"`
}

// LoadConfig reads and validates a config.json.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%s does not exist: %s is not a Hugging Face model folder", path, filepath.Dir(path))
	}
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(b, path)
}

// ParseConfig validates a config.json's bytes; name is used in errors. Anything serl cannot run
// faithfully is refused with an error that names the field.
func ParseConfig(data []byte, name string) (Config, error) {
	var r rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return Config{}, fmt.Errorf("%s: not a valid config.json: %w", name, err)
	}
	fail := func(field, format string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("%s: %s: %s", name, field, fmt.Sprintf(format, a...))
	}
	c := Config{raw: append([]byte(nil), data...)}
	switch r.ModelType {
	case "qwen2":
		c.Arch = Qwen2
	case "llama":
		c.Arch = Llama
	case "":
		return fail("model_type", "missing")
	default:
		return fail("model_type", "%q is not supported (serl runs qwen2 and llama)", r.ModelType)
	}
	for _, a := range r.Architectures {
		if a != "Qwen2ForCausalLM" && a != "LlamaForCausalLM" {
			return fail("architectures", "%q is not supported (want Qwen2ForCausalLM or LlamaForCausalLM)", a)
		}
	}
	req := func(field string, p *int, dst *int) error {
		if p == nil {
			return fmt.Errorf("%s: %s: missing", name, field)
		}
		if *p <= 0 {
			return fmt.Errorf("%s: %s: %d must be positive", name, field, *p)
		}
		*dst = *p
		return nil
	}
	for _, f := range []struct {
		field string
		p     *int
		dst   *int
	}{{"hidden_size", r.HiddenSize, &c.Hidden}, {"num_hidden_layers", r.NumLayers, &c.Layers},
		{"num_attention_heads", r.NumHeads, &c.Heads}, {"intermediate_size", r.Intermediate, &c.Intermediate},
		{"vocab_size", r.VocabSize, &c.Vocab}} {
		if err := req(f.field, f.p, f.dst); err != nil {
			return Config{}, err
		}
	}
	c.KVHeads = c.Heads
	if r.NumKVHeads != nil {
		if err := req("num_key_value_heads", r.NumKVHeads, &c.KVHeads); err != nil {
			return Config{}, err
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fail("num_key_value_heads", "%d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if r.HeadDim != nil {
		if err := req("head_dim", r.HeadDim, &c.HeadDim); err != nil {
			return Config{}, err
		}
		if c.Arch == Qwen2 && c.HeadDim != c.Hidden/c.Heads {
			// transformers' Qwen2 ignores head_dim and uses hidden/heads: a different value would be
			// silently misread by one side or the other.
			return fail("head_dim", "%d differs from hidden_size/num_attention_heads = %d, which qwen2 uses", c.HeadDim, c.Hidden/c.Heads)
		}
	} else {
		if c.Hidden%c.Heads != 0 {
			return fail("hidden_size", "%d is not divisible by num_attention_heads %d", c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim%2 != 0 {
		return fail("head_dim", "%d must be even for rotary embeddings", c.HeadDim)
	}
	c.MaxPositions = 32768
	if r.MaxPos != nil {
		if err := req("max_position_embeddings", r.MaxPos, &c.MaxPositions); err != nil {
			return Config{}, err
		}
	}
	c.RMSNormEps = 1e-6
	if r.RMSNormEps != nil {
		if !(*r.RMSNormEps > 0) || math.IsInf(*r.RMSNormEps, 0) {
			return fail("rms_norm_eps", "%v must be positive", *r.RMSNormEps)
		}
		c.RMSNormEps = *r.RMSNormEps
	}
	c.RopeTheta = 10000
	if r.RopeTheta != nil {
		if !(*r.RopeTheta > 0) || math.IsInf(*r.RopeTheta, 0) {
			return fail("rope_theta", "%v must be positive", *r.RopeTheta)
		}
		c.RopeTheta = *r.RopeTheta
	}
	if r.RopeScaling != nil && string(*r.RopeScaling) != "null" {
		var rs RopeScaling
		if err := json.Unmarshal(*r.RopeScaling, &rs); err != nil {
			return fail("rope_scaling", "%v", err)
		}
		typ := rs.RopeType
		if typ == "" {
			typ = rs.LegacyType
		}
		if typ != "llama3" {
			return fail("rope_scaling.rope_type", "%q is not supported (serl implements llama3 scaling only)", typ)
		}
		if !(rs.Factor > 0) || !(rs.LowFreqFactor > 0) || !(rs.HighFreqFactor > rs.LowFreqFactor) || rs.OriginalMaxPos <= 0 {
			return fail("rope_scaling", "llama3 scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
		}
		c.RopeScaling = &rs
	}
	if r.HiddenAct != nil && *r.HiddenAct != "silu" {
		return fail("hidden_act", "%q is not supported (want silu)", *r.HiddenAct)
	}
	if r.UseSlidingWindow != nil && *r.UseSlidingWindow {
		return fail("use_sliding_window", "sliding-window attention is not supported")
	}
	if r.PretrainingTP != nil && *r.PretrainingTP > 1 {
		return fail("pretraining_tp", "%d > 1 is not supported", *r.PretrainingTP)
	}
	c.TieEmbedding = r.TieWordEmbeddings != nil && *r.TieWordEmbeddings
	switch c.Arch {
	case Qwen2:
		c.QKVBias = true
	case Llama:
		c.QKVBias = r.AttentionBias != nil && *r.AttentionBias
		c.OBias = c.QKVBias
		c.MLPBias = r.MLPBias != nil && *r.MLPBias
	}
	c.BOS = -1
	if r.BOSTokenID != nil {
		c.BOS = *r.BOSTokenID
	}
	if len(r.EOSTokenID) > 0 && string(r.EOSTokenID) != "null" {
		var one int
		if err := json.Unmarshal(r.EOSTokenID, &one); err == nil {
			c.EOS = []int{one}
		} else if err := json.Unmarshal(r.EOSTokenID, &c.EOS); err != nil {
			return fail("eos_token_id", "want an integer or a list of integers")
		}
	}
	for _, id := range append(c.EOS, c.BOS) {
		if id >= c.Vocab {
			return fail("eos_token_id/bos_token_id", "id %d outside the vocabulary of %d", id, c.Vocab)
		}
	}
	return c, nil
}

// InvFreq is the rotary inverse-frequency table of length HeadDim/2, computed step by step in float32
// as Hugging Face does (torch casts the Python scalars to the tensor's float32), with Llama-3 scaling
// (transformers' _compute_llama3_parameters) applied.
func (c Config) InvFreq() []float32 {
	half := c.HeadDim / 2
	inv := make([]float32, half)
	for i := range inv {
		// 1.0 / (base ** (arange(0, dim, 2).float() / dim)); glibc's powf is correctly rounded, as is
		// rounding the float64 power once.
		e := float32(2*i) / float32(c.HeadDim)
		inv[i] = float32(1) / float32(math.Pow(c.RopeTheta, float64(e)))
	}
	if s := c.RopeScaling; s != nil {
		old := float32(s.OriginalMaxPos)
		low, high, factor := float32(s.LowFreqFactor), float32(s.HighFreqFactor), float32(s.Factor)
		lowWavelen := float32(float64(s.OriginalMaxPos) / s.LowFreqFactor)
		highWavelen := float32(float64(s.OriginalMaxPos) / s.HighFreqFactor)
		twoPi := float32(2 * math.Pi)
		for i, f := range inv {
			// torch evaluates scalar / tensor as reciprocal(tensor) · scalar, which rounds differently.
			wavelen := (1 / f) * twoPi
			scaled := f
			if wavelen > lowWavelen {
				scaled = f / factor
			}
			if !(wavelen < highWavelen) && !(wavelen > lowWavelen) {
				smooth := ((1/wavelen)*old - low) / (high - low)
				scaled = (1-smooth)*scaled/factor + smooth*scaled
			}
			inv[i] = scaled
		}
	}
	return inv
}
