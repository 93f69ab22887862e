/* Rotary position embeddings, Hugging Face half-split layout, forward and transpose; and rope_append,
 * a generation step's bias adds, rotation and KV-cache append in one kernel. The angle is
 * pos·inv_freq rounded to float32 (as HF forms it); cos and sin in double, rounded to float32, as the
 * CPU library does. One block per token: its cos/sin pairs are evaluated once into shared memory (in
 * chunks of ROPE_TRIG pairs) and serve every head, as on the CPU (double sincos is the expensive part:
 * once per head it bounded the op at ~2× its memory time for Qwen2.5's 14 query heads). */
#include "common.cuh"

#define ROPE_THREADS 128
#define ROPE_TRIG 1024 /* pairs whose cos/sin a block holds at once */

/* The rotation of one pair (x1, x2) by (c, s), one definition for the element and vector paths. */
__device__ __forceinline__ void rope_pair(float x1, float x2, float c, float s, float *y1, float *y2) {
    *y1 = fmaf(x1, c, -__fmul_rn(x2, s)), *y2 = fmaf(x2, c, __fmul_rn(x1, s));
}

/* cs[j] = cos and cs[ROPE_TRIG + j] = sin (−sin for the transpose) of the angles p·inv_freq[j], j < nj:
 * the block's threads fill a chunk, the caller waits at a barrier before reading it. */
__device__ __forceinline__ void rope_trig(float *cs, int32_t p, const float *inv_freq, int nj, int bwd) {
    for (int j = threadIdx.x; j < nj; j += blockDim.x) {
        const float ang = __fmul_rn((float)p, inv_freq[j]);
        double sd, cd;
        sincos((double)ang, &sd, &cd);
        cs[j] = (float)cd;
        cs[ROPE_TRIG + j] = bwd ? -(float)sd : (float)sd;
    }
}

/* vec: x and y bf16, 16-byte aligned, head_dim and rot_dim/2 multiples of 8 (the model's): the pairs go
 * 8 at a time in 16-byte vectors (each half of a head's rotated part is contiguous), where element by
 * element a block moves 2 bytes an access and keeps few bytes in flight. */
__global__ void __launch_bounds__(ROPE_THREADS)
    rope_kernel(const int32_t *pos, const float *inv_freq, const void *x, int xbf, void *y, int ybf, int n_heads,
                int head_dim, int rot_dim, int bwd, int acc, int vec, serl_dev_err *err) {
    __shared__ __align__(16) float cs[2 * ROPE_TRIG]; /* cos[ROPE_TRIG], then sin (−sin for the transpose) */
    const int t = blockIdx.x, half = rot_dim / 2, pass = head_dim - rot_dim;
    const int32_t p = pos[t];
    if (p < 0) { /* reported at the next synchronisation; the token is left unwritten */
        if (threadIdx.x == 0) serl_report(err, SERL_DERR_ROPE_POS, t, 0, p, 0);
        return;
    }
    const int64_t tok = (int64_t)t * n_heads * head_dim;
    for (int j0 = 0; j0 < half; j0 += ROPE_TRIG) {
        const int nj = min(ROPE_TRIG, half - j0);
        if (j0) __syncthreads(); /* the previous chunk's readers are done */
        rope_trig(cs, p, inv_freq + j0, nj, bwd);
        __syncthreads();
        if (vec) {
            /* (head, 8 pairs) items; nj is a multiple of 8 */
            const int nv = nj / 8, work = n_heads * nv;
            for (int i = threadIdx.x; i < work; i += blockDim.x) {
                const int h = i / nv, j = (i - h * nv) * 8;
                const int64_t o = tok + (int64_t)h * head_dim + j0 + j;
                uint4 *y1p = (uint4 *)((uint16_t *)y + o), *y2p = (uint4 *)((uint16_t *)y + o + half);
                float x1[8], x2[8], y1[8], y2[8], c[8], sn[8];
                bf16x8_unpack(*(const uint4 *)((const uint16_t *)x + o), x1);
                bf16x8_unpack(*(const uint4 *)((const uint16_t *)x + o + half), x2);
                /* the 8 cos and sin as 16-byte reads: 8 lanes a phase, at most 2 ways in a bank (none at
                 * head_dim 64, where the lanes of a warp's 4 heads read the same words), where 4-byte
                 * reads 32 bytes apart put 8 lanes in each bank */
                *(float4 *)c = *(const float4 *)(cs + j), *(float4 *)(c + 4) = *(const float4 *)(cs + j + 4);
                *(float4 *)sn = *(const float4 *)(cs + ROPE_TRIG + j), *(float4 *)(sn + 4) = *(const float4 *)(cs + ROPE_TRIG + j + 4);
#pragma unroll
                for (int k = 0; k < 8; k++) rope_pair(x1[k], x2[k], c[k], sn[k], &y1[k], &y2[k]);
                if (acc) {
                    float a1[8], a2[8];
                    bf16x8_unpack(*y1p, a1);
                    bf16x8_unpack(*y2p, a2);
#pragma unroll
                    for (int k = 0; k < 8; k++) y1[k] += a1[k], y2[k] += a2[k];
                }
                *y1p = bf16x8_pack(y1);
                *y2p = bf16x8_pack(y2);
            }
            continue;
        }
        /* (head, pair) items; a warp covers consecutive pairs of a head (coalesced) */
        const int work = n_heads * nj; /* serl_rope keeps a token's n_heads·head_dim under 2³¹ */
        for (int i = threadIdx.x; i < work; i += blockDim.x) {
            const int h = i / nj, j = i - h * nj;
            const int64_t o = tok + (int64_t)h * head_dim + j0 + j;
            float x1 = ld(x, xbf, o), x2 = ld(x, xbf, o + half), y1, y2;
            rope_pair(x1, x2, cs[j], cs[ROPE_TRIG + j], &y1, &y2);
            if (acc) y1 += ld(y, ybf, o), y2 += ld(y, ybf, o + half);
            st(y, ybf, o, y1);
            st(y, ybf, o + half, y2);
        }
    }
    /* the dimensions past rot_dim pass through */
    const int pw = n_heads * pass;
    for (int i = threadIdx.x; i < pw; i += blockDim.x) {
        const int h = i / pass, c = i - h * pass;
        const int64_t o = tok + (int64_t)h * head_dim + rot_dim + c;
        const float v = ld(x, xbf, o);
        st(y, ybf, o, acc ? ld(y, ybf, o) + v : v);
    }
}

