/* Causal attention over packed variable-length sequences with grouped-query heads, forward and
 * backward, in FlashAttention-2's structure: queries in tiles, keys and values streamed through shared
 * memory in tiles, an online softmax whose statistics (log-sum-exp) are saved for the backward, and no
 * T×T matrix anywhere. This first version computes on the CUDA cores in float32 (a warp per query row,
 * a lane per key of the tile, lanes over head dims for the products); the bf16 tensor-core (mma.sync)
 * version is still to come.
 *
 * The backward is deterministic without atomics: dK and dV come from a kernel whose block owns a tile
 * of keys of one kv head and loops over every query (and every query head of the group) that sees
 * them; dQ from a second kernel whose block owns a tile of queries. Both recompute the probabilities
 * from the saved log-sum-exp. */
#include <vector>

#include "common.cuh"
#include "ops.cuh"

#define NW 4        /* warps per block */
#define RPW 4       /* rows (queries, or keys in dK/dV) per warp */
#define BQ (NW * RPW)
#define BK 32       /* keys per tile (forward, dQ) or queries per tile (dK/dV): one per lane */
#define DMAX 256
#define DPL (DMAX / 32)

/* Σ_d a[d]·b[d] over shared rows, in four partial sums: a rounding chain a quarter as long as one sum's
 * (the CPU library's vector lanes sum in parts too; one chain over head_dim 128 puts the bf16 lse near
 * the f32 floor of the mixed-precision rule) and four independent FMAs in flight. */
__device__ __forceinline__ float dot_sh(const float *a, const float *b, int D) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int d = 0;
    for (; d + 4 <= D; d += 4) {
        s0 = fmaf(a[d], b[d], s0);
        s1 = fmaf(a[d + 1], b[d + 1], s1);
        s2 = fmaf(a[d + 2], b[d + 2], s2);
        s3 = fmaf(a[d + 3], b[d + 3], s3);
    }
    for (; d < D; d++) s0 = fmaf(a[d], b[d], s0);
    return (s0 + s1) + (s2 + s3);
}

