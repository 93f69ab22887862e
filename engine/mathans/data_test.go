package mathans

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"
)

func sharedData(t testing.TB) string { return testenv.SharedData(t) }

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