extern "C" SERL_API int32_t serl_rope(void *ctxp, const serl_rope_args *a) {
    SERL_ENTER(ctxp, a, serl_rope_args);
    SERL_CHECK(serl_check_rope(ctx, a));
    if (a->n_tokens == 0 || a->n_heads == 0) return SERL_OK;
    SERL_REQUIRE(a->pos && a->inv_freq && a->x && a->y, "rope: NULL tensor (pos %p, inv_freq %p, x %p, y %p)",
                 (const void *)a->pos, (const void *)a->inv_freq, a->x, a->y);
    SERL_REQUIRE((int64_t)a->n_heads * a->head_dim <= INT32_MAX, "rope: n_heads · head_dim = %lld per token (at most %d)",
                 (long long)a->n_heads * a->head_dim, INT32_MAX);
    const int xbf = a->x_dtype == SERL_DTYPE_BF16, ybf = a->y_dtype == SERL_DTYPE_BF16;
    const int vec = xbf && ybf && a->head_dim % 8 == 0 && (a->rot_dim / 2) % 8 == 0 && serl_aligned16({a->x, a->y});
    rope_kernel<<<(unsigned)a->n_tokens, ROPE_THREADS, 0, ctx->stream>>>(a->pos, a->inv_freq, a->x, xbf, a->y, ybf, a->n_heads,
                                                                        a->head_dim, a->rot_dim, a->bwd, a->accumulate, vec,
                                                                        ctx->derr);
    LAUNCH_CHECK("rope");
    return SERL_OK;
}

/* rope_append, one block per token as rope_kernel: the biases added with the bias add's rounding (rnd),
 * q's and k's heads rotated with the token's cos/sin chunk, k's rotated values and v's biased ones
 * written back and into the cache at the token's slot. Each value goes through the roundings the
 * separate ops gave it (into q/k/v's dtype, then the cache's), so the bits are theirs. Element by
 * element: a decode step's call moves ~1 MB and is bound by its launch, not its accesses (a prompt's
 * prefill, once a sequence, is the larger call). */
