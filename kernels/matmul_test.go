package kernels

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebitengine/purego"
	"github.com/serl-go/serl/kernels/ref"
	"github.com/serl-go/serl/loader"
	"github.com/stretchr/testify/require"
)

func init() {
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			register(fmt.Sprintf("matmul_%s", layoutName(ta, tb)), func(t *testing.T, h *harness) { testMatMul(t, h, ta, tb) })
		}
	}
	register("matmul_decode", testMatMulDecode)
	register("matmul_decode_batched", testMatMulDecodeBatched)
	register("matmul_batched", testMatMulBatched)
	register("matmul_strided", testMatMulStrided)
	register("matmul_errors", testMatMulErrors)
}

func layoutName(ta, tb bool) string {
	s := [2]string{"n", "t"}
	return s[matmulFlag(ta)] + s[matmulFlag(tb)]
}

// matmulShapes are (m, n, k): tiny, awkward (primes, ±1 around powers of two, not multiples of any tile),
// the decode shape m=1, and shapes that cross every block boundary of the CPU driver (K slices of 384,
// A blocks of 1536 rows, B blocks of 4096 columns, K groups of 32 MiB of packed panels).
var matmulShapes = [][3]int{
	{1, 1, 1}, {2, 3, 7}, {7, 17, 31}, {17, 33, 65}, {31, 65, 127}, {33, 129, 257}, {65, 127, 129},
	{127, 129, 33}, {129, 257, 17}, {257, 300, 31}, {300, 257, 129}, {300, 300, 300}, {1, 1000, 513},
	{1000, 1, 513}, {3, 7, 1000}, {12, 32, 7}, {13, 31, 300}, {64, 64, 64}, {1, 7, 1}, {300, 1, 65},
	{33, 65, 800}, {1600, 40, 20}, {20, 4200, 10}, {24, 33, 2}, {20, 4100, 1950},
	// A LoRA adapter's products: x·Wᵀ with few W rows and many x rows (x·Aᵀ) on the skinny GEMV, as x·W
	// with few W columns (dy·B); Aᵀ·B with few columns (dyᵀ·u, C transposed) on the thin path, as with
	// few rows (duᵀ·x: {13, 31, 300}, {1, 1000, 513} above).
	{1076, 8, 256}, {97, 5, 300},
	{257, 9, 12}, // below the small-product size with m past the x·Wᵀ path's rows: x·Wᵀ there all the same
	// A LoRA group's joined products (3 × rank columns or rows) and the skinny and thin paths' bounds:
	// n = 48 skinny, 49 not; m = 32 thin, 33 not.
	{1030, 24, 256}, {700, 48, 130}, {300, 49, 100}, {32, 300, 257}, {33, 300, 257},
}

// storedDims are the dimensions of the stored A (op(A) m×k) or B (op(B) k×n) of a layout.
func storedDims(rows, cols int, trans bool) (int, int) {
	if trans {
		return cols, rows
	}
	return rows, cols
}

type alphaBeta struct {
	alpha, beta float32
	poison      bool // C holds NaN (only with beta 0)
}

var alphaBetas = []alphaBeta{{1, 0, true}, {1, 1, false}, {-0.5, 0.25, false}, {2, 0, true}, {0.75, -1, false}}

func testMatMul(t *testing.T, h *harness, ta, tb bool) {
	for si, s := range matmulShapes {
		m, n, k := s[0], s[1], s[2]
		ab := alphaBetas[si%len(alphaBetas)]
		ar, ac := storedDims(m, k, ta)
		br, bc := storedDims(k, n, tb)
		a, b := h.randn(ar*ac, 1), h.randn(br*bc, 1)
		var c0 []float32
		var tc Tensor
		if ab.poison {
			tc = h.poisoned(m, n)
			c0 = h.get(tc)
		} else {
			c0 = h.randn(m*n, 1)
			tc = h.f32(c0, m, n)
		}
		err := h.d.MatMul(MatMul{A: h.f32(a, ar, ac), B: h.f32(b, br, bc), C: tc, TransA: ta, TransB: tb,
			Alpha: ab.alpha, Beta: ab.beta})
		require.NoError(t, err)
		want := append([]float32(nil), c0...)
		ref.MatMul(ta, tb, m, n, k, ab.alpha, a, ac, 0, b, bc, 0, ab.beta, want, n, 0, 1)
		requireClose(t, fmt.Sprintf("matmul %s m=%d n=%d k=%d alpha=%g beta=%g", layoutName(ta, tb), m, n, k,
			ab.alpha, ab.beta), h.get(tc), want, 1e-5)
	}
	// k == 0: C = beta·C, and with beta 0 a NaN-poisoned C becomes 0.
	for _, ab := range []alphaBeta{{1, 0, true}, {1, 0.5, false}} {
		m, n := 5, 9
		ar, ac := storedDims(m, 0, ta)
		br, bc := storedDims(0, n, tb)
		c0 := h.randn(m*n, 1)
		tc := h.f32(c0, m, n)
		if ab.poison {
			tc = h.poisoned(m, n)
		}
		require.NoError(t, h.d.MatMul(MatMul{A: h.alloc(F32, ar, ac), B: h.alloc(F32, br, bc), C: tc, TransA: ta,
			TransB: tb, Alpha: ab.alpha, Beta: ab.beta}))
		want := make([]float32, m*n)
		for i := range want {
			if !ab.poison {
				want[i] = ab.beta * c0[i]
			}
		}
		requireClose(t, fmt.Sprintf("matmul %s k=0 beta=%g", layoutName(ta, tb), ab.beta), h.get(tc), want, 1e-6)
	}
}

