package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/serl-go/serl/kernels/ref"
)

// TestCUDADevice checks what the conformance suite takes for granted of the CUDA backend: it reports a
// device with memory, and memory round-trips through it. Skipped where no GPU answers.
func TestCUDADevice(t *testing.T) {
	d := cudaDevice(t)
	in := d.Info()
	t.Logf("cuda: %s, %.1f GiB total, %.1f GiB free, %s", in.Name, float64(in.TotalMemory)/(1<<30),
		float64(in.FreeMemory)/(1<<30), in.Library)
	require.Equal(t, "cuda", in.Backend)
	require.NotEmpty(t, in.Name)
	require.Positive(t, in.TotalMemory)
	require.False(t, d.HostVisible(), "device memory is not host memory")
	x, err := d.Alloc(F32, 1000)
	require.NoError(t, err)
	defer d.Free(x)
	want := make([]float32, 1000)
	for i := range want {
		want[i] = float32(i) * 0.5
	}
	require.NoError(t, Upload(x, want))
	got := make([]float32, 1000)
	require.NoError(t, Download(got, x))
	require.Equal(t, want, got)
}

// TestCUDAMatchesCPU runs one training-shaped chain of ops on both backends from the same inputs and
// requires the same results within float32 rounding: a check across backends beside the suite's
// checks against the reference.
func TestCUDAMatchesCPU(t *testing.T) {
	g := cudaDevice(t)
	c := cpuDevice(t)
	const m, n, k = 37, 53, 129
	run := func(d *Device) []float32 {
		hA := make([]float32, m*k)
		hB := make([]float32, k*n)
		for i := range hA {
			hA[i] = float32((i*7919)%201-100) / 100
		}
		for i := range hB {
			hB[i] = float32((i*104729)%199-99) / 99
		}
		A, B, C := d.MustAlloc(F32, m, k), d.MustAlloc(F32, k, n), d.MustAlloc(F32, m, n)
		defer d.Free(A)
		defer d.Free(B)
		defer d.Free(C)
		require.NoError(t, Upload(A, hA))
		require.NoError(t, Upload(B, hB))
		require.NoError(t, d.MatMul(MatMul{A: A, B: B, C: C, Alpha: 1}))
		out := make([]float32, m*n)
		require.NoError(t, Download(out, C))
		return out
	}
	requireClose(t, "matmul cuda vs cpu", run(g), run(c), 1e-5)
}

// TestCUDAAdamWMatchesCPU: AdamW gives the CPU library's bits on the GPU, over the 16-byte groups of 4
// and the element-by-element tail (n = 1003), with the bf16 copy and the clip read from device memory:
// the same roundings in the same order on both (p·decay fused into the subtraction, as the CPU's fmsub).
func TestCUDAAdamWMatchesCPU(t *testing.T) {
	g := cudaDevice(t)
	c := cpuDevice(t)
	hc := newHarness(t, c)
	const n = 1003
	p0, m0, v0 := hc.randn(n, 1), hc.randn(n, 0.1), hc.randn(n, 0.1)
	for i := range v0 {
		v0[i] *= v0[i]
	}
	grads := [][]float32{hc.randn(n, 3), hc.randn(n, 3), hc.randn(n, 3)}
	type state struct {
		p, m, v []float32
		pb      []uint16
	}
	run := func(d *Device) state {
		h := newHarness(t, d)
		p, m, v, pb := h.f32(p0), h.f32(m0), h.f32(v0), h.poisonedAs(BF16, n)
		for step, gr := range grads {
			// a given norm (not each device's own sum): the clip factor is then the same on both
			tg, nrm := h.f32(gr), h.f32([]float32{7.5})
			hp := AdamWParams{Step: step + 1, LR: 3e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1,
				GradScale: 0.5, GradNorm: nrm, MaxNorm: 1, PBF16: pb}
			require.NoError(t, d.AdamW(p, tg, m, v, hp))
		}
		return state{h.get(p), h.get(m), h.get(v), h.bits(pb)}
	}
	want, got := run(c), run(g)
	for _, x := range []struct {
		name      string
		got, want []float32
	}{{"p", got.p, want.p}, {"m", got.m, want.m}, {"v", got.v, want.v}} {
		for i := range x.want {
			if math.Float32bits(x.got[i]) != math.Float32bits(x.want[i]) {
				t.Fatalf("adamw %s[%d]: cuda %g (%#x), cpu %g (%#x)", x.name, i, x.got[i], math.Float32bits(x.got[i]),
					x.want[i], math.Float32bits(x.want[i]))
			}
		}
	}
	require.Equal(t, want.pb, got.pb, "adamw bf16 copy: cuda vs cpu")
}

