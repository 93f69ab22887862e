package pretrain

import (
	"encoding/json"
	"fmt"

	"github.com/serl-go/serl/engine/model"
)

// Config is everything a run depends on; it is written to the run folder and a resumed run reads it
// back, so the continuation trains exactly as the original would have.
type Config struct {
	Seed  uint64 `json:"seed"`
	Steps int    `json:"steps"`

	// Model (Qwen2 architecture, tied embeddings).
	Hidden       int     `json:"hidden_size"`
	Layers       int     `json:"num_hidden_layers"`
	Heads        int     `json:"num_attention_heads"`
	KVHeads      int     `json:"num_key_value_heads"`
	Intermediate int     `json:"intermediate_size"`
	MaxPositions int     `json:"max_position_embeddings"`
	RopeTheta    float64 `json:"rope_theta"`
	InitStd      float64 `json:"initializer_range"`

	// Tokenizer.
	VocabSize     int `json:"vocab_size"`     // BPE vocabulary including the special tokens
	TokenizerDocs int `json:"tokenizer_docs"` // corpus documents the tokenizer is trained on

	// Data.
	SelfInstructShare float64 `json:"self_instruct_share"`
	InstructMinNew    int     `json:"instruct_min_new"` // new problems a self-instruction answer writes, at least
	InstructMaxNew    int     `json:"instruct_max_new"` // and at most
	// LevelWeights draws training problems' levels (nil: the source's own mix).
	LevelWeights []float64 `json:"level_weights,omitempty"`
	// DirectShare and ListShare are the fractions of solving documents that answer without working and
	// that number their steps "1) …" (Corpus.DirectShare).
	DirectShare float64 `json:"direct_share,omitempty"`
	ListShare   float64 `json:"list_share,omitempty"`
	// DirectEndings are the question endings that may be answered at once (Corpus.DirectEndings).
	DirectEndings []string `json:"direct_endings,omitempty"`
	MaxSeqLen     int      `json:"max_seq_len"` // longer documents are skipped
	// ProblemLoss trains on the problem text of solving documents too (Encoder.ProblemLoss).
	ProblemLoss bool `json:"problem_loss"`

	// Optimisation.
	LR          float64 `json:"lr"`
	WarmupRatio float64 `json:"warmup_ratio"`
	MinLRRatio  float64 `json:"min_lr_ratio"`
	WeightDecay float64 `json:"weight_decay"`
	ClipNorm    float64 `json:"clip_norm"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	BatchTokens int     `json:"batch_tokens"` // tokens per optimizer step (whole documents, at least this many)
	MicroTokens int     `json:"micro_tokens"` // tokens per forward/backward pass
	MicroSeqs   int     `json:"micro_seqs"`   // sequences per forward/backward pass

	// Monitoring and checkpoints.
	EvalEvery        int `json:"eval_every"`     // steps between held-out evaluations (0: only at the end)
	EvalProblems     int `json:"eval_problems"`  // held-out problems evaluated each time
	EvalMaxNewTokens int `json:"eval_max_new"`   // response budget
	SaveEvery        int `json:"save_every"`     // steps between checkpoints (0: only at the end)
	LogEvery         int `json:"log_every"`      // steps between metrics lines
	EvalMaxBatch     int `json:"eval_max_batch"` // sequences decoded together in evaluation
	Threads          int `json:"threads,omitempty"`
	// Precision is f32 or bf16 (model.ParsePrecision); "" (runs from before it existed) is f32.
	Precision string `json:"precision,omitempty"`

	// Init is the Hugging Face model folder the run starts from ("": a new model, randomly
	// initialised). Its tokenizer is the run's (none is trained) and its config.json gives the model
	// shape, which the shape settings above then record.
	Init string `json:"init,omitempty"`
	// LoRA (needs Init): with LoRARank > 0 the Init model is the frozen base and only adapters of this
	// rank (alpha, targets: model.LoRAConfig) are trained — the same adapters as serl train's.
	model.LoRASettings
}

// precision is the run's model precision.
func (c Config) precision() model.Precision {
	p, _ := model.ParsePrecision(c.Precision)
	return p
}

// DefaultConfig is the built-in model's recipe.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Steps: 4000,
		Hidden: 256, Layers: 4, Heads: 4, KVHeads: 2, Intermediate: 704, MaxPositions: 1024, RopeTheta: 10000,
		InitStd:   0.02,
		VocabSize: 1024, TokenizerDocs: 3000,
		SelfInstructShare: 0.1, InstructMinNew: 3, InstructMaxNew: 6, MaxSeqLen: 1024, ProblemLoss: true,
		LevelWeights: []float64{2, 3, 3, 2, 2}, DirectShare: 0.5, ListShare: 0.25, DirectEndings: []string{"now", "have", "left", "of"},
		LR: 3e-3, WarmupRatio: 0.03, MinLRRatio: 0.1, WeightDecay: 0.01, ClipNorm: 1, Beta1: 0.9, Beta2: 0.95,
		BatchTokens: 4096, MicroTokens: 2048, MicroSeqs: 32,
		EvalEvery: 500, EvalProblems: 50, EvalMaxNewTokens: 320, SaveEvery: 100, LogEvery: 1, EvalMaxBatch: 64,
	}
}

// Validate refuses settings a run cannot use.
func (c Config) Validate() error {
	switch {
	case c.Steps < 1:
		return fmt.Errorf("pretrain: steps %d", c.Steps)
	case c.Hidden < 1 || c.Layers < 1 || c.Heads < 1 || c.KVHeads < 1 || c.Heads%c.KVHeads != 0 || c.Hidden%c.Heads != 0 || (c.Hidden/c.Heads)%2 != 0:
		return fmt.Errorf("pretrain: model shape hidden %d, heads %d/%d", c.Hidden, c.Heads, c.KVHeads)
	case c.Intermediate < 1:
		return fmt.Errorf("pretrain: intermediate size %d", c.Intermediate)
	case c.VocabSize < 256+len(SpecialTokens):
		return fmt.Errorf("pretrain: vocab %d is smaller than the 256 bytes and %d special tokens", c.VocabSize, len(SpecialTokens))
	case c.MaxSeqLen < 16 || c.MaxSeqLen > c.MaxPositions:
		return fmt.Errorf("pretrain: max sequence length %d (context %d)", c.MaxSeqLen, c.MaxPositions)
	case c.MicroTokens < c.MaxSeqLen:
		return fmt.Errorf("pretrain: micro-batch of %d tokens cannot hold a %d-token document", c.MicroTokens, c.MaxSeqLen)
	case c.MicroSeqs < 1:
		return fmt.Errorf("pretrain: micro_seqs %d: want at least 1 document per micro-batch", c.MicroSeqs)
	case c.BatchTokens < 1:
		return fmt.Errorf("pretrain: batch tokens %d", c.BatchTokens)
	case c.SelfInstructShare < 0 || c.SelfInstructShare > 1:
		return fmt.Errorf("pretrain: self-instruction share %g", c.SelfInstructShare)
	case c.DirectShare < 0 || c.ListShare < 0 || c.DirectShare+c.ListShare > 1:
		return fmt.Errorf("pretrain: direct-answer share %g and list share %g: want non-negative shares summing to at most 1", c.DirectShare, c.ListShare)
	case !validEndings(c.DirectEndings):
		return fmt.Errorf("pretrain: direct-answer endings %q: want lower-case words of letters a-z", c.DirectEndings)
	case !validWeights(c.LevelWeights):
		return fmt.Errorf("pretrain: level weights %v: want non-negative weights with a positive sum", c.LevelWeights)
	case c.InstructMinNew < 1 || c.InstructMaxNew < c.InstructMinNew:
		return fmt.Errorf("pretrain: %d to %d new problems per self-instruction answer", c.InstructMinNew, c.InstructMaxNew)
	case !(c.LR > 0) || c.TokenizerDocs < 1:
		return fmt.Errorf("pretrain: lr %g, tokenizer docs %d", c.LR, c.TokenizerDocs)
	}
	if c.Precision != "" {
		if _, err := model.ParsePrecision(c.Precision); err != nil {
			return fmt.Errorf("pretrain: %w", err)
		}
	}
	if c.LoRARank < 0 {
		return fmt.Errorf("pretrain: lora_rank %d < 0", c.LoRARank)
	}
	if lc := c.LoRA(); lc != nil {
		if c.Init == "" {
			return fmt.Errorf("pretrain: LoRA (lora_rank %d) needs a base model to adapt: give init (--init DIR)", c.LoRARank)
		}
		if err := lc.Validate(); err != nil {
			return fmt.Errorf("pretrain: lora: %w", err)
		}
	}
	return nil
}

// modelConfig is the config.json of the model: Qwen2 with tied embeddings, BOS <|endoftext|> and both
// end tokens as EOS (Qwen2.5-Instruct's convention).
func (c Config) modelConfig(vocab int, bos, imEnd, eot int32) []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"architectures":           []string{"Qwen2ForCausalLM"},
		"model_type":              "qwen2",
		"hidden_act":              "silu",
		"hidden_size":             c.Hidden,
		"intermediate_size":       c.Intermediate,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"max_position_embeddings": c.MaxPositions,
		"max_window_layers":       c.Layers,
		"rms_norm_eps":            1e-6,
		"rope_theta":              c.RopeTheta,
		"sliding_window":          c.MaxPositions,
		"use_sliding_window":      false,
		"tie_word_embeddings":     true,
		"vocab_size":              vocab,
		"bos_token_id":            bos,
		"eos_token_id":            []int32{imEnd, eot},
		"initializer_range":       c.InitStd,
		"attention_dropout":       0.0,
		"use_cache":               true,
		"torch_dtype":             "float32",
	}, "", "  ")
	return b
}

func validWeights(ws []float64) bool {
	if len(ws) == 0 {
		return true
	}
	var sum float64
	for _, w := range ws {
		if !(w >= 0) {
			return false
		}
		sum += w
	}
	return sum > 0
}

// validEndings: each ending must be a word QuestionEnding can return.
func validEndings(ws []string) bool {
	for _, w := range ws {
		if w == "" || QuestionEnding(w) != w {
			return false
		}
	}
	return true
}