// testMatMulDecode covers x·Wᵀ for m = 1..17 rows (generation: the GEMV up to 8 rows on AVX2 and 16 on
// AVX-512, the microkernel past them), with n not a multiple of the 4-row blocks and k not a multiple of
// the vector width.
func testMatMulDecode(t *testing.T, h *harness) {
	for m := 1; m <= 17; m++ {
		for _, nk := range [][2]int{{37, 301}, {768, 768}, {130, 1027}, {4100, 9}} { // k 9: the tail alone
			n, k := nk[0], nk[1]
			ab := alphaBetas[(m+n)%len(alphaBetas)]
			x, w := h.randn(m*k, 1), h.randn(n*k, 1)
			var c0 []float32
			var tc Tensor
			if ab.poison {
				tc = h.poisoned(m, n)
				c0 = h.get(tc)
			} else {
				c0 = h.randn(m*n, 1)
				tc = h.f32(c0, m, n)
			}
			require.NoError(t, h.d.MatMul(MatMul{A: h.f32(x, m, k), B: h.f32(w, n, k), C: tc, TransB: true,
				Alpha: ab.alpha, Beta: ab.beta}))
			want := append([]float32(nil), c0...)
			ref.MatMul(false, true, m, n, k, ab.alpha, x, k, 0, w, k, 0, ab.beta, want, n, 0, 1)
			requireClose(t, fmt.Sprintf("decode m=%d n=%d k=%d", m, n, k), h.get(tc), want, 1e-5)
		}
	}
}

// testMatMulDecodeBatched covers x·Wᵀ for tens of rows (batched generation, m 17..128: on AVX-512 the GEMV
// up to 32 rows, or 48 with k ≥ 768, the x·Wᵀ path past them, which reads W as it lies where k ≥ 768 and
// n ≥ 4m): m around the row blocks of both kernels and those bounds, n around their W panels (16 and 32
// rows), k around the depth slices, with beta 0 on NaN-poisoned C, beta 1, alpha −0.5, and a C row
// stride beyond n whose gap must stay untouched.
func testMatMulDecodeBatched(t *testing.T, h *harness) {
	const sentinel = 12345.5
	abs := []alphaBeta{{1, 0, true}, {1, 1, false}, {-0.5, 0.25, false}, {-0.5, 0, true}}
	nks := [][2]int{{1, 2048}, {7, 257}, {128, 7}, {256, 256}, {257, 128}, {704, 256}, {256, 704}, {2048, 1},
		{33, 2048}, {257, 1}, {7, 704}, {128, 1543}, {520, 800}}
	for mi, m := range []int{17, 31, 33, 48, 49, 63, 64, 65, 100, 128} {
		for ni, nk := range nks {
			n, k := nk[0], nk[1]
			ab := abs[(mi+ni)%len(abs)]
			ldc := n
			if (mi+ni)%3 == 0 {
				ldc = n + 5
			}
			x, w := h.randn(m*k, 1), h.randn(n*k, 1)
			c0 := make([]float32, m*ldc)
			for i := range c0 {
				switch {
				case i%ldc >= n:
					c0[i] = sentinel
				case ab.poison:
					c0[i] = float32(math.NaN())
				default:
					c0[i] = float32(h.rng.NormFloat64())
				}
			}
			C := h.f32(c0)
			require.NoError(t, h.d.MatMulStrided(StridedMatMul{A: h.f32(x), B: h.f32(w), C: C, TransB: true,
				M: m, N: n, K: k, LDA: k, LDB: k, LDC: ldc, Batch: 1, Alpha: ab.alpha, Beta: ab.beta}))
			want := append([]float32(nil), c0...)
			ref.MatMul(false, true, m, n, k, ab.alpha, x, k, 0, w, k, 0, ab.beta, want, ldc, 0, 1)
			got := h.get(C)
			what := fmt.Sprintf("batched decode m=%d n=%d k=%d ldc=%d alpha=%g beta=%g", m, n, k, ldc, ab.alpha, ab.beta)
			for i := range got {
				if i%ldc >= n {
					require.Equal(t, float32(sentinel), got[i], "%s: element %d outside C's view was written", what, i)
					got[i], want[i] = 0, 0
				}
			}
			requireClose(t, what, got, want, 1e-5)
		}
	}
	// A strided X (lda > k) and a batch of products sharing W, as the engine's per-sequence views do.
	for _, c := range []struct{ batch, m, n, k, pad int }{{2, 64, 256, 256, 3}, {3, 33, 130, 77, 1}} {
		lda, ldc := c.k+c.pad, c.n+c.pad
		sa, sc := c.m*lda+c.pad, c.m*ldc
		x, w := h.randn(c.batch*sa, 1), h.randn(c.n*c.k, 1)
		c0 := h.randn(c.batch*sc, 1)
		C := h.f32(c0)
		require.NoError(t, h.d.MatMulStrided(StridedMatMul{A: h.f32(x), B: h.f32(w), C: C, TransB: true,
			M: c.m, N: c.n, K: c.k, LDA: lda, LDB: c.k, LDC: ldc, Batch: c.batch, StrideA: sa, StrideC: sc,
			Alpha: -0.5, Beta: 1}))
		want := append([]float32(nil), c0...)
		ref.MatMul(false, true, c.m, c.n, c.k, -0.5, x, lda, sa, w, c.k, 0, 1, want, ldc, sc, c.batch)
		requireClose(t, fmt.Sprintf("batched decode strided %+v", c), h.get(C), want, 1e-5)
	}
}

