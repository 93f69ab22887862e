package cachedir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// An unusable cache directory (here under a regular file, which even root cannot write into) falls
// back to the temporary directory; when nothing works the error says what to set.
func TestUseFallsBack(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(file, "cache"))
	t.Setenv("TMPDIR", t.TempDir())
	c := Candidates()
	require.Equal(t, []string{filepath.Join(file, "cache", "serl"), filepath.Join(os.Getenv("TMPDIR"), "serl-"+strconv.Itoa(os.Getuid()))}, c)

	put := func(dir string) (string, error) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		return dir, os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644)
	}
	got, err := Use(put)
	require.NoError(t, err)
	require.Equal(t, c[1], got)

	_, err = Use(func(dir string) (string, error) { return "", errors.New("no room in " + dir) })
	require.ErrorContains(t, err, "no room in "+c[0])
	require.ErrorContains(t, err, "no room in "+c[1])
	require.ErrorContains(t, err, "set XDG_CACHE_HOME")
}
