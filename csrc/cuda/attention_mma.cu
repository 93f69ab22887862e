/* The bf16 tensor-core forward of causal attention (FlashAttention-2's structure on mma.sync
 * m16n8k16, bf16 inputs, float32 accumulation): a block of 4 warps owns 64 queries of one head, each
 * warp 16 of them; keys and values stream through shared memory 64 at a time; S = Q·Kᵀ and the online
 * softmax stay in registers, P is rounded to bf16 for P·V as FlashAttention does, and the log-sum-exp is
 * saved for the backward. head_dim 64 or 128.
 *
 * NOT YET RUN ON A GPU: it is opt-in (SERL_CUDA_ATTN=mma) until the conformance suite has passed with
 * it on one (bench/gpu.sh runs the attention cases both ways). */
#include <cuda_bf16.h>

#include "common.cuh"
#include "ops.cuh"

#define MMA_WARPS 4
#define MMA_BQ (16 * MMA_WARPS) /* queries per block */
#define MMA_BK 64               /* keys per tile */
#define PAD 8                   /* bf16 elements of padding per shared row: rows stay 16-byte aligned, banks spread */

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* two floats → bf16x2 (round to nearest even), lo in the low half */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    return (uint32_t)f32_to_bf16(lo) | ((uint32_t)f32_to_bf16(hi) << 16);
}

template <int HD>
__global__ void __launch_bounds__(MMA_WARPS * 32)
attn_fwd_mma_kernel(const int32_t *cu, const uint16_t *q, const uint16_t *k, const uint16_t *v, void *out, int obf,
                    float *lse, int H, int KVH, float scale) {
    extern __shared__ uint16_t smem[];
    constexpr int QS = HD + PAD, KS = HD + PAD, VS = MMA_BK + PAD;
    uint16_t *Qs = smem, *Ks = Qs + MMA_BQ * QS, *Vt = Ks + MMA_BK * KS; /* Vt: [HD][BK] (transposed) */
    const int s = blockIdx.y, h = blockIdx.z, kvh = h / (H / KVH);
    const int s0 = cu[s], s1 = cu[s + 1];
    const int i0 = s0 + blockIdx.x * MMA_BQ;
    if (i0 >= s1) return;
    const int i_last = min(s1, i0 + MMA_BQ) - 1;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;

    /* Q tile, pairs of bf16 per thread (HD even); rows past the sequence are zeros */
    for (int e = tid; e < MMA_BQ * HD / 2; e += blockDim.x) {
        const int r = e / (HD / 2), c = (e % (HD / 2)) * 2, i = i0 + r;
        uint32_t w = 0;
        if (i < s1) w = *(const uint32_t *)(q + ((int64_t)i * H + h) * HD + c);
        *(uint32_t *)(Qs + r * QS + c) = w;
    }
    __syncthreads();
    /* this warp's 16 rows as A fragments, once */
    uint32_t qa[HD / 16][4];
    const int qr = warp * 16;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        qa[kk][0] = *(const uint32_t *)(Qs + (qr + g) * QS + kk * 16 + 2 * t);
        qa[kk][1] = *(const uint32_t *)(Qs + (qr + g + 8) * QS + kk * 16 + 2 * t);
        qa[kk][2] = *(const uint32_t *)(Qs + (qr + g) * QS + kk * 16 + 2 * t + 8);
        qa[kk][3] = *(const uint32_t *)(Qs + (qr + g + 8) * QS + kk * 16 + 2 * t + 8);
    }
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0, l1 = 0; /* rows g and g + 8 */
    const int row0 = i0 + qr + g, row1 = row0 + 8;
    const int warp_last = min(i0 + qr + 15, i_last); /* keys past it are masked for every row of the warp */

    for (int j0 = s0; j0 <= i_last; j0 += MMA_BK) {
        __syncthreads(); /* the previous tile is consumed */
        for (int e = tid; e < MMA_BK * HD / 2; e += blockDim.x) {
            const int r = e / (HD / 2), c = (e % (HD / 2)) * 2, j = j0 + r;
            uint32_t kw = 0, vw = 0;
            if (j <= i_last) {
                const int64_t src = ((int64_t)j * KVH + kvh) * HD + c;
                kw = *(const uint32_t *)(k + src);
                vw = *(const uint32_t *)(v + src);
            }
            *(uint32_t *)(Ks + r * KS + c) = kw;
            Vt[c * VS + r] = (uint16_t)(vw & 0xFFFF);
            Vt[(c + 1) * VS + r] = (uint16_t)(vw >> 16);
        }
        __syncthreads();
        if (j0 > warp_last) continue; /* warp-uniform: every key of the tile is in this warp's future */

        /* S = Q·Kᵀ for the warp's 16 rows × 64 keys: 8 blocks of 8 keys */
        float sc[MMA_BK / 8][4];
#pragma unroll
        for (int nb = 0; nb < MMA_BK / 8; nb++) {
            sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                const uint16_t *kr = Ks + (nb * 8 + g) * KS + kk * 16 + 2 * t;
                mma_bf16(sc[nb], qa[kk], *(const uint32_t *)kr, *(const uint32_t *)(kr + 8));
            }
        }
        /* scale, causal mask, row maxima over the quad (the 4 lanes that share a row) */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nb = 0; nb < MMA_BK / 8; nb++) {
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const int j = j0 + nb * 8 + 2 * t + c;
                float a0 = sc[nb][c] * scale, a1 = sc[nb][2 + c] * scale;
                if (j > row0 || j >= s1) a0 = -INFINITY;
                if (j > row1 || j >= s1) a1 = -INFINITY;
                sc[nb][c] = a0, sc[nb][2 + c] = a1;
                mx0 = fmaxf(mx0, a0), mx1 = fmaxf(mx1, a1);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 2));
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        /* a row with no visible key yet (n = −inf) contributes nothing */
        const float al0 = n0 == -INFINITY || m0 == -INFINITY ? 0.0f : expf(m0 - n0);
        const float al1 = n1 == -INFINITY || m1 == -INFINITY ? 0.0f : expf(m1 - n1);
        float ps0 = 0, ps1 = 0;