func testMatMulBatched(t *testing.T, h *harness) {
	cases := []struct {
		batch, m, n, k int
		bcastA, bcastB bool
		ta, tb         bool
	}{
		{3, 17, 33, 65, false, false, false, false},
		{4, 31, 65, 127, false, true, false, true},  // shared weight: B broadcast
		{2, 129, 100, 70, true, false, true, false}, // A broadcast
		{5, 2, 300, 257, false, false, false, true}, // decode-shaped, per batch
		{48, 16, 16, 16, false, false, true, true},  // many small products, spread over batch
		{7, 1, 1, 1, false, false, false, false},
	}
	for _, c := range cases {
		ar, ac := storedDims(c.m, c.k, c.ta)
		br, bc := storedDims(c.k, c.n, c.tb)
		na, nb := c.batch, c.batch
		var A, B Tensor
		sa, sb := ar*ac, br*bc
		if c.bcastA {
			na, sa = 1, 0
		}
		if c.bcastB {
			nb, sb = 1, 0
		}
		a, b := h.randn(na*ar*ac, 1), h.randn(nb*br*bc, 1)
		if c.bcastA {
			A = h.f32(a, ar, ac)
		} else {
			A = h.f32(a, c.batch, ar, ac)
		}
		if c.bcastB {
			B = h.f32(b, br, bc)
		} else {
			B = h.f32(b, c.batch, br, bc)
		}
		for _, ab := range []alphaBeta{{1, 0, true}, {-0.5, 1, false}} {
			var c0 []float32
			var C Tensor
			if ab.poison {
				C = h.poisoned(c.batch, c.m, c.n)
				c0 = h.get(C)
			} else {
				c0 = h.randn(c.batch*c.m*c.n, 1)
				C = h.f32(c0, c.batch, c.m, c.n)
			}
			require.NoError(t, h.d.MatMul(MatMul{A: A, B: B, C: C, TransA: c.ta, TransB: c.tb, Alpha: ab.alpha, Beta: ab.beta}))
			want := append([]float32(nil), c0...)
			ref.MatMul(c.ta, c.tb, c.m, c.n, c.k, ab.alpha, a, ac, sa, b, bc, sb, ab.beta, want, c.n, c.m*c.n, c.batch)
			requireClose(t, fmt.Sprintf("batched %+v beta=%g", c, ab.beta), h.get(C), want, 1e-5)
		}
	}
}

// testMatMulStrided embeds every operand in a larger buffer (row strides beyond the row, gaps between
// batch matrices) and checks that the product is right and that nothing outside C's view is written.
func testMatMulStrided(t *testing.T, h *harness) {
	const sentinel = 12345.5
	for _, c := range []struct{ batch, m, n, k, pad int }{{1, 7, 9, 11, 3}, {3, 33, 65, 130, 5}, {2, 300, 129, 65, 1},
		{4, 5, 700, 96, 16}, {2, 1, 513, 1000, 7},
		// a LoRA target's slice of its group's u or du (row stride 3 × rank) on the skinny, thin and
		// x·Wᵀ paths
		{1, 300, 8, 256, 16}, {1, 300, 256, 8, 16}, {2, 8, 300, 1030, 16}} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				ar, ac := storedDims(c.m, c.k, ta)
				br, bc := storedDims(c.k, c.n, tb)
				lda, ldb, ldc := ac+c.pad, bc+2*c.pad, c.n+c.pad
				sa, sb, sc := ar*lda+c.pad, br*ldb+3, c.m*ldc+c.pad
				a, b := h.randn(c.batch*sa, 1), h.randn(c.batch*sb, 1)
				c0 := make([]float32, c.batch*sc)
				for i := range c0 {
					c0[i] = sentinel
				}
				inView := func(i int) bool { r := (i % sc) / ldc; return r < c.m && (i%sc)%ldc < c.n }
				for i := range c0 {
					if inView(i) {
						c0[i] = float32(h.rng.NormFloat64())
					}
				}
				C := h.f32(c0)
				require.NoError(t, h.d.MatMulStrided(StridedMatMul{A: h.f32(a), B: h.f32(b), C: C, TransA: ta, TransB: tb,
					M: c.m, N: c.n, K: c.k, LDA: lda, LDB: ldb, LDC: ldc, Batch: c.batch, StrideA: sa, StrideB: sb,
					StrideC: sc, Alpha: 0.5, Beta: -1}))
				want := append([]float32(nil), c0...)
				ref.MatMul(ta, tb, c.m, c.n, c.k, 0.5, a, lda, sa, b, ldb, sb, -1, want, ldc, sc, c.batch)
				got := h.get(C)
				what := fmt.Sprintf("strided %s %+v", layoutName(ta, tb), c)
				requireClose(t, what, got, want, 1e-5)
				for i := range got {
					if !inView(i) {
						require.Equal(t, float32(sentinel), got[i], "%s: element %d outside C's view was written", what, i)
					}
				}
			}
		}
	}
}

