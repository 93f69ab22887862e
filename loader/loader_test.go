package loader

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeLib compiles a tiny shared library from C source, standing in for a serl library built from
// another version of the header.
func fakeLib(t *testing.T, src string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc is required to build test libraries: %v", err)
	}
	dir := t.TempDir()
	c := filepath.Join(dir, "fake.c")
	require.NoError(t, os.WriteFile(c, []byte(src), 0o644))
	so := filepath.Join(dir, "libserl_cpu.so")
	out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", so, c).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return so
}

func TestWrongABIVersion(t *testing.T) {
	so := fakeLib(t, `int serl_abi_version(void){return 999;} const char*serl_backend(void){return "cpu";}`)
	_, err := OpenPath(so)
	require.Error(t, err)
	require.Contains(t, err.Error(), "ABI version 999")
	require.Contains(t, err.Error(), fmt.Sprintf("needs version %d", ABIVersion))
	require.Contains(t, err.Error(), so)
}

func TestMissingSymbol(t *testing.T) {
	so := fakeLib(t, `int something_else(void){return 1;}`)
	_, err := OpenPath(so)
	require.ErrorContains(t, err, "does not export serl_abi_version")
}

func TestNotALibrary(t *testing.T) {
	p := filepath.Join(t.TempDir(), "libserl_cpu.so")
	require.NoError(t, os.WriteFile(p, []byte("not an ELF file"), 0o644))
	_, err := OpenPath(p)
	require.ErrorContains(t, err, p)
}

func TestNothingFoundNamesEveryPath(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	_, err := openFrom("libserl_cpu.so", []searchDir{{a, "$SERL_LIB_DIR"}, {b, "executable's directory"}}, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), filepath.Join(a, "libserl_cpu.so"))
	require.Contains(t, err.Error(), filepath.Join(b, "libserl_cpu.so"))
	require.Contains(t, err.Error(), "embedded copy (none in this binary)")
}

// A SERL_LIB_DIR that is not a directory is an error naming it, not a reason to look elsewhere.
func TestLibDirMustExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	t.Setenv("SERL_LIB_DIR", missing)
	_, err := searchDirs()
	require.ErrorContains(t, err, "SERL_LIB_DIR="+missing+" is not a directory")

	dir := t.TempDir()
	t.Setenv("SERL_LIB_DIR", dir)
	dirs, err := searchDirs()
	require.NoError(t, err)
	require.Equal(t, searchDir{dir, "$SERL_LIB_DIR"}, dirs[0])
}

// A present library with the wrong ABI is an error, not a reason to go on to the next candidate.
func TestNoSilentFallback(t *testing.T) {
	so := fakeLib(t, `int serl_abi_version(void){return 7;} const char*serl_backend(void){return "cpu";}`)
	good := t.TempDir()
	_, err := openFrom("libserl_cpu.so", []searchDir{{filepath.Dir(so), "$SERL_LIB_DIR"}, {good, "other"}}, []byte("x"))
	require.ErrorContains(t, err, "ABI version 7")
}

func realLibrary(t *testing.T) []byte {
	t.Helper()
	root := RepoRoot()
	require.NotEmpty(t, root, "tests run inside the repository")
	b, err := os.ReadFile(filepath.Join(root, "build", "libserl_cpu.so"))
	require.NoError(t, err, "run ./build.sh first")
	return b
}

func TestEmbeddedExtraction(t *testing.T) {
	image := realLibrary(t)
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	l, err := openFrom("libserl_cpu.so", nil, image)
	require.NoError(t, err)
	require.Equal(t, "cpu", l.Backend)
	require.True(t, filepath.IsAbs(l.Path))
	rel, err := filepath.Rel(cache, l.Path)
	require.NoError(t, err)
	require.Regexp(t, `^serl/[0-9a-f]{16}/libserl_cpu\.so$`, rel)

	// A damaged cached copy is detected by its hash and written again before use.
	require.NoError(t, os.WriteFile(l.Path, []byte("damaged"), 0o644))
	p, err := extractEmbedded("libserl_cpu.so", image)
	require.NoError(t, err)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, image, got)
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "*.tmp-*"))
	require.Empty(t, leftovers, "no temporary files left behind")
}

func TestOpenFindsRepositoryBuild(t *testing.T) {
	realLibrary(t)
	l, err := Open("cpu")
	require.NoError(t, err)
	require.Equal(t, "cpu", l.Backend)
	_, err = Open("tpu")
	require.ErrorContains(t, err, "unknown backend")
}
