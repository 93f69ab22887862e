package selfinstruct

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"
)

func sharedData(t testing.TB) string { return testenv.SharedData(t) }

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
