package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The standalone binary starts where the user cache directory cannot be written: the library goes to
// the temporary directory instead.
func TestExtractEmbeddedFallsBack(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(file, "cache")) // under a regular file: not even root can write
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	image := []byte("not really a library")
	p, err := extractEmbedded("libserl_test.so", image)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(p, tmp+string(filepath.Separator)), p)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, image, b)
}
