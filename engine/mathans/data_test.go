package mathans

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// sharedData finds ../shared/data next to the module root (the directory
// holding go.mod), or skips the test.
func sharedData(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("go.mod not found above the test directory; cannot locate ../shared/data")
		}
		dir = parent
	}
	d := filepath.Join(dir, "..", "shared", "data")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("shared data directory %s not present (CI provides it): %v", d, err)
	}
	return d
}

// readJSONL decodes every line of a JSONL file into T.
func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var x T
		require.NoError(t, json.Unmarshal(sc.Bytes(), &x), "line %d of %s", len(out)+1, path)
		out = append(out, x)
	}
	require.NoError(t, sc.Err())
	return out
}