#pragma unroll
        for (int nb = 0; nb < MMA_BK / 8; nb++) {
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const float p0 = sc[nb][c] == -INFINITY ? 0.0f : expf(sc[nb][c] - n0);
                const float p1 = sc[nb][2 + c] == -INFINITY ? 0.0f : expf(sc[nb][2 + c] - n1);
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
#pragma unroll
        for (int kk = 0; kk < MMA_BK / 16; kk++) {
            uint32_t pa[4];
            pa[0] = pack_bf16(sc[2 * kk][0], sc[2 * kk][1]);
            pa[1] = pack_bf16(sc[2 * kk][2], sc[2 * kk][3]);
            pa[2] = pack_bf16(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
            pa[3] = pack_bf16(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                const uint16_t *vr = Vt + (n * 8 + g) * VS + kk * 16 + 2 * t;
                mma_bf16(o[n], pa, *(const uint32_t *)vr, *(const uint32_t *)(vr + 8));
            }
        }
    }
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        const int d = n * 8 + 2 * t;
        if (row0 < s1) {
            const int64_t base = ((int64_t)row0 * H + h) * HD + d;
            st(out, obf, base, o[n][0] * inv0);
            st(out, obf, base + 1, o[n][1] * inv0);
        }
        if (row1 < s1) {
            const int64_t base = ((int64_t)row1 * H + h) * HD + d;
            st(out, obf, base, o[n][2] * inv1);
            st(out, obf, base + 1, o[n][3] * inv1);
        }
    }
    if (lse && t == 0) {
        if (row0 < s1) lse[(int64_t)row0 * H + h] = m0 + logf(l0);
        if (row1 < s1) lse[(int64_t)row1 * H + h] = m1 + logf(l1);
    }
}

int serl_attention_mma_enabled(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SERL_CUDA_ATTN");
        on = e && !strcmp(e, "mma");
    }
    return on;
}

int32_t serl_attention_fwd_mma(serl_cuda_ctx *ctx, const serl_attention_fwd_args *a, int max_len) {
    const int D = a->head_dim;
    const size_t shm = sizeof(uint16_t) * ((size_t)(MMA_BQ + MMA_BK) * (D + PAD) + (size_t)D * (MMA_BK + PAD));
    const dim3 grid((max_len + MMA_BQ - 1) / MMA_BQ, a->n_seqs, a->n_heads);
    const int obf = a->out_dtype == SERL_DTYPE_BF16;
    const uint16_t *q = (const uint16_t *)a->q, *k = (const uint16_t *)a->k, *v = (const uint16_t *)a->v;
    if (D == 64) {
        if (shm > 48 * 1024) CUDA_TRY(cudaFuncSetAttribute(attn_fwd_mma_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
        attn_fwd_mma_kernel<64><<<grid, MMA_WARPS * 32, shm, ctx->stream>>>(a->cu_seqlens, q, k, v, a->out, obf, a->lse,
                                                                           a->n_heads, a->n_kv_heads, a->scale);
    } else {
        if (shm > 48 * 1024) CUDA_TRY(cudaFuncSetAttribute(attn_fwd_mma_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
        attn_fwd_mma_kernel<128><<<grid, MMA_WARPS * 32, shm, ctx->stream>>>(a->cu_seqlens, q, k, v, a->out, obf, a->lse,
                                                                            a->n_heads, a->n_kv_heads, a->scale);
    }
    LAUNCH_CHECK("attention_fwd (mma)");
    return SERL_OK;
}
