package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/loader"
)

// serl generate --temperature 0 reproduces PyTorch's greedy continuation of the fixture.
func TestGenerateGreedyCLI(t *testing.T) {
	dir := fixtureDir(t, "llama_f32")
	b, err := os.ReadFile(filepath.Join(dir, "greedy.json"))
	require.NoError(t, err)
	var g struct{ Prompt, Continuation []int32 }
	require.NoError(t, json.Unmarshal(b, &g))
	ids := strings.Trim(strings.ReplaceAll(strings.Trim(string(mustJSON(g.Prompt)), "[]"), " ", ""), ",")
	code, out, errs := runCLI(t, "generate", "--device", "cpu", "--model", dir, "--ids", ids, "--temperature", "0",
		"--max-new-tokens", "16", "--json")
	require.Equal(t, 0, code, errs)
	var rec struct {
		Tokens []int32
		Finish string
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &rec))
	// The fixture's EOS ids (2, 3) may stop it early; the tokens drawn must be the reference's prefix.
	require.Equal(t, g.Continuation[:len(rec.Tokens)], rec.Tokens)
}

// In either precision, the log-probabilities serl generate reports for its samples (KV-cache decode)
// are those serl logprobs computes for the same sequences (the packed training forward). The
// fixture's greedy margins (down to 0.005) are far below bf16's error, so bf16 is checked against its
// own scoring rather than against PyTorch's argmax.
func TestGenerateLogprobsMatchScoring(t *testing.T) {
	dir := fixtureDir(t, "qwen2_f32")
	prompt := []int32{5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21} // 17 tokens: a partly filled block
	ids := strings.Trim(strings.ReplaceAll(string(mustJSON(prompt)), " ", ""), "[]")
	// 4× the measured worst: 2.7e-6 (f32), 0.0078 (bf16).
	for prec, tol := range map[string]float64{"f32": 1e-5, "bf16": 0.03} {
		t.Run(prec, func(t *testing.T) {
			code, out, errs := runCLI(t, "generate", "--device", "cpu", "--model", dir, "--ids", ids, "--n", "3", "--seed", "5",
				"--temperature", "1", "--max-new-tokens", "40", "--json", "--precision", prec)
			require.Equal(t, 0, code, errs)
			var in strings.Builder
			var samples [][]float64
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var rec struct {
					Tokens   []int32
					Logprobs []float64
				}
				require.NoError(t, json.Unmarshal([]byte(line), &rec))
				in.Write(mustJSON(map[string]any{"ids": append(append([]int32{}, prompt...), rec.Tokens...)}))
				in.WriteByte('\n')
				samples = append(samples, rec.Logprobs)
			}
			path := filepath.Join(t.TempDir(), "in.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(in.String()), 0o644))
			code, out, errs = runCLI(t, "logprobs", "--device", "cpu", "--model", dir, "--in", path, "--precision", prec)
			require.Equal(t, 0, code, errs)
			worst := 0.0
			for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var rec struct{ Logprobs []float64 }
				require.NoError(t, json.Unmarshal([]byte(line), &rec))
				scored := rec.Logprobs[len(prompt)-1:]
				require.Len(t, scored, len(samples[i]))
				for j, v := range samples[i] {
					worst = math.Max(worst, math.Abs(v-scored[j]))
				}
			}
			t.Logf("%s: generate vs logprobs, worst absolute difference %.3g", prec, worst)
			require.LessOrEqual(t, worst, tol)
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestGenerateSeededSamples(t *testing.T) {
	dir := fixtureDir(t, "qwen2_f32")
	args := []string{"generate", "--device", "cpu", "--model", dir, "--ids", "5,6,7,8", "--n", "4", "--seed", "3",
		"--max-new-tokens", "12", "--json"}
	code, a, errs := runCLI(t, args...)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "1 prefill(s)")
	code, b, _ := runCLI(t, args...)
	require.Equal(t, 0, code)
	require.Equal(t, a, b, "same seed, same samples")
	require.Len(t, strings.Split(strings.TrimSpace(a), "\n"), 4)
}

func TestTokenizeCLI(t *testing.T) {
	dir := filepath.Join(loader.RepoRoot(), "engine", "tokenizer", "testdata", "llama3")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatalf("tokenizer fixture missing: %v", err)
	}
	code, out, errs := runCLI(t, "tokenize", "--model", dir, "--text", "What is 12 + 30?")
	require.Equal(t, 0, code, errs)
	var ids []int32
	require.NoError(t, json.Unmarshal([]byte(out), &ids))
	require.NotEmpty(t, ids)
	var s []string
	for _, id := range ids[1:] { // skip BOS
		s = append(s, string(mustJSON(id)))
	}
	code, text, errs := runCLI(t, "tokenize", "--model", dir, "--decode", strings.Join(s, ","))
	require.Equal(t, 0, code, errs)
	require.Equal(t, "What is 12 + 30?\n", text)
	code, _, _ = runCLI(t, "tokenize", "--model", dir, "--decode", "1,x")
	require.Equal(t, 2, code)
	code, _, errs = runCLI(t, "tokenize", "--model", dir, "--decode", "99999999")
	require.Equal(t, 1, code)
	require.NotEmpty(t, errs)
}
