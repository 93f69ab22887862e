/* The paged KV cache: appending tokens' keys and values at their slots, and decode attention (one new
 * query token per sequence against its cached keys, batched). Slots, lengths and block tables are checked
 * on the device (reported at the next synchronisation with the CPU library's messages; a bad slot is
 * skipped, a sequence with a bad length or block gets NaN), so neither op waits for the host and both can
 * be captured in a graph. */
#include "common.cuh"

__global__ void kv_append_kernel(const int32_t *slots, const void *k, const void *v, int kvbf, void *kc, void *vc,
                                 int cbf, int64_t row, int64_t total, int64_t n_slots, serl_dev_err *err) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / row, e = i % row;
        const int32_t s = slots[t];
        if (s < 0) continue;
        if (s >= n_slots) {
            if (e == 0) serl_report(err, SERL_DERR_KV_SLOT, (int)t, 0, s, n_slots);
            continue;
        }
        st(kc, cbf, (int64_t)s * row + e, ld(k, kvbf, i));
        st(vc, cbf, (int64_t)s * row + e, ld(v, kvbf, i));
    }
}

extern "C" SERL_API int32_t serl_kv_append(void *ctxp, const serl_kv_append_args *a) {
    SERL_ENTER(ctxp, a, serl_kv_append_args);
    SERL_CHECK(serl_check_kv_append(ctx, a));
    const int64_t n_slots = (int64_t)a->n_blocks * a->block_size;
    const int64_t row = (int64_t)a->n_kv_heads * a->head_dim, total = row * a->n_tokens;
    kv_append_kernel<<<serl_blocks(total, 256), 256, 0, ctx->stream>>>(a->slots, a->k, a->v, a->kv_dtype == SERL_DTYPE_BF16,
                                                                        a->k_cache, a->v_cache,
                                                                        a->cache_dtype == SERL_DTYPE_BF16, row, total,
                                                                        n_slots, ctx->derr);
    LAUNCH_CHECK("kv_append");
    return SERL_OK;
}

/* Block (sequence, kv head): its G query heads share every key and value read. Keys go in tiles of
 * DEC_THREADS, one key per thread (scores for all G heads); then a warp per head folds the tile into an
 * online softmax (max, rescale, double sum), and threads over (dim, head) accumulate p·V. Fixed order
 * throughout: deterministic. Up to DEC_MAX_G heads, a key or value element is loaded once for all. */
#define DEC_THREADS 128 /* the block, and the keys in a tile */
static_assert(DEC_THREADS % 32 == 0, "decode_kernel: whole warps (and so tiles a multiple of 4, read as int4/float4)");
#define DEC_MAX_G 8 /* query heads per kv head whose scores one pass over a key serves (Qwen2.5: 7 at 0.5B) */

/* A q·k accumulator. e^s turns a score's absolute error into the weight's relative error, and a float
 * sum of terms that cancel loses it (TestCUDADecodeScores: 3.3e-4 of the output against 1.7e-7; the
 * first emulated run had float scores at the bf16 rule's f32 floor), so scores are summed more exactly: in
 * float64 where the GPU runs it at half its float32 rate (A100, H100, H200), and elsewhere (L4, A10, RTX:
 * 1/32 to 1/64, where float64 would take longer than the rest of a decode step) as a compensated float
 * sum, Ogita, Rump and Oishi's Dot2 (each product's rounding error from an fma, each sum's from TwoSum):
 * as accurate as float64 until the score is rounded to float, at 9 float operations a term. */
template <bool F64> struct dot_acc;
template <> struct dot_acc<true> {
    /* the queries as float64 in shared memory, widened once: the key element's widening is shared by
     * the G heads, but the query's was one F2F per DFMA, where an H100 converts 16 a clock per SM and
     * fuses 64 (bench/sass_loops.py decode_kernel: 453 F2F in the loop, now 215) */
    typedef double Q;
    double s = 0;
    __device__ __forceinline__ void add(double a, float b) { s = fma(a, (double)b, s); }
    __device__ __forceinline__ float scaled(float scale) const { return (float)(s * scale); }
};
template <> struct dot_acc<false> {
    typedef float Q;
    float s = 0, c = 0; /* the sum is s + c; c gathers the rounding errors */
    __device__ __forceinline__ void add(float a, float b) {
        const float p = __fmul_rn(a, b), pe = fmaf(a, b, -p); /* a·b = p + pe exactly */
        const float t = __fadd_rn(s, p), z = __fsub_rn(t, s); /* s + p = t + (s − (t − z)) + (p − z) exactly */
        c = __fadd_rn(c, __fadd_rn(__fadd_rn(__fsub_rn(s, __fsub_rn(t, z)), __fsub_rn(p, z)), pe));
        s = t;
    }
    __device__ __forceinline__ float scaled(float scale) const {
        const float hi = __fmul_rn(s, scale);
        return __fadd_rn(hi, fmaf(c, scale, fmaf(s, scale, -hi)));
    }
};

