/* RMSNorm as Hugging Face's Llama/Qwen2 (float32 compute): y = (x · rstd) · w, rstd from Σx² in double.
 * The weight gradient is a reduction over rows: fixed row chunks write double partials, which a second
 * kernel adds in chunk order, so the result never depends on scheduling. */
#include "common.cuh"

#define FWD_THREADS 256
#define DW_ROWS 64 /* rows per weight-gradient partial (more when the chunks would pass grid.y's 65535) */

__global__ void rmsnorm_fwd_kernel(const void *x, int xbf, const float *w, void *y, int ybf, float *rstd, int dim,
                                   float eps) {
    __shared__ double sh[32];
    const int64_t base = (int64_t)blockIdx.x * dim;
    double ss = 0;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        double v = ld(x, xbf, base + c);
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float rs = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = rs;
    __syncthreads(); /* y may alias x: every read above is done before any write */
    for (int c = threadIdx.x; c < dim; c += blockDim.x) st(y, ybf, base + c, __fmul_rn(__fmul_rn(ld(x, xbf, base + c), rs), w[c]));
}

extern "C" SERL_API int32_t serl_rmsnorm_fwd(void *ctxp, const serl_rmsnorm_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_rmsnorm_fwd_args);
    SERL_CHECK(serl_check_rmsnorm_fwd(ctx, a));
    SERL_REQUIRE(a->x != a->y || a->x_dtype == a->y_dtype, "rmsnorm_fwd: y aliases x with another dtype");
    rmsnorm_fwd_kernel<<<a->n, FWD_THREADS, 0, ctx->stream>>>(a->x, a->x_dtype == SERL_DTYPE_BF16, a->w, a->y,
                                                               a->y_dtype == SERL_DTYPE_BF16, a->rstd, a->dim, a->eps);
    LAUNCH_CHECK("rmsnorm_fwd");
    return SERL_OK;
}

/* dx_k += r·(w_k·dy_k − x_k·coef), coef = r²·(1/D)·Σ_j (dy_j·w_j)·x_j. */
__global__ void rmsnorm_bwd_dx_kernel(const void *x, int xbf, const float *w, const float *rstd, const void *dy, int gbf,
                                      void *dx, int dbf, int dim) {
    __shared__ double sh[32];
    const int64_t base = (int64_t)blockIdx.x * dim;
    const float rs = rstd[blockIdx.x];
    double s = 0;
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        s += (double)__fmul_rn(ld(dy, gbf, base + c), w[c]) * (double)ld(x, xbf, base + c);
    s = block_sum(s, sh);
    const float coef = (float)((double)rs * rs * (s / (double)dim));
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        float g = ld(dy, gbf, base + c), xv = ld(x, xbf, base + c);
        float upd = __fmul_rn(rs, __fsub_rn(__fmul_rn(w[c], g), __fmul_rn(xv, coef)));
        st(dx, dbf, base + c, __fadd_rn(ld(dx, dbf, base + c), upd));
    }
}

/* partial[chunk][c] = Σ_{rows of chunk} dy·x·r (double) */
__global__ void rmsnorm_bwd_dw_partial(const void *x, int xbf, const float *rstd, const void *dy, int gbf, double *partial,
                                       int n, int dim, int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    const int r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    double acc = 0;
    for (int r = r0; r < r1; r++) {
        int64_t o = (int64_t)r * dim + c;
        acc += (double)__fmul_rn(__fmul_rn(ld(dy, gbf, o), ld(x, xbf, o)), rstd[r]);
    }
    partial[(int64_t)blockIdx.y * dim + c] = acc;
}

__global__ void rmsnorm_bwd_dw_sum(const double *partial, int chunks, float *dw, int dim) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    double acc = 0;
    for (int k = 0; k < chunks; k++) acc += partial[(int64_t)k * dim + c];
    dw[c] += (float)acc;
}

extern "C" SERL_API int32_t serl_rmsnorm_bwd(void *ctxp, const serl_rmsnorm_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_rmsnorm_bwd_args);
    SERL_CHECK(serl_check_rmsnorm_bwd(ctx, a));
    const int rows = serl_chunk_rows(a->n, DW_ROWS), chunks = (a->n + rows - 1) / rows;
    double *partial = (double *)serl_scratch(ctx, sizeof(double) * (size_t)chunks * a->dim);
    if (!partial) return ctx->scratch_status;
    const int xbf = a->x_dtype == SERL_DTYPE_BF16, gbf = a->dy_dtype == SERL_DTYPE_BF16;
    /* dw partials first: dx may alias dy (in-place backward), and the partials read dy */
    rmsnorm_bwd_dw_partial<<<dim3((a->dim + 127) / 128, chunks), 128, 0, ctx->stream>>>(a->x, xbf, a->rstd, a->dy, gbf,
                                                                                      partial, a->n, a->dim, rows);
    LAUNCH_CHECK("rmsnorm_bwd");
    rmsnorm_bwd_dw_sum<<<(a->dim + 127) / 128, 128, 0, ctx->stream>>>(partial, chunks, a->dw, a->dim);
    LAUNCH_CHECK("rmsnorm_bwd");
    rmsnorm_bwd_dx_kernel<<<a->n, FWD_THREADS, 0, ctx->stream>>>(a->x, xbf, a->w, a->rstd, a->dy, gbf, a->dx,
                                                                  a->dx_dtype == SERL_DTYPE_BF16, a->dim);
    LAUNCH_CHECK("rmsnorm_bwd");
    return SERL_OK;
}