// TestCUDASampleMatchesCPU: the same logits and seeds give the same token on both devices (the CPU
// sampler's generator and rule on the GPU), over greedy, temperature, top-k, top-p and penalties, for
// every row whose decision the CPU's own float32 weights leave clear (the reference's margin).
func TestCUDASampleMatchesCPU(t *testing.T) {
	g := cudaDevice(t)
	c := cpuDevice(t)
	h := newHarness(t, c)
	for _, vocab := range []int{1, 7, 257, 4099, 151936} {
		n := 96
		if vocab > 10000 {
			n = 16
		}
		b := newBatch(h, n, vocab, 3)
		for r := 0; r < n; r++ {
			b.temp[r] = []float32{0, 0.7, 1, 1.3}[r%4]
			b.topK[r] = []int32{0, 1, 5, 50}[(r/4)%4]
			b.topP[r] = []float32{1, 0.9, 0.5}[(r/16)%3]
			if r%5 == 0 {
				b.pen[r] = 1.5
			}
		}
		b.hist = make([][]int32, n)
		for r := range b.hist {
			for i := 0; i < r%6; i++ {
				b.hist[r] = append(b.hist[r], int32((r*31+i*17)%vocab))
			}
		}
		tc, lc := b.run(t, c)
		tg, lg := b.run(t, g)
		diff := 0
		for r := 0; r < n; r++ {
			if b.ref(r).Margin < 1e-6 {
				continue
			}
			if tc[r] != tg[r] {
				diff++
				t.Errorf("vocab %d row %d: cpu token %d, cuda token %d", vocab, r, tc[r], tg[r])
			}
		}
		require.Zero(t, diff, "vocab %d: tokens differ", vocab)
		requireClose(t, "sample logp cuda vs cpu", lg, lc, 1e-5)
	}
}