/* The cache element at byte offset sl·rb of vb: a slot (≥ 0, checked) times a row's bytes in one
 * 32×32→64-bit multiply-add, where a 64-bit index took seven instructions a key. */
template <bool BF> __device__ __forceinline__ float ld_slot(const char *vb, int sl, uint32_t rb) {
    const char *p = vb + (uint64_t)(uint32_t)sl * rb;
    return BF ? bf16_to_f32(*(const uint16_t *)p) : *(const float *)p;
}

/* p·V over a tile's nk keys for thread (d, g0)'s heads g0, g0 + step, … (o[k] for head g0 + k·step),
 * each sum over the keys in order. The values of DEC_PV_BATCH keys are read before any is used: a key at
 * a time, each warp had one 64-byte read in flight and waited a memory latency for every key (the
 * compiler unrolled the loop by 2), where an H100 needs ~12 KB in flight per SM for its bandwidth. The
 * cache's dtype is a template argument, so no branch sits between the reads of a batch. */
#define DEC_PV_BATCH 16 /* a multiple of 4: slots and weights are read as int4 and float4 */
template <bool BF>
__device__ __forceinline__ void pv_tile(float (&o)[DEC_MAX_G], const void *vc, const int *slot, const float *sc,
                                        int nk, int64_t row, int64_t off, int g0, int step, int G, int TK) {
    const uint32_t esz = BF ? 2 : 4, rb = (uint32_t)row * esz; /* row: KVH × D elements */
    const char *vb = (const char *)vc + off * esz;
    int jj = 0;
    for (; jj + DEC_PV_BATCH <= nk; jj += DEC_PV_BATCH) {
        float v[DEC_PV_BATCH];
#pragma unroll
        for (int q = 0; q < DEC_PV_BATCH / 4; q++) {
            const int4 sl = ((const int4 *)(slot + jj))[q]; /* jj and TK are multiples of 4 */
            v[4 * q] = ld_slot<BF>(vb, sl.x, rb);
            v[4 * q + 1] = ld_slot<BF>(vb, sl.y, rb);
            v[4 * q + 2] = ld_slot<BF>(vb, sl.z, rb);
            v[4 * q + 3] = ld_slot<BF>(vb, sl.w, rb);
        }
#pragma unroll
        for (int k = 0; k < DEC_MAX_G; k++) {
            const int g = g0 + k * step;
            if (g < G)
#pragma unroll
                for (int q = 0; q < DEC_PV_BATCH / 4; q++) {
                    const float4 p = ((const float4 *)(sc + g * TK + jj))[q];
                    o[k] = fmaf(p.x, v[4 * q], o[k]);
                    o[k] = fmaf(p.y, v[4 * q + 1], o[k]);
                    o[k] = fmaf(p.z, v[4 * q + 2], o[k]);
                    o[k] = fmaf(p.w, v[4 * q + 3], o[k]);
                }
        }
    }
    for (; jj < nk; jj++) {
        const float v = ld_slot<BF>(vb, slot[jj], rb);
#pragma unroll
        for (int k = 0; k < DEC_MAX_G; k++) {
            const int g = g0 + k * step;
            if (g < G) o[k] = fmaf(sc[g * TK + jj], v, o[k]);
        }
    }
}

