package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/serl-go/serl/internal/crashpoint"
)

// LockFile is the file a run directory's owner holds an flock on; it holds the owner's pid.
const LockFile = "lock"

// Lock is the exclusive ownership of a run directory by this process. The kernel drops it when the
// process exits, however it exits, so a killed run leaves no stale lock.
type Lock struct {
	f   *os.File
	dir string
}

// BusyError says that another live process owns the run directory.
type BusyError struct {
	Dir string
	PID int // 0 when it could not be read
}

func (e *BusyError) Error() string {
	owner := "another process"
	if e.PID > 0 {
		owner = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("run directory %s is in use by %s (it holds the lock on %s)", e.Dir, owner, filepath.Join(e.Dir, LockFile))
}

// Acquire takes dir's lock at once or fails with a *BusyError naming the owner's pid.
func Acquire(dir string) (*Lock, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint: run directory %s does not exist", dir)
	} else if err != nil {
		return nil, fmt.Errorf("checkpoint: run directory %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &BusyError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("checkpoint: locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, dir: dir}, nil
}

// Dir is the locked run directory.
func (l *Lock) Dir() string { return l.dir }

// Release gives the run directory up (the lock file stays, empty of meaning).
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}

// Create makes the run directory path, which must not exist or be empty, all at once: fill writes its
// first contents into a locked temporary folder beside it, which is then renamed to path. A start that
// fails or is killed leaves no run directory (only a hidden temporary that the next Create of the same
// path removes), so it can always be started again. The returned lock owns path.
func Create(path string, fill func(dir string) error) (*Lock, error) {
	path = filepath.Clean(path)
	if entries, err := os.ReadDir(path); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("run directory %s exists and is not empty (resume it, or choose another)", path)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("run directory %w", err)
	}
	parent, base := filepath.Dir(path), filepath.Base(path)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	prefix := "." + base + ".new-"
	if stale, err := filepath.Glob(filepath.Join(parent, globEscape(prefix)+"*")); err == nil {
		for _, s := range stale {
			if l, err := Acquire(s); err == nil { // a live start of the same path keeps its folder
				os.RemoveAll(s)
				l.Release()
			}
		}
	}
	tmp, err := os.MkdirTemp(parent, prefix+"*")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes 0700 folders
		os.RemoveAll(tmp)
		return nil, err
	}
	l, err := Acquire(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	fail := func(err error) (*Lock, error) {
		os.RemoveAll(tmp)
		l.Release()
		return nil, err
	}
	if err := fill(tmp); err != nil {
		return fail(err)
	}
	if err := syncDir(tmp); err != nil {
		return fail(err)
	}
	crashpoint.Here("rundir.filled")
	taken := func(err error) (*Lock, error) {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return fail(fmt.Errorf("run directory %s was made by another process meanwhile", path))
		}
		return fail(fmt.Errorf("run directory %w", err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) { // an empty folder
		return taken(err)
	}
	if err := os.Rename(tmp, path); err != nil { // the lock's file moves with the folder
		return taken(err)
	}
	syncDir(parent) // the run directory is complete either way; this only makes its name durable sooner
	l.dir = path
	return l, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}
