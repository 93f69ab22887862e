// Package testenv is what serl's tests share: one CPU device per test binary and the location of the
// shared data set beside the repository.
package testenv

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/serl-go/serl/kernels"
	"github.com/serl-go/serl/loader"
)

var (
	cpuOnce sync.Once
	cpu     *kernels.Device
	cpuErr  error
)

// CPU returns the test binary's shared CPU device, failing the test when the native library is missing.
func CPU(t testing.TB) *kernels.Device {
	t.Helper()
	cpuOnce.Do(func() { cpu, cpuErr = kernels.Open("cpu", 0) })
	if cpuErr != nil {
		t.Fatalf("cpu device (run ./build.sh first): %v", cpuErr)
	}
	return cpu
}

// SharedData is ../shared/data beside the repository root. Where it is absent the test is skipped on a
// developer's machine, but fails under CI (CI=true), which always has it.
func SharedData(t testing.TB) string {
	t.Helper()
	root := loader.RepoRoot()
	if root == "" {
		t.Fatal("not inside the serl repository: cannot locate ../shared/data")
	}
	d := filepath.Join(root, "..", "shared", "data")
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared data directory %s missing under CI: %v", d, err)
		}
		t.Skipf("shared data directory %s not present (CI provides it): %v", d, err)
	}
	return d
}