__global__ void __launch_bounds__(ROPE_THREADS)
    rope_append_kernel(const int32_t *pos, const float *inv_freq, const int32_t *slots, void *q, int qbf, void *k,
                       void *v, int kvbf, const void *bq, const void *bk, const void *bv, int bbf, void *kc, void *vc,
                       int cbf, int n_heads, int n_kv_heads, int head_dim, int rot_dim, int64_t n_slots,
                       serl_dev_err *err) {
    __shared__ __align__(16) float cs[2 * ROPE_TRIG];
    const int t = blockIdx.x, half = rot_dim / 2, pass = head_dim - rot_dim, heads = n_heads + n_kv_heads;
    const int32_t p = pos[t], sl = slots[t];
    if (p < 0) { /* reported at the next synchronisation; the token is left unwritten */
        if (threadIdx.x == 0) serl_report(err, SERL_DERR_ROPE_POS, t, 1, p, 0);
        return;
    }
    if (sl >= n_slots && threadIdx.x == 0) serl_report(err, SERL_DERR_KV_SLOT, t, 1, sl, n_slots);
    const bool cached = sl >= 0 && sl < n_slots; /* a negative slot skips the token's append */
    const int64_t row = (int64_t)n_kv_heads * head_dim, qt = (int64_t)t * n_heads * head_dim, kt = t * row;
    const int64_t ct = cached ? sl * row : 0;
    /* dimension d of head h, q's heads then k's: its tensor and dtype, whether it is k's, its offset in
     * the token's row (e: also its bias's and its cache row's index) and in the tensor (o) */
    struct elem {
        void *x;
        int bf;
        bool isk;
        int64_t e, o;
    };
    auto at = [&](int h, int d) {
        const bool isk = h >= n_heads;
        const int64_t e = (int64_t)(isk ? h - n_heads : h) * head_dim + d;
        return elem{isk ? k : q, isk ? kvbf : qbf, isk, e, (isk ? kt : qt) + e};
    };
    /* the value c elements past r, with its bias added as bias_add rounds it */
    auto biased = [&](const elem &r, int c) {
        const float x = ld(r.x, r.bf, r.o + c);
        return bq ? rnd(r.bf, __fadd_rn(x, ld(r.isk ? bk : bq, bbf, r.e + c))) : x;
    };
    for (int j0 = 0; j0 < half; j0 += ROPE_TRIG) {
        const int nj = min(ROPE_TRIG, half - j0);
        if (j0) __syncthreads(); /* the previous chunk's readers are done */
        rope_trig(cs, p, inv_freq + j0, nj, 0);
        __syncthreads();
        /* (head, pair) items over q's heads, then k's */
        for (int i = threadIdx.x; i < heads * nj; i += blockDim.x) {
            const int h = i / nj, j = i - h * nj;
            const elem r = at(h, j0 + j);
            float y1, y2;
            rope_pair(biased(r, 0), biased(r, half), cs[j], cs[ROPE_TRIG + j], &y1, &y2);
            st(r.x, r.bf, r.o, y1);
            st(r.x, r.bf, r.o + half, y2);
            if (r.isk && cached) st(kc, cbf, ct + r.e, rnd(kvbf, y1)), st(kc, cbf, ct + r.e + half, rnd(kvbf, y2));
        }
    }
    /* the dimensions past rot_dim: biased, not rotated */
    for (int i = threadIdx.x; i < heads * pass; i += blockDim.x) {
        const int h = i / pass;
        const elem r = at(h, rot_dim + (i - h * pass));
        const float val = biased(r, 0);
        if (bq) st(r.x, r.bf, r.o, val);
        if (r.isk && cached) st(kc, cbf, ct + r.e, val);
    }
    for (int64_t e = threadIdx.x; e < row; e += blockDim.x) {
        float val = ld(v, kvbf, kt + e);
        if (bq) val = rnd(kvbf, __fadd_rn(val, ld(bv, bbf, e))), st(v, kvbf, kt + e, val);
        if (cached) st(vc, cbf, ct + e, val);
    }
}

extern "C" SERL_API int32_t serl_rope_append(void *ctxp, const serl_rope_append_args *a) {
    SERL_ENTER(ctxp, a, serl_rope_append_args);
    SERL_CHECK(serl_check_rope_append(ctx, a));
    const int bf = SERL_DTYPE_BF16;
    rope_append_kernel<<<(unsigned)a->n_tokens, ROPE_THREADS, 0, ctx->stream>>>(
        a->pos, a->inv_freq, a->slots, a->q, a->q_dtype == bf, a->k, a->v, a->kv_dtype == bf, a->bq, a->bk, a->bv,
        a->bias_dtype == bf, a->k_cache, a->v_cache, a->cache_dtype == bf, a->n_heads, a->n_kv_heads, a->head_dim,
        a->rot_dim, (int64_t)a->n_blocks * a->block_size, ctx->derr);
    LAUNCH_CHECK("rope_append");
    return SERL_OK;
}
