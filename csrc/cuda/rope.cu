/* Rotary position embeddings, Hugging Face half-split layout, forward and transpose. The angle is
 * pos·inv_freq rounded to float32 (as HF forms it); cos and sin in double, rounded to float32, as the
 * CPU library does. One thread per rotated pair. */
#include "common.cuh"

__global__ void rope_kernel(const int32_t *pos, const float *inv_freq, const void *x, int xbf, void *y, int ybf,
                            int n_heads, int head_dim, int rot_dim, int bwd, int acc, int64_t total,
                            serl_dev_err *err) {
    const int half = rot_dim / 2, pass = head_dim - rot_dim, per = half + pass; /* work items per head */
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t th = i / per; /* token·n_heads + head */
        const int j = (int)(i % per);
        const int64_t base = th * head_dim;
        if (j < half) {
            const int64_t t = th / n_heads;
            if (pos[t] < 0) { /* reported at the next synchronisation; the pair is left unwritten */
                if (j == 0 && th % n_heads == 0) serl_report(err, SERL_DERR_ROPE_POS, (int)t, 0, pos[t], 0);
                continue;
            }
            float ang = __fmul_rn((float)pos[t], inv_freq[j]);
            double sd, cd;
            sincos((double)ang, &sd, &cd);
            float c = (float)cd, s = bwd ? -(float)sd : (float)sd;
            float x1 = ld(x, xbf, base + j), x2 = ld(x, xbf, base + half + j);
            float y1 = fmaf(x1, c, -__fmul_rn(x2, s)), y2 = fmaf(x2, c, __fmul_rn(x1, s));
            if (acc) y1 += ld(y, ybf, base + j), y2 += ld(y, ybf, base + half + j);
            st(y, ybf, base + j, y1);
            st(y, ybf, base + half + j, y2);
        } else {
            const int64_t o = base + rot_dim + (j - half);
            float v = ld(x, xbf, o);
            st(y, ybf, o, acc ? ld(y, ybf, o) + v : v);
        }
    }
}

extern "C" SERL_API int32_t serl_rope(void *ctxp, const serl_rope_args *a) {
    SERL_ENTER(ctxp, a, serl_rope_args);
    SERL_CHECK(serl_check_rope(ctx, a));
    if (a->n_tokens == 0 || a->n_heads == 0) return SERL_OK;
    SERL_REQUIRE(a->pos && a->inv_freq && a->x && a->y, "rope: NULL tensor (pos %p, inv_freq %p, x %p, y %p)",
                 (const void *)a->pos, (const void *)a->inv_freq, a->x, a->y);
    {
        int64_t n = (int64_t)a->n_tokens * a->n_heads * a->head_dim;
        uintptr_t x0 = (uintptr_t)a->x, y0 = (uintptr_t)a->y;
        uintptr_t x1 = x0 + (uintptr_t)n * serl_dtype_size(a->x_dtype), y1 = y0 + (uintptr_t)n * serl_dtype_size(a->y_dtype);
        int overlap = x0 < y1 && y0 < x1;
        SERL_REQUIRE(!overlap || (x0 == y0 && !a->accumulate && a->x_dtype == a->y_dtype),
                     "rope: y overlaps x (only exact in-place without accumulate and with one dtype is allowed)");
    }
    const int per = a->rot_dim / 2 + (a->head_dim - a->rot_dim);
    int64_t total = (int64_t)a->n_tokens * a->n_heads * per;
    rope_kernel<<<serl_blocks(total, 256), 256, 0, ctx->stream>>>(a->pos, a->inv_freq, a->x, a->x_dtype == SERL_DTYPE_BF16,
                                                                   a->y, a->y_dtype == SERL_DTYPE_BF16, a->n_heads,
                                                                   a->head_dim, a->rot_dim, a->bwd, a->accumulate, total,
                                                                   ctx->derr);
    LAUNCH_CHECK("rope");
    return SERL_OK;
}