template <bool F64>
__global__ void decode_kernel(const int32_t *block_table, const int32_t *seq_lens, const void *q, int qbf,
                              const void *kc, const void *vc, int cbf, void *out, int obf, int H, int KVH, int D,
                              int bs, int max_blocks, float scale, int n_blocks, serl_dev_err *err) {
    /* sc and slot first, 16-byte aligned (as dynamic shared memory starts; TK is a multiple of 4) for the
     * PV loop's vector reads; then the doubles. Aligned by pointer arithmetic alone, which keeps the
     * compiler's knowledge that these are shared memory (a pointer made from an integer is generic: a
     * slower load) */
    extern __shared__ float4 sm[];
    const int G = H / KVH, s = blockIdx.x, kvh = blockIdx.y, TK = DEC_THREADS;
    typedef typename dot_acc<F64>::Q QT;
    float *sc = (float *)sm;              /* [G][TK] scores, then weights */
    int *slot = (int *)(sc + G * TK);     /* [TK] */
    double *lrow = (double *)(slot + TK); /* [G] */
    QT *qs = (QT *)(lrow + G);            /* [G][D] queries */
    float *acc = (float *)(qs + G * D);   /* [G][D] */
    float *mrow = acc + G * D;            /* [G] */
    float *alpha = mrow + G;              /* [G] */
    const int L = seq_lens[s];
    const int64_t row = (int64_t)KVH * D;
    {
        /* the checks the CPU library makes before it reads: one bad length or block spoils the sequence */
        const int64_t cap = (int64_t)max_blocks * bs;
        int bad = 0;
        if (L < 1 || L > cap) {
            bad = 1;
            if (threadIdx.x == 0 && kvh == 0) serl_report(err, SERL_DERR_DECODE_LEN, s, 0, L, cap);
        } else {
            for (int b = threadIdx.x; b < (L + bs - 1) / bs; b += blockDim.x) {
                const int32_t id = block_table[(int64_t)s * max_blocks + b];
                if (id < 0 || id >= n_blocks) {
                    bad = 1;
                    if (kvh == 0) serl_report(err, SERL_DERR_DECODE_BLOCK, s, b, id, n_blocks - 1);
                }
            }
        }
        if (__syncthreads_or(bad)) {
            for (int i = threadIdx.x; i < G * D; i += blockDim.x)
                st(out, obf, ((int64_t)s * H + kvh * G + i / D) * D + i % D, NAN);
            return;
        }
    }
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
        const int g = i / D, d = i % D;
        qs[i] = (QT)ld(q, qbf, ((int64_t)s * H + kvh * G + g) * D + d);
        acc[i] = 0;
    }
    for (int g = threadIdx.x; g < G; g += blockDim.x) mrow[g] = -INFINITY, lrow[g] = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int t0 = 0; t0 < L; t0 += TK) {
        const int j = t0 + threadIdx.x;
        if (j < L) {
            const int sl = block_table[(int64_t)s * max_blocks + j / bs] * bs + j % bs;
            slot[threadIdx.x] = sl;
            const int64_t base = (int64_t)sl * row + (int64_t)kvh * D;
            /* q·k summed exactly enough (dot_acc), scaled once */
            if (G <= DEC_MAX_G) {
                /* the key read once, 8 elements at a time (one 16-byte load for an aligned bf16 row),
                 * for all G heads; each head's sum still runs over d in order */
                dot_acc<F64> dot[DEC_MAX_G];
                int d = 0;
                const bool vec = cbf && !(((uintptr_t)kc + (uintptr_t)base * 2) & 15);
                for (; d + 8 <= D; d += 8) {
                    float kv[8];
                    if (vec) {
                        const uint4 w = *(const uint4 *)((const uint16_t *)kc + base + d);
                        const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
                        for (int e = 0; e < 4; e++) kv[2 * e] = bf16_to_f32((uint16_t)u[e]), kv[2 * e + 1] = bf16_to_f32((uint16_t)(u[e] >> 16));
                    } else {
#pragma unroll
                        for (int e = 0; e < 8; e++) kv[e] = ld(kc, cbf, base + d + e);
                    }
#pragma unroll
                    for (int g = 0; g < DEC_MAX_G; g++)
                        if (g < G)
#pragma unroll
                            for (int e = 0; e < 8; e++) dot[g].add(qs[g * D + d + e], kv[e]);
                }
                for (; d < D; d++) {
                    const float kd = ld(kc, cbf, base + d);
#pragma unroll
                    for (int g = 0; g < DEC_MAX_G; g++)
                        if (g < G) dot[g].add(qs[g * D + d], kd);
                }
#pragma unroll
                for (int g = 0; g < DEC_MAX_G; g++)
                    if (g < G) sc[g * TK + threadIdx.x] = dot[g].scaled(scale);
            } else {
                for (int g = 0; g < G; g++) {
                    dot_acc<F64> dot;
                    for (int d = 0; d < D; d++) dot.add(qs[g * D + d], ld(kc, cbf, base + d));
                    sc[g * TK + threadIdx.x] = dot.scaled(scale);
                }
            }
        } else {
            slot[threadIdx.x] = -1;
            for (int g = 0; g < G; g++) sc[g * TK + threadIdx.x] = -INFINITY;
        }
        __syncthreads();
        for (int g = wid; g < G; g += nw) {
            float mx = -INFINITY;
            for (int jj = lane; jj < TK; jj += 32) mx = fmaxf(mx, sc[g * TK + jj]);
            mx = warp_max(mx);
            const float mnew = fmaxf(mx, mrow[g]);
            double sum = 0;
            for (int jj = lane; jj < TK; jj += 32) {
                const float p = expf(sc[g * TK + jj] - mnew);
                sc[g * TK + jj] = j - threadIdx.x + jj < L ? p : 0.0f;
                sum += sc[g * TK + jj];
            }
            sum = warp_sum(sum);
            __syncwarp(); /* every lane has read mrow[g] before lane 0 writes it: the shuffles order no memory */
            if (lane == 0) {
                const float al = mrow[g] == -INFINITY ? 0.0f : expf(mrow[g] - mnew);
                alpha[g] = al;
                lrow[g] = lrow[g] * al + sum;
                mrow[g] = mnew;
            }
        }
        __syncthreads();
        const int nk = min(TK, L - t0);
        if (D <= TK && TK % D == 0 && G <= DEC_MAX_G) {
            /* thread (d, g0) owns the heads g0, g0 + TK/D, …: each value is read once for all of them;
             * each (head, d) still sums over the keys in order, as below */
            const int d = threadIdx.x % D, g0 = threadIdx.x / D, step = TK / D;
            float o[DEC_MAX_G];
#pragma unroll
            for (int k = 0; k < DEC_MAX_G; k++) {
                const int g = g0 + k * step;
                if (g < G) o[k] = acc[g * D + d] * alpha[g];
            }
            if (cbf) pv_tile<true>(o, vc, slot, sc, nk, row, (int64_t)kvh * D + d, g0, step, G, TK);
            else pv_tile<false>(o, vc, slot, sc, nk, row, (int64_t)kvh * D + d, g0, step, G, TK);
#pragma unroll
            for (int k = 0; k < DEC_MAX_G; k++) {
                const int g = g0 + k * step;
                if (g < G) acc[g * D + d] = o[k];
            }
        } else {
            for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
                const int g = i / D, d = i % D;
                float o = acc[i] * alpha[g];
                for (int jj = 0; jj < nk; jj++) o = fmaf(sc[g * TK + jj], ld(vc, cbf, (int64_t)slot[jj] * row + (int64_t)kvh * D + d), o);
                acc[i] = o;
            }
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
        const int g = i / D, d = i % D;
        st(out, obf, ((int64_t)s * H + kvh * G + g) * D + d, (float)(acc[i] / lrow[g]));
    }
}

