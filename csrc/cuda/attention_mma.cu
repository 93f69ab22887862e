/* The bf16 tensor-core forward of causal attention (FlashAttention-2's structure on mma.sync
 * m16n8k16, bf16 inputs, float32 accumulation): a block of 4 warps owns 64 queries of one head, each
 * warp 16 of them; keys and values stream through shared memory 64 at a time, in two stages so that
 * cp.async copies the next tile while the warps work on this one; S = Q·Kᵀ and the online softmax stay
 * in registers, P is rounded to bf16 for P·V as FlashAttention does, and the log-sum-exp is saved for
 * the backward. Fragments come from shared memory by ldmatrix. head_dim 64 or 128.
 *
 * The backward (head_dim 64 or 128) is below.
 *
 * Not yet run on a GPU, only on the SIMT emulator (csrc/cudaemu, which models mma.sync's and ldmatrix's
 * fragment layouts): it is the default for bf16 with head_dim 64 or 128, and SERL_CUDA_ATTN=cores sets it
 * aside; bench/gpu.sh runs the attention cases both ways. */
#include <cuda_bf16.h>
#include <float.h>

#include "common.cuh"
#include "ops.cuh"

#define MMA_WARPS 4
#define MMA_BQ (16 * MMA_WARPS) /* queries per block */
#define MMA_BK 64               /* keys per tile */
#define PAD 8                   /* bf16 elements of padding per shared row: rows stay 16-byte aligned, banks spread */
static_assert(MMA_BQ == 64 && MMA_BK == 64, "load_rows moves tiles of 64 rows");

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#ifdef SERL_SIMT /* the CPU emulator's warp-collective twin (csrc/cudaemu) */
    simt::mma_m16n8k16_bf16(c, a, b0, b1);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* two floats → bf16x2 (round to nearest even), lo in the low half: one cvt on sm_80+, where the software
 * rounding of f32_to_bf16 takes about five instructions an element and a branch for NaN (the same bits
 * for every number; P and dS hold no NaN) */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
#ifdef SERL_SIMT /* the CPU emulator: the same rounding */
    return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16);
#else
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}

/* 2^x on the multi-function unit (ex2.approx.ftz: ~2 ulp, 2^−∞ = 0), with scores taken to base 2 once
 * by one FFMA (x = s·scale·log2 e − m), as FlashAttention does. expf's accurate range reduction took
 * about eight instructions an element, and its guard against −∞ a branch: the forward's loop issued
 * 21 instructions per mma.sync at head_dim 64 (bench/sass_loops.py), and the tensor cores waited on
 * issue. */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f
__device__ __forceinline__ float exp2_fast(float x) {
#ifdef SERL_SIMT
    /* the CPU emulator: the host's exp2f moved by a fixed −2 … +2 ulp (a hash of its bits), as far as
     * ex2.approx may stray (CUDA documents exp2f, built on it, to 2 ulp), and a subnormal result flushed
     * as .ftz does: the tests then hold the kernels to their tolerances with the hardware's error */
    const float y = exp2f(x);
    if (!(y >= FLT_MIN) || y > 0x1p126f) return y < FLT_MIN ? 0.0f : y; /* 0, subnormal → 0; huge, inf, NaN as they are */
    const uint32_t u = __float_as_uint(y);
    return __uint_as_float(u + (uint32_t)((u * 2654435761u) >> 16) % 5u - 2u);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#endif
}

/* ldmatrix.x4: four 8×8 bf16 matrices from shared memory in one warp instruction; lane 8·m + i gives
 * the address of row i of matrix m (16 bytes, 16-byte aligned), and r[m] receives the fragment of
 * matrix m that mma.sync takes: the elements (g, 2t), (g, 2t + 1) of it, or with trans those of its
 * transpose, (2t, g) and (2t + 1, g). The transposed load reads a row-major [k][n] tile as mma's
 * column-major B operand, so no tile is ever stored transposed (two-byte stores a row apart land in
 * the same bank, eight ways). */
