package main

import (
	"debug/buildinfo"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/serl-go/serl/engine/evaluate"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/loader"
)

// serl calls native code through purego only: no Go file of the repository may import "C", whatever
// its build tags.
func TestNoPackageImportsC(t *testing.T) {
	root := loader.RepoRoot()
	require.NotEmpty(t, root)
	files := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "build" || e.Name() == "bin" || e.Name() == "testdata") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			require.NotEqual(t, "C", path, "%s imports \"C\"", p)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, files, 10)
}

// bin/serl, as build.sh makes it, is built with CGO_ENABLED=0 and the pinned toolchain.
func TestBinaryBuiltWithoutCgo(t *testing.T) {
	root := loader.RepoRoot()
	bin := filepath.Join(root, "bin", "serl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run ./build.sh (./build.sh test builds it before testing)", bin)
	}
	info, err := buildinfo.ReadFile(bin)
	require.NoError(t, err)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	require.Equal(t, "0", settings["CGO_ENABLED"], "bin/serl was built with cgo")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(gomod), "\n") {
		if v, ok := strings.CutPrefix(line, "toolchain "); ok {
			require.Equal(t, strings.TrimSpace(v), info.GoVersion, "bin/serl was not built with the pinned toolchain")
		}
	}
}

// The binary runs with no file beside it: outside the repository, it loads the native library it
// carries, extracted to the user cache directory.
func TestBinaryUsesEmbeddedLibrary(t *testing.T) {
	root := loader.RepoRoot()
	src, err := os.ReadFile(filepath.Join(root, "bin", "serl"))
	require.NoError(t, err, "run ./build.sh first")
	dir := t.TempDir()
	bin := filepath.Join(dir, "serl")
	require.NoError(t, os.WriteFile(bin, src, 0o755))
	cache := t.TempDir()
	cmd := exec.Command(bin, "info", "--device", "cpu")
	cmd.Dir = dir
	cmd.Env = append(filteredEnv("SERL_LIB_DIR", "XDG_CACHE_HOME"), "XDG_CACHE_HOME="+cache)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), filepath.Join(cache, "serl"))
	require.Contains(t, string(out), "libserl_cpu.so")

	// The built-in model too: with no file but the binary, it unpacks into the cache and answers.
	cmd = exec.Command(bin, "generate", "--device", "cpu", "--chat", "--system", evaluate.SystemPrompt,
		"--prompt", "Evaluate 2 + 3.", "--temperature", "0", "--max-new-tokens", "64")
	cmd.Dir = dir
	cmd.Env = append(filteredEnv("SERL_LIB_DIR", "XDG_CACHE_HOME"), "XDG_CACHE_HOME="+cache)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "built-in model")
	require.Contains(t, string(out), filepath.Join(cache, "serl", "model-"))
	require.Contains(t, string(out), `\boxed{`)
}

func filteredEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}
