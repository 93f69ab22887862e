// Package cachedir says where serl keeps what it unpacks from its binary (the native library, the
// built-in model): the user's cache directory, or, where that cannot be used, a per-user folder in
// the temporary directory, so that a read-only or missing home does not stop the binary from starting.
package cachedir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Candidates are the folders tried in order: $XDG_CACHE_HOME/serl (or the OS's user cache directory),
// then serl-<uid> in the temporary directory.
func Candidates() []string {
	var out []string
	if base, err := os.UserCacheDir(); err == nil && base != "" {
		out = append(out, filepath.Join(base, "serl"))
	}
	return append(out, filepath.Join(os.TempDir(), "serl-"+strconv.Itoa(os.Getuid())))
}

// Use calls put with each candidate folder until one succeeds and returns its result. put gets the
// folder and does its own creating and writing (a folder that already holds what it needs may be
// read-only). When every candidate fails, the error names each failure and the variable to set.
func Use(put func(dir string) (string, error)) (string, error) {
	var errs []string
	for _, dir := range Candidates() {
		out, err := put(dir)
		if err == nil {
			return out, nil
		}
		errs = append(errs, err.Error())
	}
	return "", fmt.Errorf("no usable cache directory (%s); set XDG_CACHE_HOME to a writable directory",
		strings.Join(errs, "; "))
}
