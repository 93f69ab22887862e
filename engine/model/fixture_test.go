package model

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/internal/testenv"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/engine/safetensors"
	"github.com/serl-go/serl/kernels"
)

// The fixtures in testdata were made by testdata/gen_fixtures.py with PyTorch in float64 from the
// stored weights; these tests need no PyTorch.

type fixtureRef struct {
	Sequences []struct {
		IDs      []int32   `json:"ids"`
		LogProbs []float64 `json:"logprobs"`
	} `json:"sequences"`
	Loss      float64 `json:"loss"`
	GradsFile string  `json:"grads_file"`
	Rope      struct {
		InvFreq []float64 `json:"inv_freq"`
	} `json:"rope"`
}

func loadRef(t testing.TB, dir string) fixtureRef {
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	require.NoError(t, err)
	var r fixtureRef
	require.NoError(t, json.Unmarshal(b, &r))
	return r
}

func testDevice(t testing.TB) *kernels.Device { return testenv.CPU(t) }

// fixtureDevice runs the fixtures on CUDA too (SERL_TEST_DEVICES=cuda); they touch tensors only through
// uploads and downloads.
func fixtureDevice(t testing.TB) *kernels.Device { return testenv.Device(t) }

func packed(r fixtureRef) (ids []int32, lens []int) {
	for _, s := range r.Sequences {
		ids = append(ids, s.IDs...)
		lens = append(lens, len(s.IDs))
	}
	return ids, lens
}

// Float32 tolerances, 4× the worst error measured over the six fixtures (log-probs 4.99e-6 absolute,
// gradients 3.33e-6 relative L2; the same on the AVX-512 and the AVX2 paths).
const (
	f32LogProbTol = 2e-5
	f32GradTol    = 1.3e-5
)

// checkLogProbs runs the packed fixture batch and compares every predicted token's log-probability
// with the float64 reference: within f32LogProbTol absolute.
func checkLogProbs(t *testing.T, m *Model, r fixtureRef) *Activations {
	a, worst := forwardFixture(t, m, r)
	require.LessOrEqual(t, worst, f32LogProbTol, "log-probs: worst absolute error")
	return a
}

// forwardFixture runs the packed fixture batch and returns the arena and the worst absolute error of
// the predicted tokens' log-probabilities against the float64 reference.
func forwardFixture(t *testing.T, m *Model, r fixtureRef) (*Activations, float64) {
	ids, lens := packed(r)
	a, err := m.NewActivations(len(ids), len(lens))
	require.NoError(t, err)
	require.NoError(t, m.Forward(a, ids, lens))
	got := make([]float32, len(ids))
	require.NoError(t, a.LogProbs(got))
	off, worst, n := 0, 0.0, 0
	for _, s := range r.Sequences {
		require.Len(t, s.LogProbs, len(s.IDs)-1)
		for i, want := range s.LogProbs {
			worst = math.Max(worst, math.Abs(float64(got[off+i])-want))
			n++
		}
		require.Zero(t, got[off+len(s.IDs)-1], "last token of a sequence has no target")
		off += len(s.IDs)
	}
	require.Equal(t, len(ids)-len(lens), n, "every predicted token is compared")
	t.Logf("log-probs (%s): worst absolute error %.2e over %d tokens", m.Precision(), worst, n)
	return a, worst
}

// checkGrads runs the backward of the mean NLL and compares every parameter's gradient with the
// reference: relative L2 error within f32GradTol.
func checkGrads(t *testing.T, m *Model, a *Activations, r fixtureRef, dir string) {
	worst, name := gradError(t, m, a, r, dir, r.GradsFile)
	require.LessOrEqual(t, worst, f32GradTol, "gradient of %s: relative L2 error", name)
}

