package model

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/internal/testenv"
	"github.com/serl-go/serl/kernels"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// headRun is the log-probs and gradients of the fixture batch's mean NLL with the head in chunks of
// chunk tokens (0: the default budget), by Forward then Backward, and the matrix products the whole pass
// ran.
func headRun(t *testing.T, m *Model, r fixtureRef, chunk int) (logp []float32, grads [][]float32, C, products int) {
	return headRunBy(t, m, r, chunk, headUnfused, nil)
}

// The ways headRunBy runs the gradient pass.
const (
	headUnfused = iota // Forward, then Backward
	headHost           // GradHost: the coefficients before the forward
	headGrad           // Grad: each chunk's coefficients from its log-probs, on the host
)

// headRunBy is headRun by the way given, with the coefficients coefOf(logp, t) of each token (the mean
// NLL's when nil); headGrad wants coefOf and checks the chunks Grad asks for: each once, from the last.
func headRunBy(t *testing.T, m *Model, r fixtureRef, chunk, way int, coefOf func(logp float32) float32) (logp []float32, grads [][]float32, C, products int) {
	if chunk > 0 {
		old := headChunkBytes
		headChunkBytes = chunk * m.Config.Vocab * m.opts.Precision.Act().Size()
		defer func() { headChunkBytes = old }()
	}
	ids, lens := packed(r)
	T := len(ids)
	a, err := m.NewActivations(T, len(lens))
	require.NoError(t, err)
	defer a.Free()
	coef := make([]float32, T)
	mean := func(float32) float32 { return -1 / float32(T) } // positions without a target are ignored
	if coefOf == nil {
		coefOf = mean
	}
	g, err := m.NewGrads()
	require.NoError(t, err)
	defer g.Free()
	m.dev.SetProfiling(true)
	switch way {
	case headUnfused:
		require.NoError(t, m.Forward(a, ids, lens))
		lp := make([]float32, T)
		require.NoError(t, a.LogProbs(lp))
		for i := range coef {
			coef[i] = coefOf(lp[i])
		}
		require.NoError(t, m.Backward(a, g, coef))
	case headHost:
		for i := range coef {
			coef[i] = coefOf(0)
		}
		require.NoError(t, m.GradHost(a, g, ids, lens, coef))
	case headGrad:
		next := T // the chunks come from the last, each ending where the one before began
		require.NoError(t, m.Grad(a, g, ids, lens, func(t0, t1 int) error {
			require.Equal(t, next, t1, "chunk [%d, %d)", t0, t1)
			next = t0
			lp := testenv.Read[float32](t, a.LogProbTensor().MustSlice(t0, t1))
			for i, v := range lp {
				coef[t0+i] = coefOf(v)
			}
			return kernels.Upload(a.Coef().MustSlice(t0, t1), coef[t0:t1])
		}))
		require.Zero(t, next, "the chunks cover the batch")
	}
	for _, st := range m.dev.Profile() {
		if st.Op == "matmul" {
			products = int(st.Calls)
		}
	}
	m.dev.SetProfiling(false)
	logp = make([]float32, T)
	require.NoError(t, a.LogProbs(logp))
	for i := range g.Layout.Specs {
		grads = append(grads, testenv.Read[float32](t, g.View(i)))
	}
	return logp, grads, a.logits.Dim(0), products
}

// headCases are the models the head's tests run: both families, f32 and bf16, with and without LoRA.
var headCases = []struct {
	fam  string
	o    Options
	lora bool
}{
	{"qwen2", Options{}, false}, {"llama", Options{}, false},
	{"qwen2", Options{Precision: PrecisionBF16}, false}, {"llama", Options{Precision: PrecisionBF16}, false},
	{"qwen2", Options{Frozen: true}, true}, {"llama", Options{Frozen: true, Precision: PrecisionBF16}, true},
}

// headModel loads a fixture model (with the LoRA fixture's adapters when lora) and its reference.
func headModel(t *testing.T, fam string, o Options, lora bool) (*Model, fixtureRef) {
	if lora {
		m, r, _ := loadLoRAFixture(t, fam, o)
		return m, r
	}
	dir := filepath.Join("testdata", fam+"_f32")
	m, err := LoadWith(fixtureDevice(t), dir, o)
	require.NoError(t, err)
	return m, loadRef(t, dir)
}

// ppoLikeCoef is a coefficient of the log-prob itself, as a PPO coefficient is (−ρ·A/T with ρ =
// exp(logp − old)).
func ppoLikeCoef(lp float32) float32 { return -float32(math.Exp(float64(lp)+0.5)) / 64 }