func testMatMulErrors(t *testing.T, h *harness) {
	d := h.d
	a, b, c := h.f32(make([]float32, 12), 3, 4), h.f32(make([]float32, 20), 4, 5), h.poisoned(3, 5)
	require.NoError(t, d.MatMul(MatMul{A: a, B: b, C: c, Alpha: 1}))
	requireOpError(t, "nil A", d.MatMul(MatMul{B: b, C: c, Alpha: 1}))
	requireOpError(t, "nil C", d.MatMul(MatMul{A: a, B: b, Alpha: 1}))
	requireOpError(t, "i32 B", d.MatMul(MatMul{A: a, B: h.i32(make([]int32, 20), 4, 5), C: c, Alpha: 1}))
	requireOpError(t, "mismatched k", d.MatMul(MatMul{A: a, B: b, C: c, TransB: true, Alpha: 1}))
	requireOpError(t, "mismatched k (TransA)", d.MatMul(MatMul{A: a, B: b, C: c, TransA: true, Alpha: 1}))
	requireOpError(t, "wrong C", d.MatMul(MatMul{A: a, B: b, C: h.poisoned(3, 4), Alpha: 1}))
	requireOpError(t, "rank 1", d.MatMul(MatMul{A: h.f32(make([]float32, 4)), B: b, C: c, Alpha: 1}))
	requireOpError(t, "rank 4", d.MatMul(MatMul{A: h.f32(make([]float32, 12), 1, 1, 3, 4), B: b, C: c, Alpha: 1}))
	requireOpError(t, "batch mismatch", d.MatMul(MatMul{A: h.f32(make([]float32, 24), 2, 3, 4),
		B: h.f32(make([]float32, 60), 3, 4, 5), C: h.poisoned(2, 3, 5), Alpha: 1}))
	requireOpError(t, "batched product into rank-2 C", d.MatMul(MatMul{A: h.f32(make([]float32, 24), 2, 3, 4), B: b, C: c, Alpha: 1}))
	strided := StridedMatMul{A: a, B: b, C: c, M: 3, N: 5, K: 4, LDA: 4, LDB: 5, LDC: 5, Alpha: 1}
	require.NoError(t, d.MatMulStrided(strided))
	for _, bad := range []struct {
		what string
		mod  func(p *StridedMatMul)
	}{
		{"LDA below the row", func(p *StridedMatMul) { p.LDA = 3 }},
		{"LDB below the row", func(p *StridedMatMul) { p.LDB = 4 }},
		{"LDC below the row", func(p *StridedMatMul) { p.LDC = 4 }},
		{"A too small for LDA", func(p *StridedMatMul) { p.LDA = 5 }},
		{"C too small for the batch", func(p *StridedMatMul) { p.Batch, p.StrideC = 2, 15 }},
		{"negative M", func(p *StridedMatMul) { p.M = -1 }},
		{"negative stride", func(p *StridedMatMul) { p.StrideA = -4 }},
		{"B too small for K", func(p *StridedMatMul) { p.K = 5; p.LDA = 5 }},
		{"overlapping C batches", func(p *StridedMatMul) {
			p.C, p.Batch, p.StrideC = h.poisoned(30), 2, 5
		}},
	} {
		p := strided
		bad.mod(&p)
		requireOpError(t, bad.what, d.MatMulStrided(p))
	}
}

// ---------------------------------------------------------------------------------------- benchmarks

// OpenBLAS, the peer in BenchmarkSGEMM, through purego from the system's libopenblas.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

var openblas struct {
	once  sync.Once
	sgemm func(order, ta, tb, m, n, k int32, alpha float32, a uintptr, lda int32, b uintptr, ldb int32,
		beta float32, c uintptr, ldc int32)
	sgemv func(order, ta, m, n int32, alpha float32, a uintptr, lda int32, x uintptr, incx int32, beta float32,
		y uintptr, incy int32)
	err error
}

// OpenBLAS's kernels for CPUs with AVX2 (openblas_get_corename, lower case). A build older than the CPU
// falls back to its SSE3 "Prescott" kernels: Debian 12's 0.3.21 does so on a Xeon of model 207
// (Emerald Rapids), at 64 GFLOP/s on 2 cores where OPENBLAS_CORETYPE=SkylakeX runs 310-320.
// bench/openblas-core.sh holds the same list for the OpenBLAS under torch.
var openblasAVX2Cores = []string{"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"}

