/* Elementwise ops: residual add, scale, SwiGLU forward/backward, bias add and its gradient. Every
 * tensor F32 or BF16 (float32 compute, one rounding on store). The bias gradient is a two-stage
 * reduction (fixed row chunks, then the chunks in order), so it is deterministic. */
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define BIAS_ROWS 64

__device__ __forceinline__ float sigmoidf_(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void add_kernel(const void *x, int xbf, const void *y, int ybf, void *out, int obf, float alpha, int64_t n) {
    GRID_STRIDE(i, n) st(out, obf, i, __fadd_rn(ld(x, xbf, i), __fmul_rn(alpha, ld(y, ybf, i))));
}

__global__ void scale_kernel(const void *x, int xbf, void *out, int obf, float alpha, int64_t n) {
    GRID_STRIDE(i, n) st(out, obf, i, alpha * ld(x, xbf, i));
}

__global__ void swiglu_fwd_kernel(const void *gate, int gbf, const void *up, int ubf, void *out, int obf, int64_t n) {
    GRID_STRIDE(i, n) {
        float g = ld(gate, gbf, i);
        st(out, obf, i, __fmul_rn(__fmul_rn(g, sigmoidf_(g)), ld(up, ubf, i)));
    }
}

__global__ void swiglu_bwd_kernel(const void *gate, int gbf, const void *up, int ubf, const void *dout, int dbf,
                                  void *dgate, int dgbf, void *dup, int dubf, int64_t n) {
    GRID_STRIDE(i, n) {
        float g = ld(gate, gbf, i), u = ld(up, ubf, i), d = ld(dout, dbf, i);
        float s = sigmoidf_(g);
        float vg = ld(dgate, dgbf, i) + d * u * s * (1.0f + g * (1.0f - s));
        float vu = ld(dup, dubf, i) + d * g * s;
        st(dgate, dgbf, i, vg);
        st(dup, dubf, i, vu);
    }
}

__global__ void bias_add_kernel(const void *bias, int bbf, void *y, int ybf, int dim, int64_t n) {
    GRID_STRIDE(i, n) st(y, ybf, i, ld(y, ybf, i) + ld(bias, bbf, i % dim));
}

__global__ void bias_bwd_partial(const void *dy, int bf, double *partial, int n, int dim, int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    const int r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    double acc = 0;
    for (int r = r0; r < r1; r++) acc += ld(dy, bf, (int64_t)r * dim + c);
    partial[(int64_t)blockIdx.y * dim + c] = acc;
}

__global__ void bias_bwd_sum(const double *partial, int chunks, float *dbias, int dim) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    double acc = 0;
    for (int k = 0; k < chunks; k++) acc += partial[(int64_t)k * dim + c];
    dbias[c] += (float)acc;
}

#define BF(dt) ((dt) == SERL_DTYPE_BF16)

extern "C" SERL_API int32_t serl_add(void *ctxp, const serl_add_args *a) {
    SERL_ENTER(ctxp, a, serl_add_args);
    SERL_CHECK(serl_check_add(ctx, a));
    add_kernel<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->x, BF(a->x_dtype), a->y, BF(a->y_dtype), a->out,
                                                                 BF(a->out_dtype), a->alpha, a->n);
    LAUNCH_CHECK("add");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_scale(void *ctxp, const serl_scale_args *a) {
    SERL_ENTER(ctxp, a, serl_scale_args);
    SERL_CHECK(serl_check_scale(ctx, a));
    scale_kernel<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->x, BF(a->x_dtype), a->out, BF(a->out_dtype), a->alpha, a->n);
    LAUNCH_CHECK("scale");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_swiglu_fwd(void *ctxp, const serl_swiglu_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_fwd_args);
    SERL_CHECK(serl_check_swiglu_fwd(ctx, a));
    swiglu_fwd_kernel<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->gate, BF(a->gate_dtype), a->up, BF(a->up_dtype),
                                                                        a->out, BF(a->out_dtype), a->n);
    LAUNCH_CHECK("swiglu_fwd");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_swiglu_bwd(void *ctxp, const serl_swiglu_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_bwd_args);
    SERL_CHECK(serl_check_swiglu_bwd(ctx, a));
    swiglu_bwd_kernel<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->gate, BF(a->gate_dtype), a->up, BF(a->up_dtype),
                                                                        a->dout, BF(a->dout_dtype), a->dgate,
                                                                        BF(a->dgate_dtype), a->dup, BF(a->dup_dtype), a->n);
    LAUNCH_CHECK("swiglu_bwd");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_bias_add(void *ctxp, const serl_bias_add_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_add_args);
    SERL_CHECK(serl_check_bias_add(ctx, a));
    int64_t total = (int64_t)a->n * a->dim;
    bias_add_kernel<<<serl_blocks(total, 256), 256, 0, ctx->stream>>>(a->bias, BF(a->bias_dtype), a->y, BF(a->y_dtype),
                                                                       a->dim, total);
    LAUNCH_CHECK("bias_add");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_bias_bwd(void *ctxp, const serl_bias_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_bwd_args);
    SERL_CHECK(serl_check_bias_bwd(ctx, a));
    const int rows = serl_chunk_rows(a->n, BIAS_ROWS), chunks = (a->n + rows - 1) / rows;
    double *partial = (double *)serl_scratch(ctx, sizeof(double) * (size_t)chunks * a->dim);
    if (!partial) return ctx->scratch_status;
    bias_bwd_partial<<<dim3((a->dim + 127) / 128, chunks), 128, 0, ctx->stream>>>(a->dy, BF(a->dy_dtype), partial, a->n, a->dim, rows);
    LAUNCH_CHECK("bias_bwd");
    bias_bwd_sum<<<(a->dim + 127) / 128, 128, 0, ctx->stream>>>(partial, chunks, a->dbias, a->dim);
    LAUNCH_CHECK("bias_bwd");
    return SERL_OK;
}
