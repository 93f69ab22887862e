/* RMSNorm as Hugging Face's Llama/Qwen2 (float32 compute): y = (x · rstd) · w, rstd from Σx² in double;
 * with a residual add in front (res), of the sum as the add would have stored it.
 * The weight gradient is a reduction over rows: fixed row chunks write double partials, which a second
 * kernel adds in chunk order, so the result never depends on scheduling. */
#include "common.cuh"

#define FWD_THREADS 256
#define VEC_THREADS 128 /* the bf16x8 kernels: 112 vectors in a row of 896 (Qwen2.5-0.5B) */
#define DW_ROWS 64 /* rows per weight-gradient partial (more when the chunks would pass grid.y's 65535) */

/* The per-element arithmetic, one definition for the scalar and vector kernels: y = (x·r)·w, the
 * backward's (dy·w)·x terms and its dx + r·(w·dy − x·coef). */
__device__ __forceinline__ float rms_y(float x, float rs, float w) { return __fmul_rn(__fmul_rn(x, rs), w); }
/* a term of the backward's Σ (dy·w)·x, in double */
__device__ __forceinline__ double rms_dot(float g, float w, float x) { return (double)__fmul_rn(g, w) * (double)x; }
__device__ __forceinline__ float rms_dx(float dx, float rs, float w, float g, float x, float coef) {
    return __fadd_rn(dx, __fmul_rn(rs, __fsub_rn(__fmul_rn(w, g), __fmul_rn(x, coef))));
}

/* res (optional): the row normalised is s = x + res (serl_add's arithmetic), rounded as sum's dtype and
 * stored there; the second pass reads it back (each thread the elements it wrote). */
__global__ void rmsnorm_fwd_kernel(const void *x, int xbf, const void *res, int rbf, void *sum, int sbf, const float *w,
                                   void *y, int ybf, float *rstd, int dim, float eps) {
    __shared__ double sh[32];
    const int64_t base = (int64_t)blockIdx.x * dim;
    double ss = 0;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        double v;
        if (res) {
            const float s = __fadd_rn(ld(x, xbf, base + c), ld(res, rbf, base + c));
            st(sum, sbf, base + c, s);
            v = rnd(sbf, s);
        } else {
            v = ld(x, xbf, base + c);
        }
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float rs = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = rs;
    __syncthreads(); /* y may alias x: every read above is done before any write */
    if (res) x = sum, xbf = sbf;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) st(y, ybf, base + c, rms_y(ld(x, xbf, base + c), rs, w[c]));
}

