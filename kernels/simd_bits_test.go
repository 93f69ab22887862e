package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/serl-go/serl/kernels/ref"
	"github.com/stretchr/testify/require"
)

// TestSameBitsOnSIMDPaths: attention's forward and backward, decode attention, and x·Wᵀ products of a
// decode batch's rows (float32 x, W in float32 or bf16) give the same bits on every SIMD path the CPU
// has. Attention's products are the same FMA chains on 8 or 16 lanes, the softmax's row passes the same
// exponentials summed in the same order (csrc/cpu/attention_avx512.c), and a decode score the same two
// partial sums reduced by the same tree (csrc/cpu/kvcache_avx512.c), so a model's attention does not
// change with the machine's vector width; an x·Wᵀ product's element is one FMA chain in depth order
// whether W is packed (AVX2, and AVX-512 otherwise) or broadcast from where it lies (AVX-512, rows of
// LONG_K or more, W at least 4× x). SERL_SIMD is read from the process environment when a context is
// made, so each path runs in a child process that writes its results to a file.
func TestSameBitsOnSIMDPaths(t *testing.T) {
	if path := os.Getenv("SERL_TEST_SIMD_BITS"); path != "" {
		writeSIMDBits(t, path)
		return
	}
	rank := map[string]int{"avx2": 0, "avx512": 1, "avx512bf16": 2}
	best := rank[cpuDevice(t).Info().SIMDCPU]
	var want []byte
	for _, simd := range []string{"avx2", "avx512", "avx512bf16"} {
		if rank[simd] > best {
			break
		}
		out := filepath.Join(t.TempDir(), simd)
		cmd := exec.Command(os.Args[0], "-test.run=^TestSameBitsOnSIMDPaths$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SERL_SIMD="+simd, "SERL_TEST_SIMD_BITS="+out)
		msg, err := cmd.CombinedOutput()
		require.NoError(t, err, "SERL_SIMD=%s, child: %s", simd, msg)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		if want == nil {
			want = got
			continue
		}
		require.True(t, string(got) == string(want), "SERL_SIMD=%s: the bits differ from avx2's", simd)
	}
	if best == 0 {
		t.Skip("one SIMD path on this CPU (avx2)")
	}
}

// writeSIMDBits runs attention's forward and backward on packings that cover whole, partial and masked
// key blocks, at head dims that are and are not a multiple of 16, then decodeOutputs and xwtOutputs, and
// writes every output's bits to path.
func writeSIMDBits(t *testing.T, path string) {
	d, err := Open("cpu", 0)
	require.NoError(t, err)
	defer d.Close()
	h := newHarness(t, d)
	var bits []byte
	put := func(x []float32) {
		for _, v := range x {
			bits = binary.LittleEndian.AppendUint32(bits, math.Float32bits(v))
		}
	}
	for _, dim := range []int{17, 64} {
		lens := []int{150, 2, 37}
		p := newAttnProblem(h, lens, 4, 2, dim, 2)
		T := p.t
		q, k, v := h.f32(p.q, T, 4, dim), h.f32(p.k, T, 2, dim), h.f32(p.v, T, 2, dim)
		cu := h.i32(p.cu)
		out, lse := h.poisoned(T, 4, dim), h.poisoned(T, 4)
		require.NoError(t, d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu),
			Scale: float32(p.scale)}), fmt.Sprint("D=", dim))
		dq, dk, dv := h.f32(make([]float32, T*4*dim), T, 4, dim), h.f32(make([]float32, T*2*dim), T, 2, dim), h.f32(make([]float32, T*2*dim), T, 2, dim)
		require.NoError(t, d.AttentionBwd(AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: h.f32(p.dout, T, 4, dim),
			DQ: dq, DK: dk, DV: dv, CuSeqlens: cu, MaxLen: ref.MaxLen(p.cu), Scale: float32(p.scale)}))
		for _, x := range []Tensor{out, lse, dq, dk, dv} {
			put(h.get(x))
		}
	}
	for _, x := range decodeOutputs(t, h) {
		put(x)
	}
	for _, x := range xwtOutputs(t, h) {
		put(x)
	}
	require.NoError(t, os.WriteFile(path, bits, 0o644))
}