// openBLAS loads the peer once. A peer running kernels without AVX2 on this CPU (serl's always have
// AVX2) is no peer: it is refused, and every openblas sub-benchmark skips saying how to pick its kernels.
func openBLAS(threads int) error {
	openblas.once.Do(func() {
		lib, err := loader.OpenSystem("libopenblas.so.0", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
			"libopenblas.so")
		if err != nil {
			openblas.err = fmt.Errorf("OpenBLAS is not installed (apt-get install libopenblas0-pthread): %w", err)
			return
		}
		sym, err := lib.Sym("cblas_sgemm")
		if err != nil {
			openblas.err = err
			return
		}
		// cblas_sgemm mixes int and float arguments, which SyscallN cannot place; RegisterFunc can.
		purego.RegisterFunc(&openblas.sgemm, sym)
		if sym, err = lib.Sym("cblas_sgemv"); err != nil {
			openblas.err = err
			return
		}
		purego.RegisterFunc(&openblas.sgemv, sym)
		// Go's os.Setenv does not reach libc's environment without cgo, so OPENBLAS_NUM_THREADS cannot be
		// set from here: set the thread count through the API instead.
		if set, err := lib.Sym("openblas_set_num_threads"); err == nil {
			loader.Call(set, uintptr(threads))
		}
		if name, err := lib.Sym("openblas_get_corename"); err == nil {
			core := loader.GoString(loader.Call(name))
			if !slices.Contains(openblasAVX2Cores, strings.ToLower(core)) {
				openblas.err = fmt.Errorf("OpenBLAS runs its %q kernels here, without AVX2: it does not know this CPU; "+
					"for a fair peer set OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2)", core)
			}
		}
	})
	return openblas.err
}

// skipWithoutOpenBLAS skips a peer sub-benchmark when openBLAS could not load the library or refused it.
func skipWithoutOpenBLAS(b *testing.B, err error) {
	if err != nil {
		b.Skipf("no OpenBLAS peer: %v", err)
	}
}

type gemmShape struct{ m, n, k int }

