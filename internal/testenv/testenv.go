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
	cpuOnce  sync.Once
	cpu      *kernels.Device
	cpuErr   error
	cudaOnce sync.Once
	cuda     *kernels.Device
	cudaErr  error
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

// Device returns the device that device-agnostic tests (the model fixtures, the end-to-end resume) run
// on: the CPU, or CUDA with SERL_TEST_DEVICES=cuda (the GPU routine, bench/gpu.sh, and the SIMT
// emulator in ./build.sh test), where a CUDA device that does not open fails the test.
func Device(t testing.TB) *kernels.Device {
	t.Helper()
	if os.Getenv("SERL_TEST_DEVICES") != "cuda" {
		return CPU(t)
	}
	cudaOnce.Do(func() { cuda, cudaErr = kernels.Open("cuda", 0) })
	if cudaErr != nil {
		t.Fatalf("SERL_TEST_DEVICES=cuda, but the CUDA device does not open: %v", cudaErr)
	}
	return cuda
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

// AllocsPerRun is testing.AllocsPerRun(runs, f), measured again (up to three times in all) while it is
// not 0, and the least of the measures. The counter behind it is the whole process's, so another
// goroutine's allocations (the finalizer goroutine closing a device an earlier test dropped, say) can
// land in a measure: a burst of as many as runs shows as one per run. Code that allocates does so in
// every measure, so the least is what f itself allocates.
func AllocsPerRun(t testing.TB, runs int, f func()) float64 {
	t.Helper()
	least := testing.AllocsPerRun(runs, f)
	for try := 1; try < 3 && least > 0; try++ {
		t.Logf("%g allocations per run: measuring again", least)
		least = min(least, testing.AllocsPerRun(runs, f))
	}
	return least
}