// shortSkips says whether -short (the emulated GPU of ./build.sh test and of bench/gpu.sh's dry run)
// leaves out the head case of this name: it runs f32, and bf16 with adapters.
func shortSkips(name string) bool {
	return testing.Short() && name != "qwen2_f32_lora=false" && name != "llama_bf16_lora=true"
}

// bitsOf is x's float32 bit patterns, so that require.Equal compares bits (NaNs included).
func bitsOf(x []float32) []uint32 {
	b := make([]uint32, len(x))
	for i, v := range x {
		b[i] = math.Float32bits(v)
	}
	return b
}

// A batch spanning several head chunks (one of them partial) gives the log-probs and gradients of the
// whole batch in one chunk, within rounding: the chunks change only the matmuls' row blocking and the
// order in which the head's gradient accumulates.
func TestHeadChunksMatchWholeBatch(t *testing.T) {
	for _, c := range headCases {
		t.Run(fmt.Sprintf("%s_%s_lora=%v", c.fam, c.o.Precision, c.lora), func(t *testing.T) {
			m, r := headModel(t, c.fam, c.o, c.lora)
			defer m.Free()
			ids, _ := packed(r)
			wantLP, wantG, C, _ := headRun(t, m, r, 0)
			require.Equal(t, len(ids), C, "the fixtures' batch is one chunk by default")
			chunks := []int{1, 3, 4, 5, 7}
			partial := false
			for _, c := range chunks {
				partial = partial || len(ids)%c != 0
			}
			require.True(t, partial, "a partial last chunk is covered")
			for _, chunk := range chunks {
				gotLP, gotG, C, _ := headRun(t, m, r, chunk)
				require.Equal(t, chunk, C)
				lpErr := 0.0
				for i := range wantLP {
					lpErr = math.Max(lpErr, math.Abs(float64(gotLP[i]-wantLP[i])))
				}
				gErr := gradRelErr(t, wantG, gotG)
				t.Logf("chunks of %d tokens over %d: log-probs within %.3g, gradients %.3g (relative L2)", chunk, len(ids), lpErr, gErr)
				assert.LessOrEqual(t, lpErr, headChunkLogProbTol)
				assert.LessOrEqual(t, gErr, headChunkGradTolOf(m))
			}
		})
	}
}

// Grad, which turns each chunk's logits into dlogits in the forward, gives the same log-probs and
// gradients, bit for bit, as Forward then Backward, which recomputes every chunk's logits but the last
// (the recomputation repeats the forward's products exactly, and the head's gradient accumulates over
// the chunks in the same order): one matrix product less for every chunk but the last. With the
// coefficients known before the forward (GradHost) and with each chunk's computed from its log-probs
// when Grad asks (as the RL step's are), in every precision, with and without adapters.
func TestHeadGradSameBits(t *testing.T) {
	short := testing.Short() // at one chunk size: several chunks, the last partial
	for _, c := range headCases {
		name := fmt.Sprintf("%s_%s_lora=%v", c.fam, c.o.Precision, c.lora)
		if shortSkips(name) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			m, r := headModel(t, c.fam, c.o, c.lora)
			defer m.Free()
			ids, _ := packed(r)
			chunks := []int{0, 1, 3, 5}
			if short {
				chunks = []int{5}
				require.NotZero(t, len(ids)%5)
			}
			for _, chunk := range chunks {
				for _, way := range []int{headHost, headGrad} {
					var coefOf func(float32) float32
					if way == headGrad {
						coefOf = ppoLikeCoef
					}
					wantLP, wantG, C, recomputing := headRunBy(t, m, r, chunk, headUnfused, coefOf)
					gotLP, gotG, _, fused := headRunBy(t, m, r, chunk, way, coefOf)
					what := fmt.Sprintf("chunks of %d, coefficients %s", C, map[int]string{headHost: "before", headGrad: "from the log-probs"}[way])
					chunks := (len(ids) + C - 1) / C
					require.Equal(t, chunks-1, recomputing-fused, "%s: the products the fused head spares, every chunk's but the last", what)
					require.Equal(t, bitsOf(wantLP), bitsOf(gotLP), "%s: log-probs", what)
					for i := range wantG {
						require.Equal(t, bitsOf(wantG[i]), bitsOf(gotG[i]), "%s: gradient %d", what, i)
					}
				}
			}
		})
	}
}