template <bool TRANS> __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const uint16_t *row) {
#ifdef SERL_SIMT /* the CPU emulator's warp-collective twin (csrc/cudaemu) */
    simt::ldmatrix_x4(r, row, TRANS);
#else
    const unsigned a = (unsigned)__cvta_generic_to_shared(row);
    if (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
#endif
}

/* A fragments of 16 rows (row0 .. row0+15) of a [rows][RS] bf16 tile, all HD/16 k-steps: matrices
 * (rows 0–7, cols 0–7), (8–15, 0–7), (0–7, 8–15), (8–15, 8–15) of each 16 × 16 block */
template <int HD>
__device__ __forceinline__ void frag_rows(uint32_t a[HD / 16][4], const uint16_t *tile, int RS, int row0, int lane) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) ldsm_x4<false>(a[kk], tile + (row0 + (lane & 15)) * RS + kk * 16 + (lane >> 4) * 8);
}

/* acc[NB blocks of 8 columns] = A(16 × HD) · Bᵀ where B is a [NB·8][RS] tile (NB·8 columns, HD deep):
 * one ldmatrix gives a block's B fragments for two k-steps */
template <int HD, int NB>
__device__ __forceinline__ void mma_abt(float acc[NB][4], const uint32_t a[HD / 16][4], const uint16_t *b, int RS, int lane) {
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
        acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk += 2) {
            uint32_t r[4];
            ldsm_x4<false>(r, b + (nb * 8 + (lane & 7)) * RS + kk * 16 + (lane >> 3) * 8);
            mma_bf16(acc[nb], a[kk], r[0], r[1]);
            mma_bf16(acc[nb], a[kk + 1], r[2], r[3]);
        }
    }
}

/* out[HD/8 blocks] += P(16 × NB·8, accumulator layout in p) · B where B is a [NB·8][RS] tile (NB·8
 * deep, HD columns): one transposed ldmatrix gives the B fragments of two column blocks */