// BenchmarkSGEMM compares serl with OpenBLAS (same thread count) on NT products C = A·Bᵀ with A [M,K]
// and B [N,K], the layout of the model's y = x·Wᵀ, for both peers. Run with -count ≥ 3: the serl and
// openblas sub-benchmarks of each shape alternate, so machine noise hits both. The precision column:
// serl runs each shape in f32 (serl) and with bf16 A and B into an f32 C (serl-bf16), side by side, so
// the bf16/f32 ratio of one run is read off directly.
func BenchmarkSGEMM(b *testing.B) {
	d := cpuDevice(b)
	shapes := []gemmShape{{1024, 1024, 1024}, {2048, 2048, 2048}}
	for _, n := range []int{256, 1024, 4096} {
		for _, k := range []int{256, 1024, 4096} {
			shapes = append(shapes, gemmShape{512, n, k})
		}
	}
	blasErr := openBLAS(d.Info().Threads)
	for _, s := range shapes {
		A, B, C := d.MustAlloc(F32, s.m, s.k), d.MustAlloc(F32, s.n, s.k), d.MustAlloc(F32, s.m, s.n)
		fill(A, 1)
		fill(B, 2)
		A16, B16 := d.MustAlloc(BF16, s.m, s.k), d.MustAlloc(BF16, s.n, s.k)
		if err := firstErr(d.Cast(A16, A), d.Cast(B16, B)); err != nil {
			b.Fatal(err)
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		name := fmt.Sprintf("%dx%dx%d", s.m, s.n, s.k)
		b.Run(name+"/serl", func(b *testing.B) {
			settle()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.MatMul(MatMul{A: A, B: B, C: C, TransB: true, Alpha: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(name+"/serl-bf16", func(b *testing.B) {
			settle()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.MatMul(MatMul{A: A16, B: B16, C: C, TransB: true, Alpha: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		// f32 and bf16 products alternate call by call, so contention on a shared machine hits both alike:
		// the ratio of this sub-benchmark is the one to read on a busy machine. bf16/f32-cpu is the ratio
		// of the process's CPU time instead of wall time, which time spent descheduled does not inflate
		// (exact with SERL_THREADS=1; with more threads it counts the workers' spinning too).
		b.Run(name+"/bf16-vs-f32", func(b *testing.B) {
			settle()
			var t32, t16, c32, c16 time.Duration
			for i := 0; i < b.N; i++ {
				t0, u0 := time.Now(), cpuTime()
				if err := d.MatMul(MatMul{A: A, B: B, C: C, TransB: true, Alpha: 1}); err != nil {
					b.Fatal(err)
				}
				t1, u1 := time.Now(), cpuTime()
				if err := d.MatMul(MatMul{A: A16, B: B16, C: C, TransB: true, Alpha: 1}); err != nil {
					b.Fatal(err)
				}
				t32, t16 = t32+t1.Sub(t0), t16+time.Since(t1)
				c32, c16 = c32+u1-u0, c16+cpuTime()-u1
			}
			b.ReportMetric(flops*float64(b.N)/t32.Seconds()/1e9, "f32-GFLOP/s")
			b.ReportMetric(flops*float64(b.N)/t16.Seconds()/1e9, "bf16-GFLOP/s")
			b.ReportMetric(t32.Seconds()/t16.Seconds(), "bf16/f32")
			b.ReportMetric(c32.Seconds()/c16.Seconds(), "bf16/f32-cpu")
		})
		b.Run(name+"/openblas", func(b *testing.B) {
			skipWithoutOpenBLAS(b, blasErr)
			settle()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				openblas.sgemm(cblasRowMajor, cblasNoTrans, cblasTrans, int32(s.m), int32(s.n), int32(s.k), 1,
					A.addr(), int32(s.k), B.addr(), int32(s.k), 0, C.addr(), int32(s.n))
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		for _, t := range []Tensor{A, B, C, A16, B16} {
			d.Free(t)
		}
	}
}

// BenchmarkSGEMMDecode is the generation hot path: y = x·Wᵀ for m = 1..16 rows against the M model's
// projections (W [768,768] and [2048,768]), and for batched generation on the S model, where up to 64
// sequences decode together (a batch drains through the small sizes), against W [256,256], [704,256],
// [256,704] (MLP down) and [2048,256] (LM head). x, W and y in f32 and in bf16 (the precision column, as
// --precision). Few rows are bound by streaming W; GB/s counts W's bytes.
func BenchmarkSGEMMDecode(b *testing.B) {
	d := cpuDevice(b)
	for _, g := range []struct {
		nk   [][2]int
		rows []int
	}{
		{[][2]int{{768, 768}, {2048, 768}}, []int{1, 2, 4, 8, 16}},
		{[][2]int{{256, 256}, {704, 256}, {256, 704}, {2048, 256}}, []int{4, 8, 12, 16, 24, 32, 48, 64}},
	} {
		for _, nk := range g.nk {
			n, k := nk[0], nk[1]
			W := d.MustAlloc(F32, n, k)
			fill(W, 3)
			W16 := d.MustAlloc(BF16, n, k)
			require.NoError(b, d.Cast(W16, W))
			for _, m := range g.rows {
				X, Y := d.MustAlloc(F32, m, k), d.MustAlloc(F32, m, n)
				fill(X, 4)
				X16, Y16 := d.MustAlloc(BF16, m, k), d.MustAlloc(BF16, m, n)
				require.NoError(b, d.Cast(X16, X))
				for _, p := range []struct {
					name    string
					x, w, y Tensor
				}{{"f32", X, W, Y}, {"bf16", X16, W16, Y16}} {
					b.Run(fmt.Sprintf("m=%d/%dx%d/%s", m, n, k, p.name), func(b *testing.B) {
						b.ReportAllocs()
						for i := 0; i < b.N; i++ {
							if err := d.MatMul(MatMul{A: p.x, B: p.w, C: p.y, TransB: true, Alpha: 1}); err != nil {
								b.Fatal(err)
							}
						}
						sec := b.Elapsed().Seconds()
						b.ReportMetric(2*float64(m*n*k)*float64(b.N)/sec/1e9, "GFLOP/s")
						b.ReportMetric(float64(p.w.Bytes())*float64(b.N)/sec/1e9, "GB/s")
					})
				}
				for _, t := range []Tensor{X, Y, X16, Y16} {
					d.Free(t)
				}
			}
			d.Free(W)
			d.Free(W16)
		}
	}
}

// BenchmarkGEMVStream is decoding with weights that do not fit in any cache, as a real model's do on a
// CPU: y = x·Wᵀ for m = 1, 4, 16, 32, 64 and 128 rows (64: the CPU's default decode batch; 128: the most
// the x·Wᵀ path takes) against Qwen2.5-0.5B's MLP up projection, W [4864, 896], cycling through enough
// copies of W (over 96 MiB) that every call reads its W from memory. GB/s counts W's bytes, so the bound
// for few rows is the machine's read bandwidth; from 32 rows the multiply-adds bound it (GFLOP/s). x, W and y in f32; bf16 x, W and y;
// f32 x against a bf16 W (a bf16 model with f32 activations). OpenBLAS on the f32 copies is the peer
// (sgemv for one row, which it runs 2× as fast as an sgemm of one row; sgemm for more), and
// serl-vs-openblas alternates the two call by call (above 1: serl is faster), a ratio to read with
// SERL_THREADS=1: with more threads OpenBLAS's idle workers spin after each call on the cores serl's next
// call needs, and it reads low (0.6-0.8 on 2 cores at 32-64 rows, where the runs apart give serl 1.1-1.5×).
func BenchmarkGEMVStream(b *testing.B) {
	d := cpuDevice(b)
	blasErr := openBLAS(d.Info().Threads)
	const n, k = 4864, 896
	copies := func(dt DType) []Tensor {
		ws := make([]Tensor, max(6, (96<<20)/(n*k*dt.Size())+1))
		f := d.MustAlloc(F32, n, k)
		defer d.Free(f)
		for i := range ws {
			fill(f, uint32(20+i))
			ws[i] = d.MustAlloc(dt, n, k)
			require.NoError(b, d.Cast(ws[i], f))
		}
		return ws
	}
	w32, w16 := copies(F32), copies(BF16)
	defer func() {
		for _, w := range append(w32, w16...) {
			d.Free(w)
		}
	}()
	for _, m := range []int{1, 4, 16, 32, 64, 128} {
		x, y := d.MustAlloc(F32, m, k), d.MustAlloc(F32, m, n)
		fill(x, 5)
		x16, y16 := d.MustAlloc(BF16, m, k), d.MustAlloc(BF16, m, n)
		require.NoError(b, d.Cast(x16, x))
		// W's bytes read and the multiply-adds done, a second
		rates := func(b *testing.B, w Tensor) {
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(w.Bytes())*float64(b.N)/sec/1e9, "GB/s")
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/sec/1e9, "GFLOP/s")
		}
		run := func(b *testing.B, x Tensor, ws []Tensor, y Tensor) {
			for i := 0; i < b.N; i++ {
				if err := d.MatMul(MatMul{A: x, B: ws[i%len(ws)], C: y, TransB: true, Alpha: 1}); err != nil {
					b.Fatal(err)
				}
			}
			rates(b, ws[0])
		}
		blas := func(i int) {
			w := w32[i%len(w32)].addr()
			if m == 1 {
				openblas.sgemv(cblasRowMajor, cblasNoTrans, n, k, 1, w, k, x.addr(), 1, 0, y.addr(), 1)
				return
			}
			openblas.sgemm(cblasRowMajor, cblasNoTrans, cblasTrans, int32(m), n, k, 1, x.addr(), k, w, k, 0, y.addr(), n)
		}
		b.Run(fmt.Sprintf("m=%d/f32", m), func(b *testing.B) { run(b, x, w32, y) })
		b.Run(fmt.Sprintf("m=%d/bf16", m), func(b *testing.B) { run(b, x16, w16, y16) })
		b.Run(fmt.Sprintf("m=%d/f32-x-bf16-W", m), func(b *testing.B) { run(b, x, w16, y) })
		b.Run(fmt.Sprintf("m=%d/openblas", m), func(b *testing.B) {
			skipWithoutOpenBLAS(b, blasErr)
			settle()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				blas(i)
			}
			rates(b, w32[0])
		})
		b.Run(fmt.Sprintf("m=%d/serl-vs-openblas", m), func(b *testing.B) {
			skipWithoutOpenBLAS(b, blasErr)
			settle()
			var ts, to time.Duration
			for i := 0; i < b.N; i++ {
				// serl the even copies, OpenBLAS the odd ones: each reads a copy that five others have passed
				// through the cache since it was last read
				t0 := time.Now()
				if err := d.MatMul(MatMul{A: x, B: w32[2*i%len(w32)], C: y, TransB: true, Alpha: 1}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				blas(2*i + 1)
				ts, to = ts+t1.Sub(t0), to+time.Since(t1)
			}
			b.ReportMetric(to.Seconds()/ts.Seconds(), "serl/openblas")
		})
		for _, t := range []Tensor{x, y, x16, y16} {
			d.Free(t)
		}
	}
}

// BenchmarkSGEMMLoRA is a LoRA adapter's six products (engine/model/lora.go) on the built-in model's
// projections (in→out 256→704 and 704→256) and Qwen2.5-0.5B's MLP up (896→4864): the forward's
// u = x·Aᵀ and y += s·u·Bᵀ for T = 4 and 64 decoding rows and 2048 training tokens, and the backward's
// dB += s·dyᵀ·u, du = s·dy·B, dA += duᵀ·x and dx += du·A for 2048 tokens. Every one has the rank as one
// of m, n or k, which a blocked kernel's tiles do not fit. Rank 8, and 24: a q, k and v group's joined
// x·Aᵀ, duᵀ·x and du·A at rank 8 (to set against three rank-8 ones), or a rank-24 adapter. The precision
// column as --precision: all in f32, or activations and adapter copies in bf16 with the adapter's
// gradients in f32.
func BenchmarkSGEMMLoRA(b *testing.B) {
	d := cpuDevice(b)
	for _, r := range []int{8, 24} {
		benchLoRAProducts(b, d, r)
	}
}

func benchLoRAProducts(b *testing.B, d *Device, r int) {
	for _, dt := range []DType{F32, BF16} {
		for _, io := range [][2]int{{256, 704}, {704, 256}, {896, 4864}} {
			in, out := io[0], io[1]
			var live []Tensor
			alloc := func(dt DType, rows, cols int) Tensor {
				t32 := d.MustAlloc(F32, rows, cols)
				fill(t32, uint32(len(live)+5))
				live = append(live, t32)
				if dt == F32 {
					return t32
				}
				t := d.MustAlloc(dt, rows, cols)
				require.NoError(b, d.Cast(t, t32))
				live = append(live, t)
				return t
			}
			A, B := alloc(dt, r, in), alloc(dt, out, r)
			dA, dB := alloc(F32, r, in), alloc(F32, out, r)
			for _, T := range []int{4, 64, 2048} {
				x, y, u := alloc(dt, T, in), alloc(dt, T, out), alloc(dt, T, r)
				dx, dy, du := alloc(dt, T, in), alloc(dt, T, out), alloc(dt, T, r)
				products := []struct {
					name string
					mm   MatMul
					mnk  int
				}{
					{"x·Aᵀ", MatMul{A: x, B: A, C: u, TransB: true, Alpha: 1}, T * r * in},
					{"+u·Bᵀ", MatMul{A: u, B: B, C: y, TransB: true, Alpha: 0.5, Beta: 1}, T * out * r},
				}
				if T == 2048 {
					products = append(products, []struct {
						name string
						mm   MatMul
						mnk  int
					}{
						{"+dyᵀ·u", MatMul{A: dy, B: u, C: dB, TransA: true, Alpha: 0.5, Beta: 1}, out * r * T},
						{"dy·B", MatMul{A: dy, B: B, C: du, Alpha: 0.5}, T * r * out},
						{"+duᵀ·x", MatMul{A: du, B: x, C: dA, TransA: true, Alpha: 1, Beta: 1}, r * in * T},
						{"+du·A", MatMul{A: du, B: A, C: dx, Alpha: 1, Beta: 1}, T * in * r},
					}...)
				}
				for _, p := range products {
					b.Run(fmt.Sprintf("r=%d/%dx%d/T=%d/%s/%s", r, in, out, T, p.name, dt), func(b *testing.B) {
						for i := 0; i < b.N; i++ {
							if err := d.MatMul(p.mm); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(2*float64(p.mnk)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
			for _, t := range live {
				d.Free(t)
			}
		}
	}
}

// BenchmarkSGEMMGrad is a linear layer's weight gradient dW += dyᵀ·x (TransA, Beta 1), k the tokens of
// a training step: the built-in model's projections (256→256, 256→704, 704→256) at 2048 tokens and
// Qwen2.5-0.5B's q and MLP up (896→896, 896→4864) at 1024. Its panels pack from columns of dy and x, not
// rows as the forward's x·Wᵀ does, and C is read back once per K slice. f32 and bf16 operands (the
// gradient stays f32), OpenBLAS's f32 sgemm on the same operands, and the two f32 products alternating
// call by call, whose serl/openblas is serl's speed over OpenBLAS's (above 1: serl is faster; on one
// thread, see below).
func BenchmarkSGEMMGrad(b *testing.B) {
	d := cpuDevice(b)
	blasErr := openBLAS(d.Info().Threads)
	for _, s := range []gemmShape{{256, 256, 2048}, {704, 256, 2048}, {256, 704, 2048}, {896, 896, 1024},
		{4864, 896, 1024}} {
		out, in, T := s.m, s.n, s.k
		dy, x, dW := d.MustAlloc(F32, T, out), d.MustAlloc(F32, T, in), d.MustAlloc(F32, out, in)
		fill(dy, 7)
		fill(x, 8)
		dy16, x16 := d.MustAlloc(BF16, T, out), d.MustAlloc(BF16, T, in)
		require.NoError(b, firstErr(d.Cast(dy16, dy), d.Cast(x16, x)))
		flops := 2 * float64(out) * float64(in) * float64(T)
		grad := func(b *testing.B, dy, x Tensor) {
			if err := d.MatMul(MatMul{A: dy, B: x, C: dW, TransA: true, Alpha: 1, Beta: 1}); err != nil {
				b.Fatal(err)
			}
		}
		blasGrad := func() {
			openblas.sgemm(cblasRowMajor, cblasTrans, cblasNoTrans, int32(out), int32(in), int32(T), 1,
				dy.addr(), int32(out), x.addr(), int32(in), 1, dW.addr(), int32(in))
		}
		for _, p := range []struct {
			name  string
			dy, x Tensor
		}{{"f32", dy, x}, {"bf16", dy16, x16}} {
			b.Run(fmt.Sprintf("%dx%dx%d/serl-%s", out, in, T, p.name), func(b *testing.B) {
				settle()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					grad(b, p.dy, p.x)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		b.Run(fmt.Sprintf("%dx%dx%d/openblas", out, in, T), func(b *testing.B) {
			skipWithoutOpenBLAS(b, blasErr)
			settle()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				blasGrad()
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		// serl's f32 and OpenBLAS call by call, so that a busy machine slows both alike: the ratio to read,
		// with SERL_THREADS=1. With more threads, OpenBLAS's idle workers spin after each of its calls on
		// the cores serl's next call needs (settle() cannot come between), and the ratio reads low.
		b.Run(fmt.Sprintf("%dx%dx%d/serl-vs-openblas", out, in, T), func(b *testing.B) {
			skipWithoutOpenBLAS(b, blasErr)
			settle()
			var ts, to time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				grad(b, dy, x)
				t1 := time.Now()
				blasGrad()
				ts, to = ts+t1.Sub(t0), to+time.Since(t1)
			}
			b.ReportMetric(to.Seconds()/ts.Seconds(), "serl/openblas")
		})
		for _, t := range []Tensor{dy, x, dW, dy16, x16} {
			d.Free(t)
		}
	}
}

// fill writes deterministic values in [-1, 1) into a host-visible tensor.
func fill(t Tensor, seed uint32) {
	x := t.F32()
	s := seed*2654435761 + 1
	for i := range x {
		s = s*1664525 + 1013904223
		x[i] = float32(s>>8)/float32(1<<24)*2 - 1
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// settle gives the other peer's worker threads time to stop spinning (OpenBLAS's idle workers poll for
// a while after a call), so neither measurement starts on a core the other still occupies.
func settle() { time.Sleep(50 * time.Millisecond) }