__global__ void attn_fwd_kernel(const int32_t *cu, int tiles, int T, const void *q, int qbf, const void *k, int kbf, const void *v, int vbf,
                                void *out, int obf, float *lse, int H, int KVH, int D, float scale, const serl_dev_err *err) {
    extern __shared__ float sm[];
    const int s = blockIdx.x / tiles, tile = blockIdx.x % tiles, h = blockIdx.y, kvh = h / (H / KVH);
    const int s0 = cu[s], s1 = cu[s + 1];
    const int i0 = s0 + tile * BQ;
    /* bad cu_seqlens (reported before: overlapping sequences would race), or an earlier error */
    if (err->code || s0 < 0 || s1 > T || i0 >= s1) return;
    const int i_last = min(s1, i0 + BQ) - 1;
    const int Dp = D + 1;
    float *Qs = sm, *Ks = Qs + BQ * D, *Vs = Ks + BK * Dp;
    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x) {
        const int r = e / D, d = e % D, i = i0 + r;
        Qs[e] = i < s1 ? __fmul_rn(ld(q, qbf, ((int64_t)i * H + h) * D + d), scale) : 0.0f;
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    float o[RPW][DPL], m[RPW], l[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        m[r] = -INFINITY, l[r] = 0;
#pragma unroll
        for (int c = 0; c < DPL; c++) o[r][c] = 0;
    }
    for (int j0 = s0; j0 <= i_last; j0 += BK) {
        __syncthreads();
        for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
            const int jj = e / D, d = e % D, j = j0 + jj;
            const bool in = j <= i_last;
            const int64_t src = ((int64_t)j * KVH + kvh) * D + d;
            Ks[jj * Dp + d] = in ? ld(k, kbf, src) : 0.0f;
            Vs[jj * D + d] = in ? ld(v, vbf, src) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            const int row = wid * RPW + r, i = i0 + row;
            if (i >= s1 || j0 > i) continue; /* warp-uniform */
            const int j = j0 + lane;
            const bool valid = j <= i;
            const float sc = valid ? dot_sh(Qs + row * D, Ks + lane * Dp, D) : -INFINITY;
            const float mnew = fmaxf(m[r], warp_max(sc));
            const float p = valid ? expf(sc - mnew) : 0.0f;
            const float al = m[r] == -INFINITY ? 0.0f : expf(m[r] - mnew);
            l[r] = l[r] * al + warp_sum(p);
            m[r] = mnew;
#pragma unroll
            for (int c = 0; c < DPL; c++) o[r][c] *= al;
            const int nk = min(BK, i - j0 + 1);
            for (int jj = 0; jj < nk; jj++) {
                const float pj = __shfl_sync(0xFFFFFFFFu, p, jj);
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    const int d = lane + 32 * c;
                    if (d < D) o[r][c] = fmaf(pj, Vs[jj * D + d], o[r][c]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int i = i0 + wid * RPW + r;
        if (i >= s1) continue;
        const float inv = 1.0f / l[r];
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            const int d = lane + 32 * c;
            if (d < D) st(out, obf, ((int64_t)i * H + h) * D + d, o[r][c] * inv);
        }
        if (lse && lane == 0) lse[(int64_t)i * H + h] = m[r] + logf(l[r]);
    }
}

/* Dv[i,h] = Σ_d dout·out (a warp per row) */
__global__ void attn_bwd_dot_kernel(const void *dout, int gbf, const void *out, int obf, float *Dv, int64_t rows, int D) {
    const int lane = threadIdx.x & 31;
    /* grid-stride over rows: serl_blocks caps the grid (warp-uniform loop, so the shuffles see full warps) */
    for (int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; r < rows;
         r += ((int64_t)gridDim.x * blockDim.x) >> 5) {
        float s = 0;
        for (int d = lane; d < D; d += 32) s = fmaf(ld(dout, gbf, r * D + d), ld(out, obf, r * D + d), s);
        s = warp_sum(s);
        if (lane == 0) Dv[r] = s;
    }
}

/* dQ: a block owns BQ queries of one head; keys stream in tiles. */
__global__ void attn_bwd_dq_kernel(const int32_t *cu, int tiles, int T, const void *q, int qbf, const void *k, int kbf, const void *v,
                                   int vbf, const float *lse, const float *Dv, const void *dout, int gbf, void *dq,
                                   int dqbf, int H, int KVH, int D, float scale, const serl_dev_err *err) {
    extern __shared__ float sm[];
    const int s = blockIdx.x / tiles, tile = blockIdx.x % tiles, h = blockIdx.y, kvh = h / (H / KVH);
    const int s0 = cu[s], s1 = cu[s + 1];
    const int i0 = s0 + tile * BQ;
    /* bad cu_seqlens (reported before: overlapping sequences would race), or an earlier error */
    if (err->code || s0 < 0 || s1 > T || i0 >= s1) return;
    const int i_last = min(s1, i0 + BQ) - 1;
    const int Dp = D + 1;
    float *Qs = sm, *Gs = Qs + BQ * D, *Ks = Gs + BQ * D, *Vs = Ks + BK * Dp;
    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x) {
        const int r = e / D, d = e % D, i = i0 + r;
        const int64_t src = ((int64_t)i * H + h) * D + d;
        Qs[e] = i < s1 ? __fmul_rn(ld(q, qbf, src), scale) : 0.0f;
        Gs[e] = i < s1 ? ld(dout, gbf, src) : 0.0f;
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    float acc[RPW][DPL];
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[r][c] = 0;
    for (int j0 = s0; j0 <= i_last; j0 += BK) {
        __syncthreads();
        for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
            const int jj = e / D, d = e % D, j = j0 + jj;
            const bool in = j <= i_last;
            const int64_t src = ((int64_t)j * KVH + kvh) * D + d;
            Ks[jj * Dp + d] = in ? ld(k, kbf, src) : 0.0f;
            Vs[jj * Dp + d] = in ? ld(v, vbf, src) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            const int row = wid * RPW + r, i = i0 + row;
            if (i >= s1 || j0 > i) continue;
            const int j = j0 + lane;
            const bool valid = j <= i;
            float ds = 0;
            if (valid) {
                const float p = expf(dot_sh(Qs + row * D, Ks + lane * Dp, D) - lse[(int64_t)i * H + h]);
                const float dp = dot_sh(Gs + row * D, Vs + lane * Dp, D);
                ds = p * (dp - Dv[(int64_t)i * H + h]);
            }
            const int nk = min(BK, i - j0 + 1);
            for (int jj = 0; jj < nk; jj++) {
                const float dj = __shfl_sync(0xFFFFFFFFu, ds, jj);
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    const int d = lane + 32 * c;
                    if (d < D) acc[r][c] = fmaf(dj, Ks[jj * Dp + d], acc[r][c]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int i = i0 + wid * RPW + r;
        if (i >= s1) continue;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            const int d = lane + 32 * c;
            if (d >= D) continue;
            const int64_t o = ((int64_t)i * H + h) * D + d;
            st(dq, dqbf, o, ld(dq, dqbf, o) + acc[r][c] * scale);
        }
    }
}

/* dK, dV: a block owns BQ keys of one kv head and loops over the group's query heads and every query
 * tile at or after its keys. */
__global__ void attn_bwd_dkdv_kernel(const int32_t *cu, int tiles, int T, const void *q, int qbf, const void *k, int kbf, const void *v,
                                     int vbf, const float *lse, const float *Dv, const void *dout, int gbf, void *dk,
                                     int dkbf, void *dv, int dvbf, int H, int KVH, int D, float scale, const serl_dev_err *err) {
    extern __shared__ float sm[];
    const int s = blockIdx.x / tiles, tile = blockIdx.x % tiles, kvh = blockIdx.y, G = H / KVH;
    const int s0 = cu[s], s1 = cu[s + 1];
    const int j0 = s0 + tile * BQ;
    /* bad cu_seqlens (reported before: overlapping sequences would race), or an earlier error */
    if (err->code || s0 < 0 || s1 > T || j0 >= s1) return;
    const int Dp = D + 1;
    float *Ks = sm, *Vs = Ks + BQ * D, *Qs = Vs + BQ * D, *Gs = Qs + BK * Dp, *Ls = Gs + BK * Dp, *Ds = Ls + BK;
    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x) {
        const int r = e / D, d = e % D, j = j0 + r;
        const int64_t src = ((int64_t)j * KVH + kvh) * D + d;
        Ks[e] = j < s1 ? ld(k, kbf, src) : 0.0f;
        Vs[e] = j < s1 ? ld(v, vbf, src) : 0.0f;
    }
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    float ak[RPW][DPL], av[RPW][DPL];
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int c = 0; c < DPL; c++) ak[r][c] = 0, av[r][c] = 0;
    for (int g = 0; g < G; g++) {
        const int h = kvh * G + g;
        for (int i0 = j0; i0 < s1; i0 += BK) {
            __syncthreads();
            for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
                const int ii = e / D, d = e % D, i = i0 + ii;
                const int64_t src = ((int64_t)i * H + h) * D + d;
                Qs[ii * Dp + d] = i < s1 ? __fmul_rn(ld(q, qbf, src), scale) : 0.0f;
                Gs[ii * Dp + d] = i < s1 ? ld(dout, gbf, src) : 0.0f;
            }
            for (int ii = threadIdx.x; ii < BK; ii += blockDim.x) {
                const int i = i0 + ii;
                Ls[ii] = i < s1 ? lse[(int64_t)i * H + h] : 0.0f;
                Ds[ii] = i < s1 ? Dv[(int64_t)i * H + h] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const int row = wid * RPW + r, j = j0 + row;
                if (j >= s1) continue;
                const int i = i0 + lane;
                const bool valid = i >= j && i < s1;
                float p = 0, ds = 0;
                if (valid) {
                    p = expf(dot_sh(Qs + lane * Dp, Ks + row * D, D) - Ls[lane]);
                    const float dp = dot_sh(Gs + lane * Dp, Vs + row * D, D);
                    ds = p * (dp - Ds[lane]);
                }
                const int nq = min(BK, s1 - i0);
                for (int ii = 0; ii < nq; ii++) {
                    const float pi = __shfl_sync(0xFFFFFFFFu, p, ii), di = __shfl_sync(0xFFFFFFFFu, ds, ii);
#pragma unroll
                    for (int c = 0; c < DPL; c++) {
                        const int d = lane + 32 * c;
                        if (d < D) {
                            av[r][c] = fmaf(pi, Gs[ii * Dp + d], av[r][c]);
                            ak[r][c] = fmaf(di, Qs[ii * Dp + d], ak[r][c]);
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int j = j0 + wid * RPW + r;
        if (j >= s1) continue;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            const int d = lane + 32 * c;
            if (d >= D) continue;
            const int64_t o = ((int64_t)j * KVH + kvh) * D + d;
            st(dk, dkbf, o, ld(dk, dkbf, o) + ak[r][c]);
            st(dv, dvbf, o, ld(dv, dvbf, o) + av[r][c]);
        }
    }
}

/* ------------------------------------------------------------------------- host side */

/* The checks that need no tensor contents (../check.h), this library's widest head, and the grid. */
static int32_t check_host(serl_cuda_ctx *ctx, const char *op, int32_t st, int n_seqs, int H, int D, int max_len) {
    if (st) return st;
    if (D > DMAX)
        return serl_fail(ctx, SERL_E_UNSUPPORTED, "%s: head_dim = %d (the CUDA kernels take up to %d)", op, D, DMAX);
    /* the grid (seq_grid) of the smallest tiles (BQ queries) fits: x below 2³¹, heads on y up to 65535 */
    if ((int64_t)((max_len + BQ - 1) / BQ) * n_seqs > 0x7FFFFFFF || H > 65535)
        return serl_fail(ctx, SERL_E_UNSUPPORTED, "%s: %d sequences of up to %d tokens with %d heads exceed the CUDA grid",
                         op, n_seqs, max_len, H);
    return SERL_OK;
}

/* cu_seqlens checked on the device as serl_check_seqlens (../check.h) does on the host: the first violation
 * in the CPU's order goes to the device error word (same message, context.cu), so no read-back is needed
 * and the op can be captured. One block: the first bad sequence is the block's minimum, so the report does
 * not depend on scheduling. The attention kernels skip a sequence outside [0, n_tokens) themselves. */
__global__ void check_seqlens_kernel(const int32_t *cu, int S, int T, int max_len, int op, serl_dev_err *err) {
    __shared__ int first;
    const int c0 = cu[0], cS = cu[S];
    if (c0 != 0 || cS != T) { /* uniform across the block */
        if (threadIdx.x == 0) {
            if (c0 != 0)
                serl_report(err, SERL_DERR_ATTN_CU_FIRST, 0, op, c0, 0);
            else
                serl_report(err, SERL_DERR_ATTN_CU_LAST, S, op, cS, T);
        }
        return;
    }
    if (threadIdx.x == 0) first = S;
    __syncthreads();
    for (int s = threadIdx.x; s < S; s += blockDim.x) {
        const int64_t a = cu[s], b = cu[s + 1];
        if (b < a || b - a > max_len) {
            atomicMin(&first, s);
            break;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0 && first < S) {
        const int s = first, a = cu[s], b = cu[s + 1];
        if (b < a)
            serl_report(err, SERL_DERR_ATTN_CU_DECREASE, s, op, a, b);
        else
            serl_report(err, SERL_DERR_ATTN_MAX_LEN, s, op, (int64_t)b - a, max_len);
    }
}

/* Queues the device's check of cu_seqlens (max_len already checked on the host). */
static int32_t check_seqlens(serl_cuda_ctx *ctx, int opi, const int32_t *cu, int n_seqs, int n_tokens, int max_len) {
    check_seqlens_kernel<<<1, 256, 0, ctx->stream>>>(cu, n_seqs, n_tokens, max_len, opi, ctx->derr);
    LAUNCH_CHECK("attention (cu_seqlens check)");
    return SERL_OK;
}

static int32_t set_smem(serl_cuda_ctx *ctx, const void *fn, size_t bytes) {
    if (bytes > 48 * 1024) CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return SERL_OK;
}

#define BF(dt) ((dt) == SERL_DTYPE_BF16)

extern "C" SERL_API int32_t serl_attention_fwd(void *ctxp, const serl_attention_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_attention_fwd_args);
    /* the grid covers the caller's max_len, capped at n_tokens (a larger bound changes nothing); each
     * sequence's own length stays on the device */
    const int max_len = a->max_len < a->n_tokens ? a->max_len : a->n_tokens;
    int32_t st_ = check_host(ctx, "attention_fwd", serl_check_attention_fwd(ctx, a), a->n_seqs, a->n_heads, a->head_dim, max_len);
    if (st_) return st_;
    if ((st_ = check_seqlens(ctx, 0, a->cu_seqlens, a->n_seqs, a->n_tokens, a->max_len))) return st_;
    if (a->n_tokens == 0 || a->n_seqs == 0) return SERL_OK; /* no sequence: the check reports (a grid of 0 would not launch) */
    const int D = a->head_dim;
    if (ctx->attn_mma && a->q_dtype == SERL_DTYPE_BF16 && a->k_dtype == SERL_DTYPE_BF16 &&
        a->v_dtype == SERL_DTYPE_BF16 && (D == 64 || D == 128) && (((uintptr_t)a->q | (uintptr_t)a->k | (uintptr_t)a->v) & 3) == 0)
        return serl_attention_fwd_mma(ctx, a, max_len);
    size_t shm = sizeof(float) * ((size_t)BQ * D + (size_t)BK * (D + 1) + (size_t)BK * D);
    if ((st_ = set_smem(ctx, (const void *)attn_fwd_kernel, shm))) return st_;
    const int tiles = (max_len + BQ - 1) / BQ;
    attn_fwd_kernel<<<seq_grid(tiles, a->n_seqs, a->n_heads), NW * 32, shm, ctx->stream>>>(a->cu_seqlens, tiles, a->n_tokens, a->q, BF(a->q_dtype), a->k, BF(a->k_dtype), a->v,
                                                         BF(a->v_dtype), a->out, BF(a->out_dtype), a->lse, a->n_heads,
                                                         a->n_kv_heads, D, a->scale, ctx->derr);
    LAUNCH_CHECK("attention_fwd");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_attention_bwd(void *ctxp, const serl_attention_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_attention_bwd_args);
    /* the grid covers the caller's max_len, capped at n_tokens (a larger bound changes nothing); each
     * sequence's own length stays on the device */
    const int max_len = a->max_len < a->n_tokens ? a->max_len : a->n_tokens;
    int32_t st_ = check_host(ctx, "attention_bwd", serl_check_attention_bwd(ctx, a), a->n_seqs, a->n_heads, a->head_dim, max_len);
    if (st_) return st_;
    if ((st_ = check_seqlens(ctx, 1, a->cu_seqlens, a->n_seqs, a->n_tokens, a->max_len))) return st_;
    if (a->n_tokens == 0 || a->n_seqs == 0) return SERL_OK; /* no sequence: the check reports (a grid of 0 would not launch) */
    const int D = a->head_dim, H = a->n_heads, KVH = a->n_kv_heads;
    const int64_t rows = (int64_t)a->n_tokens * H;
    float *Dv = (float *)serl_scratch(ctx, sizeof(float) * (size_t)rows);
    if (!Dv) return ctx->scratch_status;
    attn_bwd_dot_kernel<<<serl_blocks(rows * 32, 256), 256, 0, ctx->stream>>>(a->dout, BF(a->dout_dtype), a->out,
                                                                                BF(a->out_dtype), Dv, rows, D);
    LAUNCH_CHECK("attention_bwd");
    if (ctx->attn_mma && (D == 64 || D == 128) && a->q_dtype == SERL_DTYPE_BF16 && a->k_dtype == SERL_DTYPE_BF16 &&
        a->v_dtype == SERL_DTYPE_BF16 && a->dout_dtype == SERL_DTYPE_BF16 &&
        (((uintptr_t)a->q | (uintptr_t)a->k | (uintptr_t)a->v | (uintptr_t)a->dout) & 3) == 0)
        return serl_attention_bwd_mma(ctx, a, max_len, Dv);
    size_t shm_q = sizeof(float) * (2 * (size_t)BQ * D + 2 * (size_t)BK * (D + 1));
    if ((st_ = set_smem(ctx, (const void *)attn_bwd_dq_kernel, shm_q))) return st_;
    const int tiles = (max_len + BQ - 1) / BQ;
    attn_bwd_dq_kernel<<<seq_grid(tiles, a->n_seqs, H), NW * 32, shm_q, ctx->stream>>>(
        a->cu_seqlens, tiles, a->n_tokens, a->q, BF(a->q_dtype), a->k, BF(a->k_dtype), a->v, BF(a->v_dtype), a->lse, Dv, a->dout,
        BF(a->dout_dtype), a->dq, BF(a->dq_dtype), H, KVH, D, a->scale, ctx->derr);
    LAUNCH_CHECK("attention_bwd");
    size_t shm_kv = sizeof(float) * (2 * (size_t)BQ * D + 2 * (size_t)BK * (D + 1) + 2 * BK);
    if ((st_ = set_smem(ctx, (const void *)attn_bwd_dkdv_kernel, shm_kv))) return st_;
    attn_bwd_dkdv_kernel<<<seq_grid(tiles, a->n_seqs, KVH), NW * 32, shm_kv, ctx->stream>>>(
        a->cu_seqlens, tiles, a->n_tokens, a->q, BF(a->q_dtype), a->k, BF(a->k_dtype), a->v, BF(a->v_dtype), a->lse, Dv, a->dout,
        BF(a->dout_dtype), a->dk, BF(a->dk_dtype), a->dv, BF(a->dv_dtype), H, KVH, D, a->scale, ctx->derr);
    LAUNCH_CHECK("attention_bwd");
    return SERL_OK;
}