// decodeOutputs runs decode attention at head dims with every kind of tail (none, a masked rest, a
// whole 8-column chunk, both), with 1, 2 and 7 query heads per kv head (14 heads: more than one AVX-512
// value pass holds), over f32 and bf16 caches, for sequences of which two share their first blocks and
// for a lone sequence (its kv heads split over tasks); f32 queries, as generation's bf16 queries over a
// bf16 cache take the pair instruction on avx512bf16 and sum in another order there.
func decodeOutputs(t *testing.T, h *harness) [][]float32 {
	const bs = 16
	var outs [][]float32
	for _, dim := range []int{8, 17, 24, 29, 64, 128} {
		for _, hc := range [][2]int{{4, 2}, {14, 2}, {3, 3}} {
			nh, nkv := hc[0], hc[1]
			for _, cdt := range []DType{F32, BF16} {
				for _, lens := range [][]int{{1, 5, 40, 100, 90, 37}, {70}} {
					name := fmt.Sprintf("decode D=%d H=%d KVH=%d cache %s, %d seqs", dim, nh, nkv, cdt, len(lens))
					S, maxBlocks := len(lens), (100+bs-1)/bs
					nBlocks := S * maxBlocks
					table := make([]int32, S*maxBlocks)
					for i := range table {
						table[i] = int32((i*7 + 3) % nBlocks)
					}
					if S > 4 { // sequences 3 and 4 share their first four blocks, as samples of one prompt do
						copy(table[4*maxBlocks:4*maxBlocks+4], table[3*maxBlocks:3*maxBlocks+4])
					}
					slots := make([]int32, nBlocks*bs)
					for i := range slots {
						slots[i] = int32(i)
					}
					n := nBlocks * bs * nkv * dim
					cache := KVCache{K: h.poisonedAs(cdt, nBlocks, bs, nkv, dim), V: h.poisonedAs(cdt, nBlocks, bs, nkv, dim)}
					require.NoError(t, h.d.KVAppend(cache, h.f32(h.randn(n, 1), nBlocks*bs, nkv, dim), h.f32(h.randn(n, 1), nBlocks*bs, nkv, dim),
						h.i32(slots)), name)
					seqLens := make([]int32, S)
					for i, l := range lens {
						seqLens[i] = int32(l)
					}
					out := h.poisoned(S, nh, dim)
					require.NoError(t, h.d.DecodeAttention(out, h.f32(h.randn(S*nh*dim, 1), S, nh, dim), cache, h.i32(table, S, maxBlocks),
						h.i32(seqLens), float32(1/math.Sqrt(float64(dim)))), name)
					outs = append(outs, h.get(out))
				}
			}
		}
	}
	return outs
}

// xwtOutputs runs C = alpha·x·Wᵀ + beta·C, float32 x and C, for the row counts where every SIMD path
// takes the x·Wᵀ path rather than a GEMV (more than 32 rows, or 48 where rows of W are LONG_K or longer,
// up to XWT_MAX_M): the built-in model's shapes, and rows of W of 768 or more in float32 and in bf16 (a
// bf16 W widened as its panels pack, or as its tiles are read), one and several depth slices, with tails
// in every dimension, padded row strides, and beta applied to a C that is there.
func xwtOutputs(t *testing.T, h *harness) [][]float32 {
	var outs [][]float32
	for _, c := range []struct {
		m, n, k, pad int
		alpha, beta  float32
		w            DType
	}{
		{64, 704, 256, 0, 1, 0, F32}, {40, 256, 704, 3, 1, 1, F32}, {49, 100, 768, 0, 1, 0, F32},
		{49, 200, 768, 0, 1, 0, F32}, {64, 257, 896, 5, -0.5, 0.25, F32}, {100, 400, 1543, 0, 1, 1, F32},
		{128, 520, 800, 2, 0.5, 0, F32}, {57, 230, 2048, 1, 1, 0, F32}, {64, 257, 896, 5, -0.5, 0.25, BF16},
		{128, 530, 1600, 2, 1, 0, BF16}, {50, 201, 777, 0, 1, 1, BF16}, {64, 128, 896, 0, 1, 0, BF16},
	} {
		lda, ldb, ldc := c.k+c.pad, c.k+2*c.pad, c.n+c.pad
		C := h.f32(h.randn(c.m*ldc, 1))
		W, _ := h.upload(c.w, h.randn(c.n*ldb, 1))
		name := fmt.Sprintf("x·Wᵀ m=%d n=%d k=%d pad %d, W %s", c.m, c.n, c.k, c.pad, c.w)
		require.NoError(t, h.d.MatMulStrided(StridedMatMul{A: h.f32(h.randn(c.m*lda, 1)), B: W, C: C, TransB: true,
			M: c.m, N: c.n, K: c.k, LDA: lda, LDB: ldb, LDC: ldc, Batch: 1, Alpha: c.alpha, Beta: c.beta}), name)
		outs = append(outs, h.get(C))
	}
	return outs
}
