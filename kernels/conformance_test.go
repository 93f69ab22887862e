package kernels

// The conformance suite, in the spirit of gonum's testblas: every op of every available backend runs
// against the pure-Go reference (kernels/ref) on random inputs of awkward sizes, with outputs poisoned
// first so that unwritten elements fail, and backward ops also against finite differences in float64.
// Each op's test file registers its cases with register(); TestConformance runs them all per backend.

import (
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

type conformanceCase struct {
	name string
	fn   func(t *testing.T, h *harness)
}

var suite []conformanceCase

func register(name string, fn func(t *testing.T, h *harness)) {
	suite = append(suite, conformanceCase{name, fn})
}

// awkward are sizes that catch tail handling: one, primes, and non-multiples of every vector width.
var awkward = []int{1, 2, 3, 7, 17, 31, 33, 64, 127, 257}

var (
	devOnce sync.Once
	devs    []*Device
	devErr  error
	cudaErr error // why the CUDA backend did not open (nil when it did)
)

// testDevices opens the CPU backend (required) and the CUDA backend when its library loads and a GPU
// answers. SERL_TEST_DEVICES=cpu restricts the suite to the CPU; SERL_TEST_DEVICES=cuda runs it on
// CUDA only and fails when CUDA does not open (the GPU routine, bench/gpu.sh, sets it).
func testDevices(t testing.TB) []*Device {
	devOnce.Do(func() {
		d, err := Open("cpu", 0)
		if err != nil {
			devErr = err
			return
		}
		devs = append(devs, d)
		if os.Getenv("SERL_TEST_DEVICES") != "cpu" {
			g, err := Open("cuda", 0)
			if err == nil {
				devs = append(devs, g)
			}
			cudaErr = err
		}
	})
	if devErr != nil {
		t.Fatalf("cannot open the CPU device (run ./build.sh first): %v", devErr)
	}
	if os.Getenv("SERL_TEST_DEVICES") == "cuda" && cudaErr != nil {
		t.Fatalf("SERL_TEST_DEVICES=cuda, but the CUDA device does not open: %v", cudaErr)
	}
	return devs
}

// cudaDevice is the CUDA device, or a skip ("skipped: no GPU") where none answers.
func cudaDevice(t testing.TB) *Device {
	t.Helper()
	for _, d := range testDevices(t) {
		if d.Backend() == "cuda" {
			return d
		}
	}
	why := "SERL_TEST_DEVICES=cpu"
	if cudaErr != nil {
		why = cudaErr.Error()
	}
	t.Skipf("skipped: no GPU (%s)", why)
	return nil
}

func cpuDevice(t testing.TB) *Device { return testDevices(t)[0] }

func TestConformance(t *testing.T) {
	sort.SliceStable(suite, func(i, j int) bool { return suite[i].name < suite[j].name })
	for _, d := range testDevices(t) {
		if os.Getenv("SERL_TEST_DEVICES") == "cuda" && d.Backend() != "cuda" {
			continue
		}
		t.Run(d.Backend(), func(t *testing.T) {
			t.Logf("%s: %s, %d threads, %s", d.Backend(), d.Info().Name, d.Info().Threads, d.Info().SIMD)
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) {
					c.fn(t, newHarness(t, d))
				})
			}
		})
	}
}

// harness allocates device tensors for one test and frees them when it ends.
type harness struct {
	t   *testing.T
	d   *Device
	rng *rand.Rand
}

func newHarness(t *testing.T, d *Device) *harness {
	return &harness{t: t, d: d, rng: rand.New(rand.NewPCG(uint64(len(t.Name())), 0x5e71))}
}

// emulated reports the SIMT emulator (csrc/cudaemu): the CUDA library's own kernels on CPU fibers, which
// `./build.sh test` runs the suite on where nvcc exists. It is thousands of times slower than a GPU, so
// the few cases sized for a GPU's grid limits run smaller there or not at all (each says which); the
// CPU backend and a real GPU run them whole.
func (h *harness) emulated() bool {
	return h.d.Backend() == "cuda" && strings.Contains(h.d.Info().Name, "SIMT emulator")
}