extern "C" SERL_API int32_t serl_decode_attention(void *ctxp, const serl_decode_attention_args *a) {
    SERL_ENTER(ctxp, a, serl_decode_attention_args);
    SERL_CHECK(serl_check_decode_attention(ctx, a));
    const int G = a->n_heads / a->n_kv_heads, D = a->head_dim, TK = DEC_THREADS;
    const size_t qsz = ctx->fast_fp64 ? sizeof(double) : sizeof(float); /* dot_acc's query element */
    /* decode_kernel's layout: sc, slot, lrow, qs, acc, mrow, alpha */
    size_t shm = sizeof(float) * (size_t)(G * TK) + sizeof(int) * TK + sizeof(double) * G + qsz * (size_t)(G * D) +
                 sizeof(float) * (size_t)(G * D + 2 * G);
    SERL_REQUIRE(shm <= 200 * 1024, "decode_attention: %d query heads per kv head × head_dim %d need %zu bytes of shared memory",
                 G, D, shm);
    const dim3 grid(a->n_seqs, a->n_kv_heads);
    const int qbf = a->q_dtype == SERL_DTYPE_BF16, cbf = a->cache_dtype == SERL_DTYPE_BF16, obf = a->out_dtype == SERL_DTYPE_BF16;
    const auto decode = ctx->fast_fp64 ? decode_kernel<true> : decode_kernel<false>;
    if (shm > 48 * 1024) CUDA_TRY(cudaFuncSetAttribute(decode, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    decode<<<grid, TK, shm, ctx->stream>>>(a->block_table, a->seq_lens, a->q, qbf, a->k_cache, a->v_cache, cbf, a->out, obf,
                                           a->n_heads, a->n_kv_heads, D, a->block_size, a->max_blocks, a->scale, a->n_blocks,
                                           ctx->derr);
    LAUNCH_CHECK("decode_attention");
    return SERL_OK;
}
