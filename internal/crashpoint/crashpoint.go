// Package crashpoint lets a test kill the process at a named point of its work, to prove that what
// serl writes survives a kill -9 anywhere (docs/RUNDIR.md).
//
// SERL_CRASH_AT=name[:n] sends SIGKILL to the process the n-th time (default the first) it reaches the
// point name; SERL_CRASH_TRACE=file appends the name of every point reached to file, so a test that
// kills at a random moment can tell where the kill landed. With neither variable set, Here costs one
// load and a compare.
package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var (
	once  sync.Once
	at    string // point to crash at
	nth   int
	trace *os.File

	mu    sync.Mutex
	count int
)

func setup() {
	if spec := os.Getenv("SERL_CRASH_AT"); spec != "" {
		at, nth = spec, 1
		if i := strings.LastIndexByte(spec, ':'); i > 0 {
			if n, err := strconv.Atoi(spec[i+1:]); err == nil && n > 0 {
				at, nth = spec[:i], n
			}
		}
	}
	if p := os.Getenv("SERL_CRASH_TRACE"); p != "" {
		trace, _ = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
}

// Here marks the point name: it records it in the trace and kills the process when it is the point
// SERL_CRASH_AT names, reached for the n-th time.
func Here(name string) {
	once.Do(setup)
	if trace != nil {
		trace.WriteString(name + "\n") // unbuffered: the line is in the file before any kill
	}
	if at != name {
		return
	}
	mu.Lock()
	count++
	hit := count == nth
	mu.Unlock()
	if hit {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; never return into the code that follows the point
	}
}