func (h *harness) alloc(dt DType, dims ...int) Tensor {
	h.t.Helper()
	x, err := h.d.Alloc(dt, dims...)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { h.d.Free(x) })
	return x
}

// f32 uploads host data as a tensor of the given shape (a flat one when dims is empty).
func (h *harness) f32(data []float32, dims ...int) Tensor {
	h.t.Helper()
	if len(dims) == 0 {
		dims = []int{len(data)}
	}
	x := h.alloc(F32, dims...)
	require.NoError(h.t, Upload(x, data))
	return x
}

func (h *harness) i32(data []int32, dims ...int) Tensor {
	h.t.Helper()
	if len(dims) == 0 {
		dims = []int{len(data)}
	}
	x := h.alloc(I32, dims...)
	require.NoError(h.t, Upload(x, data))
	return x
}

// poisoned is an F32 tensor full of NaN, so any element an op fails to write fails the comparison.
func (h *harness) poisoned(dims ...int) Tensor {
	h.t.Helper()
	x := h.alloc(F32, dims...)
	nan := make([]float32, x.Len())
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	require.NoError(h.t, Upload(x, nan))
	return x
}

func (h *harness) get(x Tensor) []float32 {
	h.t.Helper()
	out := make([]float32, x.Len())
	require.NoError(h.t, Download(out, x))
	return out
}

// randn is n normal samples times scale.
func (h *harness) randn(n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(h.rng.NormFloat64() * scale)
	}
	return x
}

// relErr is the normwise relative error max|got−want| / max|want| (NaN or Inf anywhere → +Inf).
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			if !(math.IsInf(w, 0) && g == w) {
				return math.Inf(1)
			}
			continue
		}
		num = math.Max(num, math.Abs(g-w))
		den = math.Max(den, math.Abs(w))
	}
	if num == 0 {
		return 0
	}
	return num / math.Max(den, 1e-30)
}

// requireClose fails unless got matches want within the normwise relative tolerance.
func requireClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	require.Equal(t, len(want), len(got), "%s: length", what)
	if e := relErr(got, want); !(e <= tol) {
		worst, wi := -1.0, 0
		for i := range want {
			d := math.Abs(float64(got[i]) - float64(want[i]))
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			if d > worst {
				worst, wi = d, i
			}
		}
		t.Fatalf("%s: relative error %.3g > %.3g (worst at %d: got %g, want %g)", what, e, tol, wi, got[wi], want[wi])
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// fdCheck compares an analytic gradient with central differences of loss in float64 at up to samples
// coordinates: the normwise relative error over those coordinates must be within tol.
func (h *harness) fdCheck(what string, loss func(x []float64) float64, x []float64, grad []float32, samples int, tol float64) {
	t := h.t
	t.Helper()
	idx := h.rng.Perm(len(x))
	if len(idx) > samples {
		idx = idx[:samples]
	}
	got := make([]float32, len(idx))
	want := make([]float32, len(idx))
	for j, i := range idx {
		x0 := x[i]
		step := 1e-6 * math.Max(1, math.Abs(x0))
		x[i] = x0 + step
		lp := loss(x)
		x[i] = x0 - step
		lm := loss(x)
		x[i] = x0
		want[j] = float32((lp - lm) / (2 * step))
		got[j] = grad[i]
	}
	if e := relErr(got, want); !(e <= tol) {
		t.Fatalf("%s: gradient vs finite differences: relative error %.3g > %.3g", what, e, tol)
	}
}

// dot is Σ a·b in float64, the scalar loss L = ⟨dy, y⟩ whose gradient backward ops compute.
func dot[T ~float32 | ~float64](a []float64, b []T) float64 {
	var s float64
	for i := range a {
		s += a[i] * float64(b[i])
	}
	return s
}

// requireOpError requires an error (a Go-side check or a native status), never a crash, and returns it.
// An error in tensor contents that a GPU finds on the device comes at the next synchronisation, so
// without one from the call itself the test devices are synchronised and must report it then.
func requireOpError(t *testing.T, what string, err error) error {
	t.Helper()
	if err == nil {
		for _, d := range testDevices(t) {
			err = firstErr(err, d.Sync())
		}
	}
	require.Error(t, err, "%s: want an error", what)
	return err
}