template <int HD, int NB>
__device__ __forceinline__ void mma_pb(float out[HD / 8][4], const float p[NB][4], const uint16_t *b, int RS, int lane) {
#pragma unroll
    for (int kk = 0; kk < NB / 2; kk++) {
        uint32_t pa[4];
        pa[0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
        pa[1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
        pa[2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        pa[3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int n = 0; n < HD / 8; n += 2) {
            uint32_t r[4];
            ldsm_x4<true>(r, b + (kk * 16 + (lane & 15)) * RS + (n + (lane >> 4)) * 8);
            mma_bf16(out[n], pa, r[0], r[1]);
            mma_bf16(out[n + 1], pa, r[2], r[3]);
        }
    }
}

/* cp.async: 16 bytes from global to shared memory without passing through registers, so that the next
 * tile's copy runs under the work on this one; bytes past src_bytes are zeros. It lands by the thread's
 * next cp_async_wait_all; others see it after a barrier that follows that wait. */
__device__ __forceinline__ void cp_async16(uint16_t *dst, const uint16_t *src, int src_bytes) {
#ifdef SERL_SIMT /* the CPU emulator's twin (csrc/cudaemu) */
    simt::cp_async16(dst, src, src_bytes);
#else
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#ifdef SERL_SIMT
    simt::cp_async_wait_all();
#else
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

/* 64 rows × HD bf16 tile (row stride RS) from a [tokens, heads, HD] tensor; rows past `end` are zeros.
 * With vec (the tensor 16-byte aligned, as the model's always are) by cp.async in 16-byte pieces, landed
 * at the next cp_async_wait_all; otherwise by 4-byte loads and stores, at once. */
template <int HD>
__device__ __forceinline__ void load_rows(uint16_t *dst, int RS, const uint16_t *src, int first, int end, int heads, int head, bool vec) {
    if (vec) {
        for (int e = threadIdx.x; e < 64 * HD / 8; e += blockDim.x) {
            const int r = e / (HD / 8), c = (e % (HD / 8)) * 8, i = first + r;
            const bool in = i < end;
            cp_async16(dst + r * RS + c, in ? src + ((int64_t)i * heads + head) * HD + c : src, in ? 16 : 0);
        }
        return;
    }
    for (int e = threadIdx.x; e < 64 * HD / 2; e += blockDim.x) {
        const int r = e / (HD / 2), c = (e % (HD / 2)) * 2, i = first + r;
        uint32_t w = 0;
        if (i < end) w = *(const uint32_t *)(src + ((int64_t)i * heads + head) * HD + c);
        *(uint32_t *)(dst + r * RS + c) = w;
    }
}

template <int HD>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attn_fwd_mma_kernel(const int32_t *cu, int tiles, int n_tok, const uint16_t *q, const uint16_t *k, const uint16_t *v, void *out, int obf,
                    float *lse, int H, int KVH, float scale, int vec, const serl_dev_err *err) {
    extern __shared__ uint16_t smem[];
    constexpr int RS = HD + PAD, TILE = 64 * RS;
    uint16_t *Qs = smem, *KV = Qs + TILE; /* then K and V of one key tile, and of the next: two stages */
    const int s = blockIdx.x / tiles, tile = blockIdx.x % tiles, h = blockIdx.y, kvh = h / (H / KVH);
    const int s0 = cu[s], s1 = cu[s + 1];
    const int i0 = s0 + tile * MMA_BQ;
    /* bad cu_seqlens (reported before: overlapping sequences would race), or an earlier error */
    if (err->code || s0 < 0 || s1 > n_tok || i0 >= s1) return;
    const int i_last = min(s1, i0 + MMA_BQ) - 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;

    load_rows<HD>(Qs, RS, q, i0, s1, H, h, vec); /* rows past the sequence are zeros */
    load_rows<HD>(KV, RS, k, s0, i_last + 1, KVH, kvh, vec);
    load_rows<HD>(KV + TILE, RS, v, s0, i_last + 1, KVH, kvh, vec);
    cp_async_wait_all();
    __syncthreads();
    /* this warp's 16 rows as A fragments, once */
    uint32_t qa[HD / 16][4];
    const int qr = warp * 16;
    frag_rows<HD>(qa, Qs, RS, qr, lane);
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0, l1 = 0; /* rows g and g + 8; m in base-2 units */
    const float sl2 = scale * LOG2E;
    const int row0 = i0 + qr + g, row1 = row0 + 8;
    const int warp_last = min(i0 + qr + 15, i_last); /* keys past it are masked for every row of the warp */

    for (int j0 = s0, stage = 0; j0 <= i_last; j0 += MMA_BK, stage ^= 1) {
        const uint16_t *Ks = KV + 2 * stage * TILE, *Vs = Ks + TILE;
        if (j0 > s0) {
            cp_async_wait_all();
            __syncthreads(); /* this tile has landed, and the other stage's tile is consumed */
        }
        if (j0 + MMA_BK <= i_last) { /* the next tile's copy runs under this one's products */
            uint16_t *next = KV + 2 * (stage ^ 1) * TILE;
            load_rows<HD>(next, RS, k, j0 + MMA_BK, i_last + 1, KVH, kvh, vec);
            load_rows<HD>(next + TILE, RS, v, j0 + MMA_BK, i_last + 1, KVH, kvh, vec);
        }
        if (j0 > warp_last) continue; /* warp-uniform: every key of the tile is in this warp's future */

        /* S = Q·Kᵀ for the warp's 16 rows × 64 keys: 8 blocks of 8 keys */
        float sc[MMA_BK / 8][4];
        mma_abt<HD, MMA_BK / 8>(sc, qa, Ks, RS, lane);
        /* the causal mask, only where a key of the tile may lie past one of the warp's rows or past the
         * sequence (warp-uniform: the diagonal tile and the last) */
        if (j0 + MMA_BK - 1 > i0 + qr || j0 + MMA_BK > s1) {
#pragma unroll
            for (int nb = 0; nb < MMA_BK / 8; nb++) {
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const int j = j0 + nb * 8 + 2 * t + c;
                    if (j > row0 || j >= s1) sc[nb][c] = -INFINITY;
                    if (j > row1 || j >= s1) sc[nb][2 + c] = -INFINITY;
                }
            }
        }
        /* row maxima of the raw scores over the quad (the 4 lanes that share a row), then in base-2
         * units: scale·log2 e > 0 keeps the order */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < MMA_BK / 8; nb++)
            mx0 = fmaxf(mx0, fmaxf(sc[nb][0], sc[nb][1])), mx1 = fmaxf(mx1, fmaxf(sc[nb][2], sc[nb][3]));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 2));
        const float n0 = fmaxf(m0, mx0 * sl2), n1 = fmaxf(m1, mx1 * sl2);
        /* a row with no visible key yet (n = −∞) contributes nothing: its exponents stay −∞ */
        const float z0 = n0 == -INFINITY ? 0.0f : n0, z1 = n1 == -INFINITY ? 0.0f : n1;
        const float al0 = exp2_fast(m0 - z0), al1 = exp2_fast(m1 - z1);
        float ps0 = 0, ps1 = 0;
#pragma unroll
        for (int nb = 0; nb < MMA_BK / 8; nb++) {
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const float p0 = exp2_fast(fmaf(sc[nb][c], sl2, -z0)), p1 = exp2_fast(fmaf(sc[nb][2 + c], sl2, -z1));
                sc[nb][c] = p0, sc[nb][2 + c] = p1;
                ps0 += p0, ps1 += p1;
            }
        }
        ps0 += __shfl_xor_sync(0xFFFFFFFFu, ps0, 1);
        ps0 += __shfl_xor_sync(0xFFFFFFFFu, ps0, 2);
        ps1 += __shfl_xor_sync(0xFFFFFFFFu, ps1, 1);
        ps1 += __shfl_xor_sync(0xFFFFFFFFu, ps1, 2);
        l0 = l0 * al0 + ps0, l1 = l1 * al1 + ps1;
        m0 = n0, m1 = n1;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) o[n][0] *= al0, o[n][1] *= al0, o[n][2] *= al1, o[n][3] *= al1;
        /* O += P·V: P's accumulator layout is the A fragment of keys 16·kk .. 16·kk + 15 */
        mma_pb<HD, MMA_BK / 8>(o, sc, Vs, RS, lane);
    }
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        const int d = n * 8 + 2 * t;
        if (row0 < s1) st2(out, obf, ((int64_t)row0 * H + h) * HD + d, o[n][0] * inv0, o[n][1] * inv0);
        if (row1 < s1) st2(out, obf, ((int64_t)row1 * H + h) * HD + d, o[n][2] * inv1, o[n][3] * inv1);
    }
    if (lse && t == 0) {
        if (row0 < s1) lse[(int64_t)row0 * H + h] = m0 * LN2 + logf(l0);
        if (row1 < s1) lse[(int64_t)row1 * H + h] = m1 * LN2 + logf(l1);
    }
}