/* the weights of vector c (8 floats) */
__device__ __forceinline__ void load8f(const float4 *w, int c, float *v) {
    const float4 a = w[2 * c], b = w[2 * c + 1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/* All-bf16 rows whose width is a multiple of 8, 16-byte aligned (the model's), in 16-byte vectors of 8
 * (nv a row): element by element, a block moves 2 bytes per access and keeps too few bytes in flight
 * for the memory's bandwidth. The same arithmetic per element; Σx² grouped by vector, still in double. */

__global__ void __launch_bounds__(VEC_THREADS)
    rmsnorm_fwd_bf16x8(const uint4 *x, const uint4 *res, uint4 *sum, const float4 *w, uint4 *y, float *rstd, int nv,
                       float eps) {
    __shared__ double sh[32];
    const int64_t base = (int64_t)blockIdx.x * nv;
    const uint4 *xr = x + base;
    uint4 *yr = y + base;
    double ss = 0;
    for (int c = threadIdx.x; c < nv; c += blockDim.x) {
        float v[8];
        bf16x8_unpack(xr[c], v);
        if (res) { /* s = x + res as the bf16 add; the norm reads the rounded s */
            float r[8];
            bf16x8_unpack(res[base + c], r);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = __fadd_rn(v[k], r[k]);
            const uint4 s = bf16x8_pack(v);
            sum[base + c] = s;
            bf16x8_unpack(s, v);
        }
#pragma unroll
        for (int k = 0; k < 8; k++) ss += (double)v[k] * v[k];
    }
    ss = block_sum(ss, sh);
    const float rs = (float)(1.0 / sqrt(ss / (double)(8 * nv) + (double)eps));
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = rs;
    __syncthreads(); /* y may alias x: every read above is done before any write */
    if (res) xr = sum + base;
    for (int c = threadIdx.x; c < nv; c += blockDim.x) {
        float v[8], wv[8];
        bf16x8_unpack(xr[c], v);
        load8f(w, c, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = rms_y(v[k], rs, wv[k]);
        yr[c] = bf16x8_pack(v);
    }
}

extern "C" SERL_API int32_t serl_rmsnorm_fwd(void *ctxp, const serl_rmsnorm_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_rmsnorm_fwd_args);
    SERL_CHECK(serl_check_rmsnorm_fwd(ctx, a));
    SERL_REQUIRE(a->x != a->y || a->x_dtype == a->y_dtype, "rmsnorm_fwd: y aliases x with another dtype");
    const int bf = SERL_DTYPE_BF16;
    const bool res_bf16 = !a->res || (a->res_dtype == bf && a->sum_dtype == bf && serl_aligned16({a->res, a->sum}));
    if (a->x_dtype == bf && a->y_dtype == bf && res_bf16 && a->dim % 8 == 0 && serl_aligned16({a->x, a->y, a->w}))
        rmsnorm_fwd_bf16x8<<<a->n, VEC_THREADS, 0, ctx->stream>>>((const uint4 *)a->x, (const uint4 *)a->res, (uint4 *)a->sum,
                                                                  (const float4 *)a->w, (uint4 *)a->y, a->rstd, a->dim / 8,
                                                                  a->eps);
    else
        rmsnorm_fwd_kernel<<<a->n, FWD_THREADS, 0, ctx->stream>>>(a->x, a->x_dtype == bf, a->res, a->res_dtype == bf, a->sum,
                                                                   a->sum_dtype == bf, a->w, a->y, a->y_dtype == bf, a->rstd,
                                                                   a->dim, a->eps);
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
        s += rms_dot(ld(dy, gbf, base + c), w[c], ld(x, xbf, base + c));
    s = block_sum(s, sh);
    const float coef = (float)((double)rs * rs * (s / (double)dim));
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        st(dx, dbf, base + c, rms_dx(ld(dx, dbf, base + c), rs, w[c], ld(dy, gbf, base + c), ld(x, xbf, base + c), coef));
}

/* The same for all-bf16 rows in vectors of 8, as the forward's. dx may alias dy: a thread reads each
 * vector of dy before it writes the same vector of dx, and the first pass ends at a barrier. */
__global__ void __launch_bounds__(VEC_THREADS) rmsnorm_bwd_dx_bf16x8(const uint4 *x, const float4 *w, const float *rstd,
                                                                    const uint4 *dy, uint4 *dx, int nv) {
    __shared__ double sh[32];
    const int64_t base = (int64_t)blockIdx.x * nv;
    const float rs = rstd[blockIdx.x];
    double s = 0;
    for (int c = threadIdx.x; c < nv; c += blockDim.x) {
        float g[8], xv[8], wv[8];
        bf16x8_unpack(dy[base + c], g);
        bf16x8_unpack(x[base + c], xv);
        load8f(w, c, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) s += rms_dot(g[k], wv[k], xv[k]);
    }
    s = block_sum(s, sh);
    const float coef = (float)((double)rs * rs * (s / (double)(8 * nv)));
    for (int c = threadIdx.x; c < nv; c += blockDim.x) {
        float g[8], xv[8], wv[8], d[8];
        bf16x8_unpack(dy[base + c], g);
        bf16x8_unpack(x[base + c], xv);
        bf16x8_unpack(dx[base + c], d);
        load8f(w, c, wv);
#pragma unroll
        for (int k = 0; k < 8; k++) d[k] = rms_dx(d[k], rs, wv[k], g[k], xv[k], coef);
        dx[base + c] = bf16x8_pack(d);
    }
}

/* partial[chunk][c] = Σ_{rows of chunk} dy·x·r (double), the rows in order */
__device__ __forceinline__ double rms_dw(float g, float x, float rs) { return (double)__fmul_rn(__fmul_rn(g, x), rs); }

__global__ void rmsnorm_bwd_dw_partial(const void *x, int xbf, const float *rstd, const void *dy, int gbf, double *partial,
                                       int n, int dim, int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    const int r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    double acc = 0;
    for (int r = r0; r < r1; r++) {
        int64_t o = (int64_t)r * dim + c;
        acc += rms_dw(ld(dy, gbf, o), ld(x, xbf, o), rstd[r]);
    }
    partial[(int64_t)blockIdx.y * dim + c] = acc;
}

/* The same for all-bf16 rows in vectors of 8 (nv a row): a thread sums 8 columns, each over the rows in
 * the same order, so the partials are the element kernel's bit for bit. */
__global__ void rmsnorm_bwd_dw_partial_bf16x8(const uint4 *x, const float *rstd, const uint4 *dy, double *partial, int n, int nv,
                                              int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= nv) return;
    const int r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int r = r0; r < r1; r++) {
        float g[8], xv[8];
        bf16x8_unpack(dy[(int64_t)r * nv + c], g);
        bf16x8_unpack(x[(int64_t)r * nv + c], xv);
        const float rs = rstd[r];
#pragma unroll
        for (int k = 0; k < 8; k++) acc[k] += rms_dw(g[k], xv[k], rs);
    }
    double *p = partial + ((int64_t)blockIdx.y * nv + c) * 8;
#pragma unroll
    for (int k = 0; k < 8; k++) p[k] = acc[k];
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
    const bool vec = xbf && gbf && a->dim % 8 == 0 && serl_aligned16({a->x, a->dy});
    if (vec)
        rmsnorm_bwd_dw_partial_bf16x8<<<dim3((a->dim / 8 + 127) / 128, chunks), 128, 0, ctx->stream>>>(
            (const uint4 *)a->x, a->rstd, (const uint4 *)a->dy, partial, a->n, a->dim / 8, rows);
    else
        rmsnorm_bwd_dw_partial<<<dim3((a->dim + 127) / 128, chunks), 128, 0, ctx->stream>>>(a->x, xbf, a->rstd, a->dy, gbf,
                                                                                          partial, a->n, a->dim, rows);
    LAUNCH_CHECK("rmsnorm_bwd");
    rmsnorm_bwd_dw_sum<<<(a->dim + 127) / 128, 128, 0, ctx->stream>>>(partial, chunks, a->dw, a->dim);
    LAUNCH_CHECK("rmsnorm_bwd");
    if (vec && a->dx_dtype == SERL_DTYPE_BF16 && serl_aligned16({a->w, a->dx}))
        rmsnorm_bwd_dx_bf16x8<<<a->n, VEC_THREADS, 0, ctx->stream>>>((const uint4 *)a->x, (const float4 *)a->w, a->rstd,
                                                                     (const uint4 *)a->dy, (uint4 *)a->dx, a->dim / 8);
    else
        rmsnorm_bwd_dx_kernel<<<a->n, FWD_THREADS, 0, ctx->stream>>>(a->x, xbf, a->w, a->rstd, a->dy, gbf, a->dx,
                                                                      a->dx_dtype == SERL_DTYPE_BF16, a->dim);
    LAUNCH_CHECK("rmsnorm_bwd");
    return SERL_OK;
}
