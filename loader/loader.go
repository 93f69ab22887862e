// Package loader finds, verifies and dlopens serl's native libraries and binds their symbols with
// purego, without cgo. It knows the ABI's entry points and statuses, nothing of tensors.
//
// Discovery order (docs/ARCHITECTURE.md, "Building and loading"): $SERL_LIB_DIR, the directory of the executable,
// the repository's build/ directory, then the copy embedded in the binary. A candidate that is absent is
// skipped; one that is present but fails to load or has the wrong ABI version is an error, never a
// silent fallback to the next.
package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
)

// Library is one loaded native backend library.
type Library struct {
	Path    string // the file that was dlopened
	Backend string // "cpu" or "cuda", as the library reports it
	handle  uintptr

	mu   sync.Mutex
	syms map[string]uintptr
}

// FileName is the library file name of a backend, e.g. libserl_cpu.so.
func FileName(backend string) string { return "libserl_" + backend + ".so" }

var (
	embeddedMu sync.Mutex
	embedded   = map[string][]byte{}
	openMu     sync.Mutex
	opened     = map[string]*Library{}
)

// RegisterEmbedded makes a library image available as the last discovery candidate. cmd/serl calls it,
// through kernels.RegisterEmbedded, with the libraries that build.sh embeds in the binary.
func RegisterEmbedded(backend string, image []byte) {
	embeddedMu.Lock()
	defer embeddedMu.Unlock()
	embedded[backend] = image
}

// Open loads the library of a backend ("cpu", "cuda") from the first candidate location that has it.
// Libraries stay loaded for the life of the process; Open returns the same Library on later calls.
func Open(backend string) (*Library, error) {
	if backend != "cpu" && backend != "cuda" {
		return nil, fmt.Errorf("loader: unknown backend %q (want cpu or cuda)", backend)
	}
	openMu.Lock()
	defer openMu.Unlock()
	if l := opened[backend]; l != nil {
		return l, nil
	}
	embeddedMu.Lock()
	image := embedded[backend]
	embeddedMu.Unlock()
	dirs, err := searchDirs()
	if err != nil {
		return nil, err
	}
	l, err := openFrom(FileName(backend), dirs, image)
	if err != nil {
		return nil, err
	}
	opened[backend] = l
	return l, nil
}

// openFrom loads name from the first of dirs that has it, else from the embedded image.
func openFrom(name string, dirs []searchDir, image []byte) (*Library, error) {
	var tried []string
	for _, dir := range dirs {
		p := filepath.Join(dir.path, name)
		if _, err := os.Stat(p); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%s: not found)", p, dir.why))
			continue
		}
		return OpenPath(p)
	}
	if image == nil {
		tried = append(tried, "embedded copy (none in this binary)")
		return nil, fmt.Errorf("loader: cannot find %s; tried:\n  %s\nbuild it with ./build.sh or set SERL_LIB_DIR",
			name, strings.Join(tried, "\n  "))
	}
	p, err := extractEmbedded(name, image)
	if err != nil {
		return nil, err
	}
	return OpenPath(p)
}

type searchDir struct{ path, why string }

// searchDirs lists the candidate directories. $SERL_LIB_DIR, when set, must be a directory: a wrong one
// (a typo, a path relative to another working directory) would otherwise pass silently to the next
// candidate. Within it a library may be absent: it may hold one backend's library and not the other's.
func searchDirs() ([]searchDir, error) {
	var dirs []searchDir
	if d := os.Getenv("SERL_LIB_DIR"); d != "" {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("loader: SERL_LIB_DIR=%s is not a directory (a relative path is taken from the working directory)", d)
		}
		dirs = append(dirs, searchDir{d, "$SERL_LIB_DIR"})
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			dirs = append(dirs, searchDir{filepath.Dir(exe), "executable's directory"})
		}
	}
	if root := RepoRoot(); root != "" {
		dirs = append(dirs, searchDir{filepath.Join(root, "build"), "repository build/"})
	}
	return dirs, nil
}

// RepoRoot returns the serl repository containing the working directory (the nearest ancestor whose
// go.mod declares module github.com/serl-go/serl), or "" outside one.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/serl-go/serl\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// OpenPath dlopens one library file and checks its ABI version.
func OpenPath(path string) (*Library, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("loader: dlopen %s: %w", path, err)
	}
	l := &Library{Path: path, handle: h, syms: map[string]uintptr{}}
	verFn, err := l.Sym("serl_abi_version")
	if err != nil {
		return nil, err
	}
	r, _, _ := purego.SyscallN(verFn)
	if v := int32(r); v != ABIVersion {
		return nil, fmt.Errorf("loader: %s has ABI version %d, this serl needs version %d; rebuild it with ./build.sh",
			path, v, ABIVersion)
	}
	be, err := l.Sym("serl_backend")
	if err != nil {
		return nil, err
	}
	r, _, _ = purego.SyscallN(be)
	l.Backend = GoString(r)
	return l, nil
}

// Sym returns the address of an exported symbol, or an error naming the symbol and the library
// (purego's RegisterLibFunc would panic instead).
func (l *Library) Sym(name string) (uintptr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p, ok := l.syms[name]; ok {
		return p, nil
	}
	p, err := purego.Dlsym(l.handle, name)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("loader: %s does not export %s", l.Path, name)
	}
	l.syms[name] = p
	return p, nil
}