/* ------------------------------------------------------------------------- backward (head_dim 64, 128)
 *
 * The FlashAttention-2 backward on mma.sync, deterministic without atomics as the CUDA-core one: dK and
 * dV from blocks that own 64 keys of a kv head (a warp per 16 keys) and loop over the group's query
 * heads and every query tile at or after them; dQ from blocks that own 64 queries. P and dS are
 * rounded to bf16 for their products, as FlashAttention does. D_i = Σ dout·out comes from the CUDA-core
 * path's kernel (attention.cu).
 *
 * A warp keeps its rows' A fragments and float accumulators in registers. At head_dim 128 those are
 * twice as many (dK and dV alone are 128 floats a thread), so the other side of each tile is taken in
 * sub-tiles of SUB columns: the transient S and dP blocks shrink to SUB/8 × 4 floats each and ptxas
 * keeps everything in registers (no spills; sizes in the comments on the kernels). The products and
 * their order per output element are the same for every SUB. Both kernels stream tiles of 64 rows by
 * HD columns (Q and dO, or K and V) through shared memory in two stages (69 KiB at 128), read as rows or,
 * through ldmatrix.trans, as columns. */

template <int HD> struct BwdShape {
    static constexpr int RS = HD + PAD; /* row stride of a [64][HD] tile */
    static constexpr int SUB = HD == 64 ? 64 : 16; /* columns of S/dP a warp holds at once */
    static constexpr int TILE = 64 * RS;
    /* two stages of two tiles (dK/dV: Q and dO, then the lse and D_i of their 64 queries; dQ: K and V) */
    static constexpr size_t dkdv_smem = sizeof(uint16_t) * 4 * TILE + sizeof(float) * 2 * 2 * 64;
    static constexpr size_t dq_smem = sizeof(uint16_t) * 4 * TILE;
};