// TestCUDAComputeCapability: a GPU older than sm_80 (a T4, a V100) is refused when its context is
// created, by name, rather than failing at the first kernel with "no kernel image"; "auto" then opens
// the CPU and keeps the reason. Only the SIMT emulator can pretend to be such a GPU (SERL_SIMT_SM=75);
// the native library reads the variable from the process's own environment, so the test runs itself
// again with it set.
func TestCUDAComputeCapability(t *testing.T) {
	if os.Getenv("SERL_SIMT_SM") != "75" {
		if d := cudaDevice(t); !strings.Contains(d.Info().Name, "SIMT emulator") {
			t.Skip("skipped: a real GPU answers; only the SIMT emulator can report an older one")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCUDAComputeCapability$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SERL_SIMT_SM=75")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "--- PASS: TestCUDAComputeCapability", "%s", out)
		return
	}
	_, err := Open("cuda", 0)
	require.ErrorContains(t, err, "(serl SIMT emulator (CPU)) is compute capability 7.5; serl's CUDA kernels need 8.0 or newer")
	d, err := Open("auto", 0)
	require.NoError(t, err)
	defer d.Close()
	require.Equal(t, "cpu", d.Backend())
	require.Contains(t, d.Info().Fallback, "compute capability 7.5")
}

// TestCUDAAttentionChoice: SERL_CUDA_ATTN, read when a CUDA context is created: attention on tensor
// cores by default and with mma, on CUDA cores with cores (the device's name says which), and any other
// value refused by name rather than ignored, by --device auto too (not a run on the CPU instead). The
// library reads the process's own environment, so the test runs itself again for each value.
func TestCUDAAttentionChoice(t *testing.T) {
	if os.Getenv("SERL_TEST_ATTN_CHILD") == "1" {
		for _, backend := range []string{"cuda", "auto"} {
			d, err := Open(backend, 0)
			if err != nil {
				fmt.Printf("%s: %v\n", backend, err)
				continue
			}
			fmt.Printf("%s: %s: %s\n", backend, d.Backend(), d.Info().Name)
			d.Close()
		}
		return
	}
	cudaDevice(t) // skipped where no GPU answers
	refused := "serl cuda: SERL_CUDA_ATTN=tensor: want mma (bf16 attention on tensor cores, the default) or cores"
	for _, c := range []struct{ value, want string }{
		{"", "cuda: cuda: "}, {"", " mma attention)\nauto: cuda: "}, {"mma", " mma attention)\nauto: cuda: "},
		{"cores", " cores attention)\nauto: cuda: "}, {"tensor", "cuda: kernels: "}, {"tensor", refused + "\nauto: kernels: "},
		{"tensor", refused + "\n"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCUDAAttentionChoice$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SERL_TEST_ATTN_CHILD=1", "SERL_CUDA_ATTN="+c.value)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), c.want, "SERL_CUDA_ATTN=%q", c.value)
	}
}

// TestCUDADecodeScores: decode_attention sums each score q·k more exactly than a float sum would —
// in float64 where the GPU runs it fast (A100, H100, H200), as a compensated float sum elsewhere (L4,
// A10, RTX; SERL_SIMT_SM=89 takes that path on the emulator) — so a score whose terms cancel still
// comes out right. Here every term is ~±4096 and each score O(1): a float sum misses the output by
// ~3e-4 relative, while either exact sum leaves only the float softmax's and output's own rounding.
func TestCUDADecodeScores(t *testing.T) {
	h := newHarness(t, cudaDevice(t))
	const nh, dim, bs = 2, 64, 16
	lens := []int{40, 77, 128}
	S, maxBlocks := len(lens), 8
	scale := 1 / math.Sqrt(dim)
	var q, kc, vc []float32
	table := make([]int32, S*maxBlocks)
	for i := range table {
		table[i] = int32(i)
	}
	kc, vc = make([]float32, S*maxBlocks*bs*nh*dim), make([]float32, S*maxBlocks*bs*nh*dim)
	for s, l := range lens {
		for hd := 0; hd < nh; hd++ {
			qh := h.randn(dim, 64)
			var qq float64
			for _, x := range qh {
				qq += float64(x) * float64(x)
			}
			q = append(q, qh...)
			for j := 0; j < l; j++ {
				// k ⟂ q, then a score of target t: terms q_d·k_d of ~4096 that sum to ~t
				k, target := h.randn(dim, 64), 3*h.rng.NormFloat64()
				var kq float64
				for d := range k {
					kq += float64(k[d]) * float64(qh[d])
				}
				off := ((s*maxBlocks+j/bs)*bs+j%bs)*nh*dim + hd*dim
				for d := range k {
					kc[off+d] = float32(float64(k[d]) + (target-kq)/qq*float64(qh[d]))
					vc[off+d] = float32(h.rng.NormFloat64())
				}
			}
		}
	}
	seqLens := make([]int32, S)
	for s, l := range lens {
		seqLens[s] = int32(l)
	}
	cache := KVCache{K: h.f32(kc, S*maxBlocks, bs, nh, dim), V: h.f32(vc, S*maxBlocks, bs, nh, dim)}
	out := h.poisoned(S, nh, dim)
	require.NoError(t, h.d.DecodeAttention(out, h.f32(q, S, nh, dim), cache, h.i32(table, S, maxBlocks), h.i32(seqLens), float32(scale)))
	want := make([]float64, S*nh*dim)
	ref.DecodeAttention(want, f64(q), f64(kc), f64(vc), table, seqLens, maxBlocks, bs, nh, nh, dim, scale)
	// 1.7e-7 measured on the emulator with either exact sum, 3.3e-4 with a float sum of fmas; the
	// margin is for a GPU's own expf (2 ulp, glibc's 1)
	e := relErr64(h.get(out), want)
	t.Logf("relative error %.3g", e)
	require.Less(t, e, 6e-7, "decode scores summed no better than in float")
}

// TestCUDAAttentionHeadDims: the bf16 attention forward and backward at the head dims the tensor-core
// kernels take (64 and 128, by default; SERL_CUDA_ATTN=cores runs the CUDA-core ones) against the
// float64 reference under the bf16 rule, over the suite's packings and head configurations and a
// 300-token sequence (five tiles of 64, the backward's sub-tiles at every offset), and that sequence
// again with q, k, v and dout not 16-byte aligned (the tiles then load without cp.async). bench/gpu.sh
// runs it both ways.
func TestCUDAAttentionHeadDims(t *testing.T) {
	h := newHarness(t, cudaDevice(t))
	long := []int{300, 1, 129}
	for _, lens := range append(append([][]int{}, packings...), long) {
		for _, hc := range headConfigs {
			for _, dim := range []int{64, 128} {
				checkAttentionBF16(t, h, lens, hc[0], hc[1], dim, 0)
			}
		}
	}
	for _, dim := range []int{64, 128} {
		checkAttentionBF16(t, h, long, 4, 2, dim, 2)
	}
}

// benchDeviceOp runs op as the sub-benchmark name, once to warm up (scratch, caches), then b.N times
// between two synchronisations, and reports per (an amount of work per call) per second as unit.
func benchDeviceOp(b *testing.B, d *Device, name string, per float64, unit string, op func() error) {
	b.Run(name, func(b *testing.B) {
		require.NoError(b, op())
		require.NoError(b, d.Sync())
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		require.NoError(b, d.Sync())
		b.ReportMetric(per*float64(b.N)/b.Elapsed().Seconds(), unit)
	})
}

// benchAlloc: a benchmark's tensors, zeroed, freed when it ends.
func benchAlloc(b *testing.B, d *Device) func(DType, ...int) Tensor {
	return func(dt DType, dims ...int) Tensor {
		x := d.MustAlloc(dt, dims...)
		b.Cleanup(func() { d.Free(x) })
		require.NoError(b, d.Zero(x))
		return x
	}
}

// BenchmarkCUDAAttention measures the bf16 attention forward and backward at the training shapes of
// Qwen2.5-0.5B (16 sequences of 1,024 tokens, 14/2 heads of 64) and 1.5B (8 of 1,024, 12/2 heads of
// 128), as TFLOP/s of the causal products: the forward's two, 4·pairs·heads·head_dim, and the
// backward's five, 2.5× that (the backward's recomputed S counted, as FlashAttention counts it). Run it
// as is for the tensor-core kernels and with SERL_CUDA_ATTN=cores for the CUDA-core ones (bench/gpu-perf.sh
// runs both, and PyTorch's SDPA beside them). The inputs are zeros: the kernels' time does not depend on
// the values. Skipped where no GPU answers.
func BenchmarkCUDAAttention(b *testing.B) {
	d := cudaDevice(b)
	for _, c := range []struct {
		name                 string
		seqs, n, h, kvh, dim int
	}{{"0.5B", 16, 1024, 14, 2, 64}, {"1.5B", 8, 1024, 12, 2, 128}} {
		T := c.seqs * c.n
		alloc := benchAlloc(b, d)
		q, k, v, out, lse := alloc(BF16, T, c.h, c.dim), alloc(BF16, T, c.kvh, c.dim), alloc(BF16, T, c.kvh, c.dim), alloc(BF16, T, c.h, c.dim), alloc(F32, T, c.h)
		dout, dq, dk, dv := alloc(BF16, T, c.h, c.dim), alloc(BF16, T, c.h, c.dim), alloc(BF16, T, c.kvh, c.dim), alloc(BF16, T, c.kvh, c.dim)
		cu := alloc(I32, c.seqs+1)
		host := make([]int32, c.seqs+1)
		for i := range host {
			host[i] = int32(i * c.n)
		}
		require.NoError(b, Upload(cu, host))
		scale := float32(1 / math.Sqrt(float64(c.dim)))
		fwd := 4 * float64(c.seqs) * float64(c.n) * float64(c.n+1) / 2 * float64(c.h*c.dim) / 1e12
		benchDeviceOp(b, d, c.name+"/fwd", fwd, "TFLOP/s", func() error {
			return d.AttentionFwd(Attention{Q: q, K: k, V: v, Out: out, LSE: lse, CuSeqlens: cu, MaxLen: c.n, Scale: scale})
		})
		benchDeviceOp(b, d, c.name+"/bwd", 2.5*fwd, "TFLOP/s", func() error {
			return d.AttentionBwd(AttentionGrad{Q: q, K: k, V: v, Out: out, LSE: lse, DOut: dout, DQ: dq, DK: dk, DV: dv,
				CuSeqlens: cu, MaxLen: c.n, Scale: scale})
		})
	}
}

// benchDecodeAttention runs decode attention as a decode step of Qwen2.5-0.5B meets it (14/2 heads of
// 64): seqs sequences of ctx cached tokens in a bf16 cache of 16-token blocks, each sequence's blocks
// spread over the cache as concurrent generation leaves them. Bytes: the keys and values read.
func benchDecodeAttention(b *testing.B, d *Device, seqs, ctx int, run func(string, float64, func() error)) {
	const nh, kvh, dim, bs = 14, 2, 64, 16
	mb := (ctx + bs - 1) / bs
	alloc := benchAlloc(b, d)
	kc, vc := alloc(BF16, seqs*mb, bs, kvh, dim), alloc(BF16, seqs*mb, bs, kvh, dim)
	q, out := alloc(BF16, seqs, nh, dim), alloc(BF16, seqs, nh, dim)
	table, lens := alloc(I32, seqs, mb), alloc(I32, seqs)
	tb, ls := make([]int32, seqs*mb), make([]int32, seqs)
	for s := range seqs {
		for j := range mb {
			tb[s*mb+j] = int32(j*seqs + s)
		}
		ls[s] = int32(ctx)
	}
	require.NoError(b, Upload(table, tb))
	require.NoError(b, Upload(lens, ls))
	run(fmt.Sprintf("decode_attention/%dx%d", seqs, ctx), float64(2*seqs*ctx*kvh*dim*2), func() error {
		return d.DecodeAttention(out, q, KVCache{K: kc, V: vc}, table, lens, 0.125)
	})
}

// BenchmarkCUDAOps measures the memory-bound ops at Qwen2.5-0.5B's training shapes (16 × 1024 tokens,
// hidden 896, intermediate 4864, 14/2 heads of 64, one 883-token chunk of the 151,936-token head) in
// bf16, and the sampling and decode attention of a 256-sequence decode step, as GB/s of the bytes each
// op must move (the H200 moves ~4.3 TB/s device to device). The inputs are zeros where the ops' time
// does not depend on the values (the sampler's logits are random). Skipped where no GPU answers.
func BenchmarkCUDAOps(b *testing.B) {
	d := cudaDevice(b)
	const T, H, I, V, C = 16384, 896, 4864, 151936, 883
	alloc := benchAlloc(b, d)
	run := func(name string, bytes float64, op func() error) { benchDeviceOp(b, d, name, bytes/1e9, "GB/s", op) }
	logits, tg, lse, logp, coef := alloc(BF16, C, V), alloc(I32, C), alloc(F32, C), alloc(F32, C), alloc(F32, C)
	run("logprob_fwd", 2*C*V, func() error { return d.LogProbFwd(logp, Tensor{}, lse, logits, tg, 1, true) })
	run("logprob_bwd", 4*C*V, func() error { return d.LogProbBwd(logits, logits, tg, lse, coef, 1, true) })
	gate, up, out, dg, du := alloc(BF16, T, I), alloc(BF16, T, I), alloc(BF16, T, I), alloc(BF16, T, I), alloc(BF16, T, I)
	run("swiglu_fwd", 6*T*I, func() error { return d.SwiGLUFwd(out, gate, up) })
	run("swiglu_bwd", 10*T*I, func() error { return d.SwiGLUBwd(dg, du, gate, up, out) })
	x, y, w, rstd := alloc(BF16, T, H), alloc(BF16, T, H), alloc(F32, H), alloc(F32, T)
	run("rmsnorm_fwd", 4*T*H, func() error { return d.RMSNormFwd(y, rstd, x, w, 1e-6) })
	q, pos, inv := alloc(BF16, T, 14, 64), alloc(I32, T), alloc(F32, 32)
	run("rope_q", 4*T*14*64, func() error { return d.RoPE(q, q, pos, inv, 64, false, false) })
	bias := alloc(BF16, H)
	run("bias_add", 4*T*H, func() error { return d.BiasAdd(y, bias) })
	// embedding backward: bf16 dout into an f32 table gradient. Token ids as text has them (Zipf: the
	// commonest id is ~13% of the tokens, one thread sums its run in token order), and the worst case of
	// one id throughout. Bytes: the ids, dout, and a read and write of each distinct id's row.
	ids, dtable := alloc(I32, T), alloc(F32, V, H)
	for _, c := range []struct {
		name string
		id   func(z *rand.Zipf) int32
	}{{"embedding_bwd", func(z *rand.Zipf) int32 { return int32(z.Uint64()) }},
		{"embedding_bwd_one_id", func(*rand.Zipf) int32 { return 0 }}} {
		z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, V-1)
		host, distinct := make([]int32, T), map[int32]bool{}
		for i := range host {
			host[i] = c.id(z)
			distinct[host[i]] = true
		}
		require.NoError(b, Upload(ids, host))
		run(c.name, float64(T*(4+2*H)+len(distinct)*8*H), func() error { return d.EmbeddingBwd(dtable, x, ids) })
	}
	// sampling a 256-sequence decode step's tokens over Qwen2.5's vocabulary from float32 logits (normal,
	// spread 3), with everything kept (rollouts) and with top-p 0.95 (self-instruction, maj@K), whose
	// radix passes add to shared counters; bytes: one read of the logits
	const R = 256
	sl := alloc(F32, R, V)
	host := make([]float32, R*V)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range host {
		host[i] = float32(3 * rng.NormFloat64())
	}
	require.NoError(b, Upload(sl, host))
	fill := func(t Tensor, v float32) Tensor {
		require.NoError(b, Upload(t, slices.Repeat([]float32{v}, t.Len())))
		return t
	}
	seeds, seqs := alloc(U64, R), alloc(U64, R)
	require.NoError(b, Upload(seqs, func() []uint64 {
		x := make([]uint64, R)
		for i := range x {
			x[i] = uint64(i)
		}
		return x
	}()))
	for _, c := range []struct {
		name string
		topP float32
	}{{"sample", 1}, {"sample_top_p", 0.95}} {
		sp := Sample{Logits: sl, Temperature: fill(alloc(F32, R), 1), TopP: fill(alloc(F32, R), c.topP),
			PresencePenalty: alloc(F32, R), TopK: alloc(I32, R), Seeds: seeds, SeqIDs: seqs, Steps: alloc(I32, R),
			Tokens: alloc(I32, R)}
		run(c.name, 4*R*V, func() error { return d.Sample(sp) })
	}
	benchDecodeAttention(b, d, 256, 320, run)
	const P = 494_032_768 // Qwen2.5-0.5B's parameters
	p, g, m, v, pb := alloc(F32, P), alloc(F32, P), alloc(F32, P), alloc(F32, P), alloc(BF16, P)
	run("adamw", 30*P, func() error {
		return d.AdamW(p, g, m, v, AdamWParams{Step: 1, LR: 1e-5, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, GradScale: 1, PBF16: pb})
	})
}
