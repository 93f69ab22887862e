package archtest

import (
	"bufio"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The layers of docs/ARCHITECTURE.md, bottom up. Production code imports down only and skips no
// layer it must not see: loader knows no tensors, kernels no models, engine no loader and no purego,
// cmd only kernels and engine. Tests may reach further down for fixtures (the repository root, a
// system library to compare with), never up.
const (
	rankLoader = iota + 1
	rankKernels
	rankEngine
	rankCmd
)

const purego = "github.com/ebitengine/purego"

// pkgRule says where a directory of the repository sits and what its production files may import
// from serl (and whether purego).
type pkgRule struct {
	rank   int             // for the test-file rule: tests import nothing of a higher rank
	allow  map[string]bool // serl packages (module-relative, "engine/..." meaning any under engine/) it may import
	purego bool
}

func allow(pkgs ...string) map[string]bool {
	m := map[string]bool{}
	for _, p := range pkgs {
		m[p] = true
	}
	return m
}

// ruleFor classifies a package directory (module-relative, slash-separated). A directory outside
// every layer is an error: a new top-level place for Go code must be given its rule here.
func ruleFor(dir string) (pkgRule, bool) {
	under := func(p string) bool { return dir == p || strings.HasPrefix(dir, p+"/") }
	switch {
	case under("loader"):
		return pkgRule{rank: rankLoader, allow: allow(), purego: true}, true
	case under("kernels/ref"):
		// The pure-Go reference: nothing native at all.
		return pkgRule{rank: rankKernels, allow: allow()}, true
	case under("kernels"):
		return pkgRule{rank: rankKernels, allow: allow("loader", "kernels/...")}, true
	case under("engine/dist"):
		// Data parallelism: the engine's one door to a communication library, through loader/mpi's raw
		// MPI binding (never serl's kernel loader, never purego itself).
		return pkgRule{rank: rankEngine, allow: allow("kernels", "loader/mpi", "engine/...")}, true
	case under("engine"):
		return pkgRule{rank: rankEngine, allow: allow("kernels", "kernels/ref", "engine/...")}, true
	case under("cmd"):
		return pkgRule{rank: rankCmd, allow: allow("kernels", "engine/...")}, true
	case dir == "internal/testenv":
		// Test support (a shared CPU device, the repository's shared data); imported by tests only.
		return pkgRule{rank: rankKernels, allow: allow("loader", "kernels")}, true
	case isLeaf(dir) || dir == "internal/archtest":
		// Leaves import nothing of serl, so every layer may use them without creating a cycle.
		return pkgRule{rank: rankLoader, allow: allow()}, true
	case under("tools"):
		// Build-time generators and report tools: standalone commands, imported by nothing.
		return pkgRule{rank: rankCmd, allow: allow("kernels", "engine/...")}, true
	}
	return pkgRule{}, false
}

// isLeaf reports an internal utility package (crash-safe writes, the cache directory, …): it imports
// nothing of serl and every layer may import it.
func isLeaf(pkg string) bool {
	return strings.HasPrefix(pkg, "internal/") && pkg != "internal/testenv" && pkg != "internal/archtest"
}

// rankOf is the layer of an imported serl package, for the test-file rule.
func rankOf(pkg string) int {
	if r, ok := ruleFor(pkg); ok {
		return r.rank
	}
	return 0
}

func (r pkgRule) allows(pkg string) bool {
	if r.allow[pkg] {
		return true
	}
	for p := range r.allow {
		if base, ok := strings.CutSuffix(p, "/..."); ok && (pkg == base || strings.HasPrefix(pkg, base+"/")) {
			return true
		}
	}
	return false
}

type goFile struct {
	path    string   // module-relative, slash-separated
	dir     string   // its package directory, module-relative
	test    bool     // a _test.go file
	imports []string // import paths as written
}

// repoFiles parses the imports of every Go file under root, whatever its build constraints (go list
// would miss cmd/serl/embed.go, built only with -tags serl_embed), skipping build output, testdata
// and hidden directories.
func repoFiles(t *testing.T, root string) []goFile {
	t.Helper()
	var out []goFile
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(must(filepath.Rel(root, p)))
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" ||
				name == "vendor" || rel == "build" || rel == "bin" || rel == "cmd/serl/embedded") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return fmt.Errorf("parse %s: %w", rel, err)
		}
		g := goFile{path: rel, dir: filepath.ToSlash(filepath.Dir(rel)), test: strings.HasSuffix(p, "_test.go")}
		for _, im := range f.Imports {
			ip, err := strconv.Unquote(im.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: import %s: %w", rel, im.Path.Value, err)
			}
			g.imports = append(g.imports, ip)
		}
		out = append(out, g)
		return nil
	})
	require.NoError(t, err)
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// modulePath reads the module line of root/go.mod.
func modulePath(t *testing.T, root string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the repository root is two levels above internal/archtest")
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}