/* A query tile for dK/dV: Q and dO rows into QG and QG + 64·RS, their lse and D_i into LD and LD + 64. */
template <int HD>
__device__ __forceinline__ void load_query_tile(uint16_t *QG, float *LD, int RS, const uint16_t *q, const uint16_t *dout, const float *lse,
                                                const float *Dv, int i0, int s1, int H, int h, bool vec) {
    load_rows<HD>(QG, RS, q, i0, s1, H, h, vec);
    load_rows<HD>(QG + 64 * RS, RS, dout, i0, s1, H, h, vec);
    for (int r = threadIdx.x; r < 64; r += blockDim.x) {
        const int i = i0 + r;
        LD[r] = i < s1 ? lse[(int64_t)i * H + h] * LOG2E : 0.0f; /* in base-2 units, as the forward's maxima */
        LD[64 + r] = i < s1 ? Dv[(int64_t)i * H + h] : 0.0f;
    }
}

/* P = exp(S·scale − lse) and dS = P·(dP − D_i) of a dK/dV sub-tile in place (transposed: a thread's
 * rows are keys key0 and key1, its columns queries), lse in base-2 units (Ls); MASK where a query may
 * precede a key or lie past the sequence (warp-uniform, decided per sub-tile), else no compare at all. */
template <bool MASK, int NB>
__device__ __forceinline__ void dkdv_probs(float sp[NB][4], float dp[NB][4], const float *Ls, const float *Ds, int c0, int t, int i0,
                                           int key0, int key1, int s1, float sl2) {
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int qi = c0 + nb * 8 + 2 * t + (c & 1), i = i0 + qi;
            float x = fmaf(sp[nb][c], sl2, -Ls[qi]);
            if (MASK && (i < (c < 2 ? key0 : key1) || i >= s1)) x = -INFINITY;
            const float p = exp2_fast(x);
            sp[nb][c] = p;
            dp[nb][c] = p * (dp[nb][c] - Ds[qi]);
        }
    }
}

/* dS = P·(dP − D_i) of a dQ sub-tile in place (rows row0 and row1, columns keys from jc), P from S and
 * the rows' lse in base-2 units (e0, e1); MASK as above: a key past a row, or a row past the sequence. */
template <bool MASK, int NB>
__device__ __forceinline__ void dq_probs(const float sp[NB][4], float dp[NB][4], int jc, int t, int row0, int row1, int s1, float e0,
                                         float e1, float d0, float d1, float sl2) {
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int j = jc + nb * 8 + 2 * t + (c & 1), i = c < 2 ? row0 : row1;
            float x = fmaf(sp[nb][c], sl2, -(c < 2 ? e0 : e1));
            if (MASK && (j > i || i >= s1)) x = -INFINITY;
            dp[nb][c] = exp2_fast(x) * (dp[nb][c] - (c < 2 ? d0 : d1));
        }
    }
}

/* registers a thread (ptxas 11.8, no spills; sm_90 and sm_80): 248/248 at HD 64, 250/251 at HD 128; dQ
 * 168/178 and 203/205; the forward 126/132 and 169/172 */