// gradRelErr is the worst relative L2 distance of got's gradients from want's; a gradient that is zero in
// want must be zero in got.
func gradRelErr(t *testing.T, want, got [][]float32) float64 {
	worst := 0.0
	for i := range want {
		var num, den float64
		for j, w := range want[i] {
			d := float64(got[i][j] - w)
			num += d * d
			den += float64(w) * float64(w)
		}
		if den > 0 {
			worst = math.Max(worst, math.Sqrt(num/den))
		} else {
			require.Zero(t, num, "gradient %d", i)
		}
	}
	return worst
}

// headChunkGradTolOf is the head's gradient tolerance for m's precision.
func headChunkGradTolOf(m *Model) float64 {
	if m.opts.Precision == PrecisionBF16 {
		return headChunkBF16GradTol
	}
	return headChunkGradTol
}

// Tolerances ≈ 4× the worst measured. Log-probs: 4.3e-6. Gradients: 7.3e-7 in f32 and in bf16 with
// chunks of 3 or more; chunks of one token (the matmul's single-row path, which rounds the bf16 d(xf)
// differently) 3.1e-3 in bf16, an order below bf16's own error against float64 (4.6e-2 on these
// fixtures). A last chunk of one token happens in real batches, so it is checked.
const (
	headChunkLogProbTol  = 2e-5
	headChunkGradTol     = 3e-6
	headChunkBF16GradTol = 1.3e-2
)

// headFromFirst are the fixture batch's first predicted tokens for ForwardFrom (sequences of 256, 97,
// 31, 2 and 1 tokens): a long prompt, none, a whole sequence without rows, one row, the one-token
// sequence that never has one.
var headFromFirst = []int{200, 1, 31, 1, 1}

// headFromRun is the head rows' log-probs and the gradients of Σ coef·logp over them (coef from each
// row's log-prob, as an RL step's are) with the head restricted to first's rows, by ForwardFrom then
// Backward (fused false) or by GradFrom asking for each chunk's coefficients (fused true).
func headFromRun(t *testing.T, m *Model, r fixtureRef, chunk int, fused bool, coefOf func(float32) float32) (logp []float32, grads [][]float32) {
	if chunk > 0 {
		old := headChunkBytes
		headChunkBytes = chunk * m.Config.Vocab * m.opts.Precision.Act().Size()
		defer func() { headChunkBytes = old }()
	}
	ids, lens := packed(r)
	a, err := m.NewActivations(len(ids), len(lens))
	require.NoError(t, err)
	defer a.Free()
	g, err := m.NewGrads()
	require.NoError(t, err)
	defer g.Free()
	if fused {
		require.NoError(t, m.GradFrom(a, g, ids, lens, headFromFirst, func(t0, t1 int) error {
			lp := testenv.Read[float32](t, a.LogProbTensor().MustSlice(t0, t1))
			c := make([]float32, len(lp))
			for i, v := range lp {
				c[i] = coefOf(v)
			}
			return kernels.Upload(a.Coef().MustSlice(t0, t1), c)
		}))
	} else {
		require.NoError(t, m.ForwardFrom(a, ids, lens, headFromFirst))
		lp := make([]float32, a.HeadRows())
		require.NoError(t, a.LogProbs(lp))
		c := make([]float32, len(lp))
		for i, v := range lp {
			c[i] = coefOf(v)
		}
		require.NoError(t, m.Backward(a, g, c))
	}
	logp = make([]float32, a.HeadRows())
	require.NoError(t, a.LogProbs(logp))
	for i := range g.Layout.Specs {
		grads = append(grads, testenv.Read[float32](t, g.View(i)))
	}
	return logp, grads
}