// violations applies the layer rules to files and returns one line per forbidden import.
func violations(files []goFile, module string) []string {
	var bad []string
	for _, f := range files {
		if f.dir == "." {
			bad = append(bad, fmt.Sprintf("%s: Go code at the repository root belongs to no layer", f.path))
			continue
		}
		rule, ok := ruleFor(f.dir)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: %s belongs to no layer; give it a rule in internal/archtest", f.path, f.dir))
			continue
		}
		for _, ip := range f.imports {
			own, isSerl := strings.CutPrefix(ip, module+"/")
			switch {
			case ip == purego && !f.test && !rule.purego:
				bad = append(bad, fmt.Sprintf("%s imports purego: only loader binds native symbols", f.path))
			case !isSerl:
			case own == "internal/testenv" && !f.test:
				bad = append(bad, fmt.Sprintf("%s imports internal/testenv: test support, for _test.go files only", f.path))
			case strings.HasPrefix(own, "tools/") || strings.HasPrefix(own, "cmd/"):
				bad = append(bad, fmt.Sprintf("%s imports %s: commands and tools are imported by nothing", f.path, own))
			case isLeaf(own) && !isLeaf(f.dir):
			case f.test:
				if r := rankOf(own); r == 0 || r > rule.rank {
					bad = append(bad, fmt.Sprintf("%s (test) imports %s: tests may reach down the layers, never up", f.path, own))
				}
			case !rule.allows(own):
				bad = append(bad, fmt.Sprintf("%s imports %s: not allowed from %s", f.path, own, f.dir))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestImportGraph: csrc → loader → kernels → engine → cmd, arrows down only, with no exception.
func TestImportGraph(t *testing.T) {
	root := must(filepath.Abs(filepath.Join("..", "..")))
	module := modulePath(t, root)
	files := repoFiles(t, root)

	// The walk must see the layers, including the files behind build tags, or the test proves nothing.
	seen := map[string]bool{}
	for _, f := range files {
		seen[f.path] = true
		seen[f.dir] = true
	}
	for _, p := range []string{"loader", "kernels", "kernels/ref", "engine/model", "engine/selfplay", "cmd/serl",
		"cmd/serl/embed.go", "cmd/serl/embed_cuda.go"} {
		require.True(t, seen[p], "%s not found under %s", p, root)
	}

	bad := violations(files, module)
	require.Empty(t, bad, "imports that break the layering (docs/ARCHITECTURE.md, \"Layers\"):\n%s", strings.Join(bad, "\n"))
}

// TestImportRulesCatch shows that each rule fires: a checker that passes everything would pass the
// real tree too.
func TestImportRulesCatch(t *testing.T) {
	const mod = "example.com/serl"
	cases := []struct {
		file goFile
		want string // a substring of the one violation, "" for none
	}{
		{goFile{path: "engine/x/a.go", dir: "engine/x", imports: []string{mod + "/loader"}}, "not allowed from engine/x"},
		{goFile{path: "engine/x/a.go", dir: "engine/x", imports: []string{purego}}, "only loader binds"},
		{goFile{path: "engine/x/a.go", dir: "engine/x", imports: []string{mod + "/cmd/serl"}}, "imported by nothing"},
		{goFile{path: "kernels/a.go", dir: "kernels", imports: []string{mod + "/engine/model"}}, "not allowed from kernels"},
		{goFile{path: "kernels/ref/a.go", dir: "kernels/ref", imports: []string{mod + "/loader"}}, "not allowed from kernels/ref"},
		{goFile{path: "loader/a.go", dir: "loader", imports: []string{mod + "/kernels"}}, "not allowed from loader"},
		{goFile{path: "cmd/serl/embed.go", dir: "cmd/serl", imports: []string{mod + "/loader"}}, "not allowed from cmd/serl"},
		{goFile{path: "cmd/serl/a.go", dir: "cmd/serl", imports: []string{mod + "/internal/testenv"}}, "for _test.go files only"},
		{goFile{path: "kernels/a_test.go", dir: "kernels", test: true, imports: []string{mod + "/engine/model"}}, "never up"},
		{goFile{path: "loader/a_test.go", dir: "loader", test: true, imports: []string{mod + "/internal/testenv"}}, "never up"},
		{goFile{path: "newdir/a.go", dir: "newdir"}, "belongs to no layer"},
		{goFile{path: "main.go", dir: "."}, "repository root"},
		{goFile{path: "engine/x/a.go", dir: "engine/x", imports: []string{mod + "/kernels", mod + "/engine/model", "fmt"}}, ""},
		{goFile{path: "cmd/serl/embed.go", dir: "cmd/serl", imports: []string{mod + "/kernels"}}, ""},
		{goFile{path: "loader/a.go", dir: "loader", imports: []string{mod + "/internal/cachedir"}}, ""},
		{goFile{path: "engine/x/a.go", dir: "engine/x", imports: []string{mod + "/internal/atomicfile"}}, ""},
		{goFile{path: "internal/leaf/a.go", dir: "internal/leaf", imports: []string{mod + "/kernels"}}, "not allowed from internal/leaf"},
		{goFile{path: "internal/leaf/a.go", dir: "internal/leaf", imports: []string{mod + "/internal/other"}}, "not allowed from internal/leaf"},
		{goFile{path: "cmd/serl/a_test.go", dir: "cmd/serl", test: true, imports: []string{mod + "/loader"}}, ""},
		{goFile{path: "kernels/a_test.go", dir: "kernels", test: true, imports: []string{purego, mod + "/kernels/ref"}}, ""},
	}
	for _, c := range cases {
		got := violations([]goFile{c.file}, mod)
		if c.want == "" {
			require.Empty(t, got, "%s %v", c.file.path, c.file.imports)
			continue
		}
		require.Len(t, got, 1, "%s %v", c.file.path, c.file.imports)
		require.Contains(t, got[0], c.want)
	}
}
