package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTable(t *testing.T) {
	root := t.TempDir()
	write := func(run string, it int, k int, p1, maj float64) {
		dir := filepath.Join(root, run)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		body := fmt.Sprintf(`{"k":%d,"overall":{"n":10,"pass@1":%g,"maj@k":%g},"levels":[{"level":1,"n":5,"pass@1":%g,"maj@k":%g},{"level":2,"n":5,"pass@1":0,"maj@k":0}]}`,
			k, p1, maj, 2*p1, 2*maj)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("eval_iter%d.json", it)), []byte(body), 0o644))
	}
	write("serl_reinforce++_s1", 0, 16, 0.30, 0.40)
	write("serl_reinforce++_s2", 0, 16, 0.32, 0.42)
	write("serl_reinforce++_s1", 1, 0, 0.34, 0)
	write("serl_reinforce++_s2", 1, 0, 0.36, 0)
	// Other settings sample maj@K after training only (bench/results.sh: --eval-k-before=false).
	write("gt7500_s1", 0, 0, 0.30, 0)
	write("gt7500_s1", 1, 16, 0.40, 0.45)
	var b strings.Builder
	require.NoError(t, run(root, &b))
	out := b.String()
	require.Contains(t, out, "| setting | seeds | overall pass@1 | overall maj@16 |")
	require.Contains(t, out, "| base model | 2 | 31.0 ±1.4 | 41.0 ±1.4 | 62.0 ±2.8 / 82.0 ±2.8 | 0.0 ±0.0 / 0.0 ±0.0 |")
	require.Contains(t, out, "| SeRL reinforce++ (100 seeds), iteration 1 | 2 | 35.0 ±1.4 | — |")
	require.Contains(t, out, "| gt, 7,500 labelled, iteration 1 | 1 | 40.0 | 45.0 |")
}