template <int HD>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attn_bwd_dkdv_mma_kernel(const int32_t *cu, int tiles, int n_tok, const uint16_t *q, const uint16_t *k, const uint16_t *v, const float *lse,
                         const float *Dv, const uint16_t *dout, void *dk, int dkbf, void *dv, int dvbf, int H, int KVH,
                         float scale, int vec, const serl_dev_err *err) {
    typedef BwdShape<HD> S;
    constexpr int RS = S::RS, SUB = S::SUB, TILE = S::TILE;
    extern __shared__ uint16_t smem[]; /* dynamic shared memory starts 16-byte aligned at least */
    uint16_t *T = smem;                  /* stage k: Q at T + 2k·TILE, dO after it */
    float *LD = (float *)(T + 4 * TILE); /* stage k: lse at LD + 128k, D_i after it */
    const int s = blockIdx.x / tiles, tile = blockIdx.x % tiles, kvh = blockIdx.y, G = H / KVH;
    const int s0 = cu[s], s1 = cu[s + 1];
    const int j0 = s0 + tile * 64;
    /* bad cu_seqlens (reported before: overlapping sequences would race), or an earlier error */
    if (err->code || s0 < 0 || s1 > n_tok || j0 >= s1) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    /* this warp's 16 keys and values as A fragments, staged through stage 1 while the first query tile
     * goes to stage 0 */
    load_rows<HD>(T + 2 * TILE, RS, k, j0, s1, KVH, kvh, vec);
    load_rows<HD>(T + 3 * TILE, RS, v, j0, s1, KVH, kvh, vec);
    load_query_tile<HD>(T, LD, RS, q, dout, lse, Dv, j0, s1, H, kvh * G, vec);
    cp_async_wait_all();
    __syncthreads();
    uint32_t ka[HD / 16][4], va[HD / 16][4];
    frag_rows<HD>(ka, T + 2 * TILE, RS, warp * 16, lane);
    frag_rows<HD>(va, T + 3 * TILE, RS, warp * 16, lane);
    float ak[HD / 8][4], av[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) ak[n][c] = av[n][c] = 0;
    const int key0 = j0 + warp * 16 + g, key1 = key0 + 8; /* this thread's accumulator rows */
    const int warp_first = j0 + warp * 16;                /* queries before it see none of the warp's keys */
    const float sl2 = scale * LOG2E;
    /* every query tile at or after the keys, of each query head of the group in turn */
    for (int gh = 0, i0 = j0, stage = 0; gh < G; stage ^= 1) {
        int ngh = gh, ni0 = i0 + 64; /* the tile after this one */
        if (ni0 >= s1) ngh++, ni0 = j0;
        cp_async_wait_all();
        __syncthreads(); /* this tile has landed; the other stage is consumed (at the first, the fragments taken) */
        if (ngh < G) /* the next tile's copy runs under this one's products */
            load_query_tile<HD>(T + 2 * (stage ^ 1) * TILE, LD + 128 * (stage ^ 1), RS, q, dout, lse, Dv, ni0, s1, H, kvh * G + ngh, vec);
        const uint16_t *Qs = T + 2 * stage * TILE, *Gs = Qs + TILE;
        const float *Ls = LD + 128 * stage, *Ds = Ls + 64;
#pragma unroll 1
        for (int c0 = 0; c0 < 64; c0 += SUB) {
            /* warp-uniform: a sub-tile of queries all before the warp's first key adds only zeros */
            if (SUB < 64 && i0 + c0 + SUB - 1 < warp_first) continue;
            float sp[SUB / 8][4], dp[SUB / 8][4];
            mma_abt<HD, SUB / 8>(sp, ka, Qs + c0 * RS, RS, lane); /* Sᵀ: keys × queries */
            mma_abt<HD, SUB / 8>(dp, va, Gs + c0 * RS, RS, lane); /* dPᵀ = V·dOᵀ */
            /* every query of the sub-tile at or after the warp's last key, and in the sequence: no mask */
            if (i0 + c0 < warp_first + 15 || i0 + c0 + SUB > s1)
                dkdv_probs<true, SUB / 8>(sp, dp, Ls, Ds, c0, t, i0, key0, key1, s1, sl2);
            else
                dkdv_probs<false, SUB / 8>(sp, dp, Ls, Ds, c0, t, i0, key0, key1, s1, sl2);
            mma_pb<HD, SUB / 8>(av, sp, Gs + c0 * RS, RS, lane); /* dV += Pᵀ·dO */
            mma_pb<HD, SUB / 8>(ak, dp, Qs + c0 * RS, RS, lane); /* dK += dSᵀ·Q (scaled at the end) */
        }
        gh = ngh, i0 = ni0;
    }
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
#pragma unroll
        for (int c = 0; c < 4; c += 2) { /* the pair (c, c + 1): one key, dims d and d + 1 */
            const int j = c < 2 ? key0 : key1, d = n * 8 + 2 * t;
            if (j >= s1) continue;
            const int64_t o = ((int64_t)j * KVH + kvh) * HD + d;
            const float2 k = ld2(dk, dkbf, o), v = ld2(dv, dvbf, o);
            st2(dk, dkbf, o, k.x + ak[n][c] * scale, k.y + ak[n][c + 1] * scale);
            st2(dv, dvbf, o, v.x + av[n][c], v.y + av[n][c + 1]);
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attn_bwd_dq_mma_kernel(const int32_t *cu, int tiles, int n_tok, const uint16_t *q, const uint16_t *k, const uint16_t *v, const float *lse,
                       const float *Dv, const uint16_t *dout, void *dq, int dqbf, int H, int KVH, float scale, int vec, const serl_dev_err *err) {
    typedef BwdShape<HD> S;
    constexpr int RS = S::RS, SUB = S::SUB, TILE = S::TILE;
    extern __shared__ uint16_t smem[]; /* dynamic shared memory starts 16-byte aligned at least */
    uint16_t *T = smem; /* stage k: K at T + 2k·TILE, V after it */
    const int s = blockIdx.x / tiles, tile = blockIdx.x % tiles, h = blockIdx.y, kvh = h / (H / KVH);
    const int s0 = cu[s], s1 = cu[s + 1];
    const int i0 = s0 + tile * 64;
    /* bad cu_seqlens (reported before: overlapping sequences would race), or an earlier error */
    if (err->code || s0 < 0 || s1 > n_tok || i0 >= s1) return;
    const int i_last = min(s1, i0 + 64) - 1;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    /* Q and dO staged through stage 1 for their fragments while the first key tile goes to stage 0 */
    load_rows<HD>(T + 2 * TILE, RS, q, i0, s1, H, h, vec);
    load_rows<HD>(T + 3 * TILE, RS, dout, i0, s1, H, h, vec);
    load_rows<HD>(T, RS, k, s0, i_last + 1, KVH, kvh, vec);
    load_rows<HD>(T + TILE, RS, v, s0, i_last + 1, KVH, kvh, vec);
    cp_async_wait_all();
    __syncthreads();
    uint32_t qa[HD / 16][4], ga[HD / 16][4];
    frag_rows<HD>(qa, T + 2 * TILE, RS, warp * 16, lane);
    frag_rows<HD>(ga, T + 3 * TILE, RS, warp * 16, lane);
    const int row0 = i0 + warp * 16 + g, row1 = row0 + 8;
    /* the rows' lse in base-2 units, as the forward's maxima */
    const float e0 = row0 < s1 ? lse[(int64_t)row0 * H + h] * LOG2E : 0.0f, e1 = row1 < s1 ? lse[(int64_t)row1 * H + h] * LOG2E : 0.0f;
    const float sl2 = scale * LOG2E;
    const float d0 = row0 < s1 ? Dv[(int64_t)row0 * H + h] : 0.0f, d1 = row1 < s1 ? Dv[(int64_t)row1 * H + h] : 0.0f;
    float aq[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) aq[n][0] = aq[n][1] = aq[n][2] = aq[n][3] = 0;
    const int warp_last = min(i0 + warp * 16 + 15, i_last);
    for (int j0 = s0, stage = 0; j0 <= i_last; j0 += 64, stage ^= 1) {
        cp_async_wait_all();
        __syncthreads(); /* this tile has landed; the other stage is consumed (at the first, the fragments taken) */
        if (j0 + 64 <= i_last) { /* the next tile's copy runs under this one's products */
            load_rows<HD>(T + 2 * (stage ^ 1) * TILE, RS, k, j0 + 64, i_last + 1, KVH, kvh, vec);
            load_rows<HD>(T + (2 * (stage ^ 1) + 1) * TILE, RS, v, j0 + 64, i_last + 1, KVH, kvh, vec);
        }
        const uint16_t *Ks = T + 2 * stage * TILE, *Vs = Ks + TILE;
#pragma unroll 1
        for (int c0 = 0; c0 < 64; c0 += SUB) {
            if (j0 + c0 > warp_last) break; /* warp-uniform: these keys are in every row's future */
            float sp[SUB / 8][4], dp[SUB / 8][4];
            mma_abt<HD, SUB / 8>(sp, qa, Ks + c0 * RS, RS, lane); /* S = Q·Kᵀ */
            mma_abt<HD, SUB / 8>(dp, ga, Vs + c0 * RS, RS, lane); /* dP = dO·Vᵀ */
            /* every key of the sub-tile at or before the warp's first row, every row in the sequence: no mask */
            if (j0 + c0 + SUB - 1 > i0 + warp * 16 || i0 + warp * 16 + 15 >= s1)
                dq_probs<true, SUB / 8>(sp, dp, j0 + c0, t, row0, row1, s1, e0, e1, d0, d1, sl2);
            else
                dq_probs<false, SUB / 8>(sp, dp, j0 + c0, t, row0, row1, s1, e0, e1, d0, d1, sl2);
            mma_pb<HD, SUB / 8>(aq, dp, Ks + c0 * RS, RS, lane); /* dQ += dS·K */
        }
    }
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
#pragma unroll
        for (int c = 0; c < 4; c += 2) { /* the pair (c, c + 1): one row, dims d and d + 1 */
            const int i = c < 2 ? row0 : row1, d = n * 8 + 2 * t;
            if (i >= s1) continue;
            const int64_t o = ((int64_t)i * H + h) * HD + d;
            const float2 q = ld2(dq, dqbf, o);
            st2(dq, dqbf, o, q.x + aq[n][c] * scale, q.y + aq[n][c + 1] * scale);
        }
    }
}

template <int HD>
static int32_t attention_bwd_mma(serl_cuda_ctx *ctx, const serl_attention_bwd_args *a, int max_len, const float *Dv) {
    typedef BwdShape<HD> S;
    const int H = a->n_heads, KVH = a->n_kv_heads;
    const uint16_t *q = (const uint16_t *)a->q, *k = (const uint16_t *)a->k, *v = (const uint16_t *)a->v;
    const uint16_t *go = (const uint16_t *)a->dout;
    const int tiles = (max_len + 63) / 64, vec = serl_aligned16({q, k, v, go});
    if (S::dq_smem > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(attn_bwd_dq_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)S::dq_smem));
    attn_bwd_dq_mma_kernel<HD><<<seq_grid(tiles, a->n_seqs, H), MMA_WARPS * 32, S::dq_smem, ctx->stream>>>(
        a->cu_seqlens, tiles, a->n_tokens, q, k, v, a->lse, Dv, go, a->dq, a->dq_dtype == SERL_DTYPE_BF16, H, KVH, a->scale, vec, ctx->derr);
    LAUNCH_CHECK("attention_bwd (mma dq)");
    if (S::dkdv_smem > 48 * 1024)
        CUDA_TRY(cudaFuncSetAttribute(attn_bwd_dkdv_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)S::dkdv_smem));
    attn_bwd_dkdv_mma_kernel<HD><<<seq_grid(tiles, a->n_seqs, KVH), MMA_WARPS * 32, S::dkdv_smem, ctx->stream>>>(
        a->cu_seqlens, tiles, a->n_tokens, q, k, v, a->lse, Dv, go, a->dk, a->dk_dtype == SERL_DTYPE_BF16, a->dv,
        a->dv_dtype == SERL_DTYPE_BF16, H, KVH, a->scale, vec, ctx->derr);
    LAUNCH_CHECK("attention_bwd (mma dk/dv)");
    return SERL_OK;
}