// ForwardFrom's head, on the rows that predict each sequence's tokens from first[s] on, gives those rows'
// log-probs and the gradient of a loss over them as the whole batch's head does with that loss's
// coefficients zero on every other row, within the matrix products' blocking (the head's rows are
// fewer, and its gradient sums over them alone); and GradFrom gives ForwardFrom then Backward's bits, in
// one chunk and in several, the last partial.
func TestHeadFromSelectedRows(t *testing.T) {
	chunks := []int{0, 5}
	if testing.Short() {
		chunks = []int{5}
	}
	for _, c := range headCases {
		name := fmt.Sprintf("%s_%s_lora=%v", c.fam, c.o.Precision, c.lora)
		if shortSkips(name) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			m, r := headModel(t, c.fam, c.o, c.lora)
			defer m.Free()
			ids, lens := packed(r)
			require.Equal(t, []int{256, 97, 31, 2, 1}, lens)
			var rowsOf []int // the selected rows' places in the batch
			off := 0
			for s, n := range lens {
				for i := headFromFirst[s] - 1; i < n-1; i++ {
					rowsOf = append(rowsOf, off+i)
				}
				off += n
			}
			selected := map[int]bool{}
			for _, i := range rowsOf {
				selected[i] = true
			}
			// the whole batch's head, coefficients zero off the selected rows
			wantLP, wantG, _, _ := headRunBy(t, m, r, 0, headUnfused, nil) // log-probs of every row
			coefAll := func(i int) float32 {
				if !selected[i] {
					return 0
				}
				return ppoLikeCoef(wantLP[i])
			}
			a, err := m.NewActivations(len(ids), len(lens))
			require.NoError(t, err)
			defer a.Free()
			g, err := m.NewGrads()
			require.NoError(t, err)
			defer g.Free()
			require.NoError(t, m.Forward(a, ids, lens))
			coef := make([]float32, len(ids))
			for i := range coef {
				coef[i] = coefAll(i)
			}
			require.NoError(t, m.Backward(a, g, coef))
			wantG = wantG[:0]
			for i := range g.Layout.Specs {
				wantG = append(wantG, testenv.Read[float32](t, g.View(i)))
			}
			for _, chunk := range chunks {
				gotLP, gotG := headFromRun(t, m, r, chunk, false, ppoLikeCoef)
				require.Len(t, gotLP, len(rowsOf))
				lpErr := 0.0
				for i, row := range rowsOf {
					lpErr = math.Max(lpErr, math.Abs(float64(gotLP[i]-wantLP[row])))
				}
				gErr := gradRelErr(t, wantG, gotG)
				t.Logf("chunks of %d: %d head rows of %d tokens, log-probs within %.3g, gradients %.3g (relative L2)", chunk, len(rowsOf), len(ids), lpErr, gErr)
				assert.LessOrEqual(t, lpErr, headChunkLogProbTol)
				assert.LessOrEqual(t, gErr, headChunkGradTolOf(m))

				fusedLP, fusedG := headFromRun(t, m, r, chunk, true, ppoLikeCoef)
				require.Equal(t, bitsOf(gotLP), bitsOf(fusedLP), "chunks of %d: GradFrom's log-probs", chunk)
				for i := range gotG {
					require.Equal(t, bitsOf(gotG[i]), bitsOf(fusedG[i]), "chunks of %d: GradFrom's gradient %d", chunk, i)
				}
			}
		})
	}
}

// A batch whose sequences all start predicting past their end has no head rows: its forward and
// backward still run, and the gradient is the final norm's and the layers' of nothing: zero.
func TestHeadFromNoRows(t *testing.T) {
	m, r := headModel(t, "qwen2", Options{}, false)
	defer m.Free()
	ids, lens := packed(r)
	a, err := m.NewActivations(len(ids), len(lens))
	require.NoError(t, err)
	defer a.Free()
	g, err := m.NewGrads()
	require.NoError(t, err)
	defer g.Free()
	require.NoError(t, m.ForwardFrom(a, ids, lens, lens))
	require.Zero(t, a.HeadRows())
	require.NoError(t, m.Backward(a, g, nil))
	for i := range g.Layout.Specs {
		for j, v := range testenv.Read[float32](t, g.View(i)) {
			require.Zero(t, v, "gradient %d, entry %d", i, j)
		}
	}
	require.NoError(t, m.GradFrom(a, g, ids, lens, lens, func(t0, t1 int) error { return fmt.Errorf("no chunk to ask for") }))
}

// ForwardFrom refuses a first position list of another length, or one outside 1..the sequence's length,
// naming it.
func TestHeadFromErrors(t *testing.T) {
	m, r := headModel(t, "qwen2", Options{}, false)
	defer m.Free()
	ids, lens := packed(r)
	a, err := m.NewActivations(len(ids), len(lens))
	require.NoError(t, err)
	defer a.Free()
	require.ErrorContains(t, m.ForwardFrom(a, ids, lens, []int{1, 1}), "2 first predicted positions for 5 sequences")
	require.ErrorContains(t, m.ForwardFrom(a, ids, lens, []int{1, 0, 1, 1, 1}), "first predicted position 0 of sequence 1 of 97 tokens (want 1..97)")
	require.ErrorContains(t, m.ForwardFrom(a, ids, lens, []int{1, 1, 32, 1, 1}), "first predicted position 32 of sequence 2 of 31 tokens (want 1..31)")
}
