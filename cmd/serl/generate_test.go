package main

import (
	"encoding/json"
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
