package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestGradePair(t *testing.T) {
	code, out, _ := runCLI(t, "grade", "--gold", `\frac{1}{2}`, "--pred", `The answer is $\boxed{0.5}$.`)
	require.Equal(t, 0, code)
	require.Equal(t, "1\n", out)
	code, out, _ = runCLI(t, "grade", "--gold", "3", "--pred", `\boxed{4}`)
	require.Equal(t, 0, code)
	require.Equal(t, "0\n", out)
}

func TestGradeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pairs.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(`{"gold":"2","pred":"\\boxed{2}"}`+"\n"+`{"gold":"2","pred":"\\boxed{3}"}`+"\n"), 0o644))
	code, out, _ := runCLI(t, "grade", "--in", p)
	require.Equal(t, 0, code)
	require.Equal(t, "1\n0\n", out)

	require.NoError(t, os.WriteFile(p, []byte(`{"gold":"2","pred":"\\boxed{2}"}`+"\n"+`{"gold": oops`+"\n"), 0o644))
	code, _, errs := runCLI(t, "grade", "--in", p)
	require.Equal(t, 1, code)
	require.Contains(t, errs, p)
	require.Contains(t, errs, "line 2")
}

func TestGradeUsage(t *testing.T) {
	code, _, errs := runCLI(t, "grade", "--gold", "1")
	require.Equal(t, 2, code)
	require.Contains(t, errs, "--pred")
	code, _, _ = runCLI(t, "nonsense")
	require.Equal(t, 2, code)
}
