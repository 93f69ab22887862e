package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/model"
)

func TestBenchCLI(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"model_type":"qwen2","hidden_size":64,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":97}`), 0o644))
	for _, mode := range []string{"train", "score"} {
		code, out, errs := runCLI(t, "bench", "--config", cfg, "--mode", mode, "--batch", "2", "--seq", "16",
			"--warmup", "2", "--steps", "3", "--device", "cpu", "--json")
		require.Equal(t, 0, code, errs)
		require.Contains(t, errs, "memory plan:")
		var r benchResult
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		require.Equal(t, mode, r.Mode)
		require.Equal(t, 2, r.Batch)
		require.Equal(t, 16, r.Seq)
		require.Greater(t, r.TokensPerSec, 0.0)
		require.Greater(t, r.PeakRSS, int64(0))
		// The plan is every large allocation; the rest is RoPE's table and the optimizer's norm scalar.
		require.InDelta(t, r.PlanBytes, r.DevicePeak, 1024, "the device allocates the printed plan")
		require.InDelta(t, math.Log(97), r.LossFirst, 0.5, "a random model starts near log(vocab)")
		if mode == "train" {
			require.Less(t, r.LossLast, r.LossFirst, "AdamW steps lower the loss on the repeated batch")
		} else {
			require.Equal(t, r.LossFirst, r.LossLast, "scoring does not change the model")
		}
	}
	for _, prec := range []string{"f32", "bf16"} {
		code, out, errs := runCLI(t, "bench", "--config", cfg, "--mode", "decode", "--prompts", "3", "--samples", "2",
			"--new", "9", "--prompt-len", "5", "--warmup", "1", "--steps", "2", "--device", "cpu", "--precision", prec, "--json")
		require.Equal(t, 0, code, errs)
		var r decodeResult
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		require.Equal(t, decodeResult{Impl: "serl", Config: cfg, Mode: "decode", Prompts: 3, Samples: 2, PromptLen: 5, NewTokens: 9, MaxBatch: 6, Runs: 2},
			decodeResult{Impl: r.Impl, Config: r.Config, Mode: r.Mode, Prompts: r.Prompts, Samples: r.Samples, PromptLen: r.PromptLen,
				NewTokens: r.NewTokens, MaxBatch: r.MaxBatch, Runs: r.Runs})
		require.Equal(t, 8.0, r.DecodeSteps, "the first token comes from the prefill, the other 8 from one decode step each")
		require.Greater(t, r.TokensPerSec, 0.0)
		require.InDelta(t, r.PlanBytes, r.DevicePeak, 1024, "the device allocates the printed plan")
	}
	code, _, errs := runCLI(t, "bench", "--config", cfg, "--mode", "decode", "--prompt-len", "100000000", "--new", "200")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "exceeds max_position_embeddings")
	code, _, errs = runCLI(t, "bench", "--config", "XL")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "want S, M or a config.json path")
	code, _, _ = runCLI(t, "bench", "--mode", "eval")
	require.Equal(t, 2, code)
}

func TestBenchConfigs(t *testing.T) {
	// The parameter counts bench/torch_model.py reports for the same configurations.
	for name, want := range map[string]int{"S": 4002048, "M": 124684032} {
		c, B, T, err := benchModelConfig(name, 0, 0)
		require.NoError(t, err)
		require.Equal(t, benchConfigs[name].batch, B)
		require.Equal(t, benchConfigs[name].seq, T)
		require.Equal(t, 64, c.HeadDim)
		require.False(t, c.TieEmbedding)
		require.Equal(t, want, model.NewLayout(c).NumParams(), name)
	}
}

// The FLOP count MFU is quoted in, on the Qwen2.5-0.5B shape: 494,032,768 parameters (the tied
// embedding once), 24 layers of 14 × 64 attention channels; 1024-token sequences.
func TestFlopsPerToken(t *testing.T) {
	c, _, T, err := benchModelConfig("../../bench/qwen2.5-shapes/qwen2.5-0.5B/config.json", 16, 1024)
	require.NoError(t, err)
	n := model.NewLayout(c).NumParams()
	require.Equal(t, 494032768, n)
	require.Equal(t, 6*494032768.0+6*24*896*1024, flopsPerToken(c, n, T, true))
	require.Equal(t, 2*494032768.0+2*24*896*1024, flopsPerToken(c, n, T, false))
}
