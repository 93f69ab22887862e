package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/loader"
)

func fixtureDir(t *testing.T, name string) string {
	return filepath.Join(loader.RepoRoot(), "engine", "model", "testdata", name)
}

type fixtureRef struct {
	Sequences []struct {
		IDs      []int32   `json:"ids"`
		LogProbs []float64 `json:"logprobs"`
	} `json:"sequences"`
}

func writeIDs(t *testing.T, dir string, ref fixtureRef) string {
	var b strings.Builder
	for _, s := range ref.Sequences {
		line, _ := json.Marshal(map[string]any{"ids": s.IDs})
		b.Write(line)
		b.WriteByte('\n')
	}
	p := filepath.Join(t.TempDir(), "in.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

func readRef(t *testing.T, dir string) fixtureRef {
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	require.NoError(t, err)
	var r fixtureRef
	require.NoError(t, json.Unmarshal(b, &r))
	return r
}

// The CLI's tolerances against the float64 references: those of engine/model's fixture tests
// (4× the measured worst error in each precision).
var cliTol = map[string]struct{ logprob, grad float64 }{"f32": {2e-5, 1.3e-5}, "bf16": {0.35, 0.2}}

// serl logprobs reproduces PyTorch's log-probabilities through the CLI, in small batches too, in either
// precision.
func TestLogprobsCLI(t *testing.T) {
	dir := fixtureDir(t, "llama_f32")
	ref := readRef(t, dir)
	in := writeIDs(t, dir, ref)
	for _, prec := range []string{"f32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			code, out, errs := runCLI(t, "logprobs", "--device", "cpu", "--model", dir, "--in", in, "--batch-tokens", "300", "--precision", prec)
			require.Equal(t, 0, code, errs)
			require.Contains(t, errs, "memory plan")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, len(ref.Sequences))
			worst := 0.0
			for i, line := range lines {
				var rec struct{ Logprobs []float64 }
				require.NoError(t, json.Unmarshal([]byte(line), &rec))
				require.Len(t, rec.Logprobs, len(ref.Sequences[i].LogProbs))
				for j, v := range rec.Logprobs {
					worst = math.Max(worst, math.Abs(ref.Sequences[i].LogProbs[j]-v))
				}
			}
			t.Logf("%s: worst absolute error %.3g", prec, worst)
			require.LessOrEqual(t, worst, cliTol[prec].logprob)
		})
	}
}

// serl grad writes the gradient of the mean NLL under HF names, matching PyTorch, in either precision.
func TestGradCLI(t *testing.T) {
	dir := fixtureDir(t, "qwen2_f32")
	ref := readRef(t, dir)
	in := writeIDs(t, dir, ref)
	for _, prec := range []string{"f32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "g.safetensors")
			code, _, errs := runCLI(t, "grad", "--device", "cpu", "--model", dir, "--in", in, "--out", out, "--batch-tokens", "260", "--precision", prec)
			require.Equal(t, 0, code, errs)
			got, err := safetensors.Open(out)
			require.NoError(t, err)
			defer got.Close()
			want, err := safetensors.Open(filepath.Join(dir, "grads.safetensors"))
			require.NoError(t, err)
			defer want.Close()
			require.ElementsMatch(t, want.Names(), got.Names())
			for _, name := range want.Names() {
				info, _ := got.Tensor(name)
				g := make([]float32, info.NumElements())
				require.NoError(t, got.Float32(name, g))
				raw, err := want.Bytes(name)
				require.NoError(t, err)
				var num, den float64
				for i := range g {
					w := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
					num += (float64(g[i]) - w) * (float64(g[i]) - w)
					den += w * w
				}
				require.LessOrEqual(t, math.Sqrt(num/den), cliTol[prec].grad, name)
			}
		})
	}
}

func TestInfoModelPlan(t *testing.T) {
	sizes := []string{"--train-batch", "4", "--max-batch", "8", "--max-prompt-tokens", "64", "--max-new-tokens", "64", "--instr-max-new-tokens", "32"}
	code, out, errs := runCLI(t, append([]string{"info", "--device", "cpu", "--model", fixtureDir(t, "qwen2_f32")}, sizes...)...)
	require.Equal(t, 0, code, errs)
	for _, s := range []string{"qwen2", "in f32", "policy", "reference", "gradients", "AdamW first moment", "activations (512 tokens, 4 sequences)",
		"generation: KV cache", "generation: workspace", "generation: sampler", "evaluation: KV cache", "total"} {
		require.Contains(t, out, s)
	}
	require.NotRegexp(t, `\sbf16\s+[\d.]+ (B|KiB|MiB|GiB)`, out, "no bf16 blob in an f32 plan")
	code, out, errs = runCLI(t, append([]string{"info", "--device", "cpu", "--model", fixtureDir(t, "qwen2_f32"), "--precision", "bf16"}, sizes...)...)
	require.Equal(t, 0, code, errs)
	for _, s := range []string{"in bf16", "policy (master)", "policy (bf16 copy the ops read)", "reference: RMSNorm weights"} {
		require.Contains(t, out, s)
	}
	require.Regexp(t, `generation: KV cache \(\d+ blocks of 16 tokens\) +bf16`, out)
	// With no KL term, serl train holds no reference model.
	code, out, errs = runCLI(t, append([]string{"info", "--device", "cpu", "--model", fixtureDir(t, "qwen2_f32"), "--kl", "0"}, sizes...)...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "policy")
	require.NotContains(t, out, "reference")
	// The batch fitted to free memory is serl train's to choose (it counts the evaluation set).
	code, _, errs = runCLI(t, "info", "--device", "cpu", "--model", fixtureDir(t, "qwen2_f32"), "--max-batch", "0")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--max-batch 0")
	require.Contains(t, errs, "serl train --plan")
	code, _, errs = runCLI(t, "info", "--device", "cpu", "--precision", "f16")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--precision")
}

func TestModelCLIErrors(t *testing.T) {
	dir := fixtureDir(t, "qwen2_f32")
	code, _, errs := runCLI(t, "logprobs", "--model", dir)
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--in")
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("{\"ids\":[1,2]}\n{\"ids\":[1,999]}\n"), 0o644))
	code, _, errs = runCLI(t, "logprobs", "--device", "cpu", "--model", dir, "--in", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errs, "outside the vocabulary")
	require.NoError(t, os.WriteFile(bad, []byte("{\"ids\":[1,2]}\n{\"ids\":[1,\n"), 0o644))
	code, _, errs = runCLI(t, "logprobs", "--device", "cpu", "--model", dir, "--in", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errs, bad)
	require.Contains(t, errs, "line 2")
}
