package selfinstruct

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// sharedData finds ../shared/data next to the module root (the directory
// holding go.mod), skipping the test when the data is not there.
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
			t.Skip("no go.mod above the working directory; cannot locate ../shared/data")
		}
		dir = parent
	}
	data := filepath.Join(dir, "..", "shared", "data")
	if _, err := os.Stat(data); err != nil {
		t.Skipf("shared data not found at %s (expected next to the repository): %v", data, err)
	}
	return data
}

// loadSeeds reads the `problem` field of every line of math/seed500.jsonl.
func loadSeeds(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(sharedData(t), "math", "seed500.jsonl"))
	if err != nil {
		t.Skipf("seed500.jsonl not available: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var rec struct {
			Problem string `json:"problem"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		out = append(out, rec.Problem)
	}
	require.NoError(t, sc.Err())
	return out
}