int32_t serl_attention_bwd_mma(serl_cuda_ctx *ctx, const serl_attention_bwd_args *a, int max_len, const float *Dv) {
    return a->head_dim == 64 ? attention_bwd_mma<64>(ctx, a, max_len, Dv) : attention_bwd_mma<128>(ctx, a, max_len, Dv);
}

template <int HD> static int32_t attention_fwd_mma(serl_cuda_ctx *ctx, const serl_attention_fwd_args *a, int max_len) {
    const size_t shm = sizeof(uint16_t) * 5 * 64 * (HD + PAD); /* Q, and K and V in two stages: 85 KiB at 128 */
    const int tiles = (max_len + MMA_BQ - 1) / MMA_BQ;
    const uint16_t *q = (const uint16_t *)a->q, *k = (const uint16_t *)a->k, *v = (const uint16_t *)a->v;
    if (shm > 48 * 1024) CUDA_TRY(cudaFuncSetAttribute(attn_fwd_mma_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    attn_fwd_mma_kernel<HD><<<seq_grid(tiles, a->n_seqs, a->n_heads), MMA_WARPS * 32, shm, ctx->stream>>>(
        a->cu_seqlens, tiles, a->n_tokens, q, k, v, a->out, a->out_dtype == SERL_DTYPE_BF16, a->lse, a->n_heads, a->n_kv_heads,
        a->scale, serl_aligned16({q, k, v}), ctx->derr);
    LAUNCH_CHECK("attention_fwd (mma)");
    return SERL_OK;
}

int32_t serl_attention_fwd_mma(serl_cuda_ctx *ctx, const serl_attention_fwd_args *a, int max_len) {
    return a->head_dim == 64 ? attention_fwd_mma<64>(ctx, a, max_len) : attention_fwd_mma<128>(ctx, a, max_len);
}