// gradError runs the backward of the mean NLL and returns the worst relative L2 error of a
// parameter's gradient against the reference in file (F64 or F32), and that parameter.
func gradError(t *testing.T, m *Model, a *Activations, r fixtureRef, dir, file string) (float64, string) {
	ids, lens := packed(r)
	n := len(ids) - len(lens)
	coef := make([]float32, len(ids))
	off := 0
	for _, l := range lens {
		for i := 0; i < l-1; i++ {
			coef[off+i] = -1 / float32(n)
		}
		off += l
	}
	g, err := m.NewGrads()
	require.NoError(t, err)
	defer g.Free()
	require.NoError(t, m.Backward(a, g, coef))
	ref, err := safetensors.Open(filepath.Join(dir, file))
	require.NoError(t, err)
	defer ref.Close()
	worst, worstName := 0.0, ""
	want := []float64{}
	for i, s := range g.Layout.Specs { // the model's layout, or its adapters'
		want = refFloats(t, ref, s.Name, s.Len, want)
		got := testenv.Read[float32](t, g.View(i))
		require.Len(t, got, s.Len, s.Name)
		var num, den float64
		for j, w := range want {
			num += (float64(got[j]) - w) * (float64(got[j]) - w)
			den += w * w
		}
		require.Positive(t, den, "reference gradient of %s is zero: nothing would be compared", s.Name)
		e := math.Sqrt(num / den)
		if !(e <= worst) { // a NaN error is the worst
			worst, worstName = e, s.Name
		}
	}
	t.Logf("gradients (%s vs %s): worst relative L2 error %.2e (%s) over %d tensors", m.Precision(), file, worst, worstName, len(g.Layout.Specs))
	return worst, worstName
}

// refFloats reads a reference tensor stored as F64 or F32 into dst.
func refFloats(t *testing.T, f *safetensors.File, name string, n int, dst []float64) []float64 {
	raw, err := f.Bytes(name)
	require.NoError(t, err, "reference tensor %s", name)
	dst = dst[:0]
	switch len(raw) {
	case 8 * n:
		for j := 0; j < n; j++ {
			dst = append(dst, math.Float64frombits(leU64(raw[8*j:])))
		}
	case 4 * n:
		for j := 0; j < n; j++ {
			dst = append(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))))
		}
	default:
		t.Fatalf("reference tensor %s: %d bytes for %d values", name, len(raw), n)
	}
	return dst
}

func leU64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

var fixtures = []string{"qwen2_f32", "qwen2_bf16", "qwen2_f16", "llama_f32", "llama_bf16", "llama_f16"}

func TestFixtures(t *testing.T) {
	d := fixtureDevice(t)
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			r := loadRef(t, dir)
			m, err := Load(d, dir)
			require.NoError(t, err)
			defer m.Free()
			inv := m.Config.InvFreq()
			for i, f := range r.Rope.InvFreq {
				require.Equal(t, float32(f), inv[i], "inv_freq[%d] must match HF's float32 computation bit for bit", i)
			}
			a := checkLogProbs(t, m, r)
			defer a.Free()
			checkGrads(t, m, a, r, dir)
		})
	}
}

// A model saved by serl and loaded again matches PyTorch in each dtype: the F32 fixture saved as BF16
// or F16 must reproduce the reference PyTorch computed from weights it rounded itself.
func TestSaveLoadRoundTrip(t *testing.T) {
	d := fixtureDevice(t)
	for _, fam := range []string{"qwen2", "llama"} {
		for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16, safetensors.F16} {
			t.Run(fmt.Sprintf("%s_%s", fam, dt), func(t *testing.T) {
				src, err := Load(d, filepath.Join("testdata", fam+"_f32"))
				require.NoError(t, err)
				out := filepath.Join(t.TempDir(), "saved")
				require.NoError(t, src.Save(out, dt))
				src.Free()
				m, err := Load(d, out)
				require.NoError(t, err)
				defer m.Free()
				refDir := filepath.Join("testdata", fmt.Sprintf("%s_%s", fam, map[safetensors.DType]string{
					safetensors.F32: "f32", safetensors.BF16: "bf16", safetensors.F16: "f16"}[dt]))
				r := loadRef(t, refDir)
				a := checkLogProbs(t, m, r)
				defer a.Free()
				checkGrads(t, m, a, r, refDir)
			})
		}
	}
}
