/* Elementwise ops: residual add, scale, SwiGLU forward/backward, bias add and its gradient. Every
 * tensor F32 or BF16 (float32 compute, one rounding on store). The bias gradient is a two-stage
 * reduction (fixed row chunks, then the chunks in order), so it is deterministic. */
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define BIAS_ROWS 64

__device__ __forceinline__ float sigmoidf_(float g) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g))); }

/* out = x + α·y, one definition for the element-by-element kernel and the bf16 vector one */
__device__ __forceinline__ float add_f(float x, float alpha, float y) { return __fadd_rn(x, __fmul_rn(alpha, y)); }

__global__ void add_kernel(const void *x, int xbf, const void *y, int ybf, void *out, int obf, float alpha, int64_t n) {
    GRID_STRIDE(i, n) st(out, obf, i, add_f(ld(x, xbf, i), alpha, ld(y, ybf, i)));
}

/* All-bf16 adds (the residual stream's) in 16-byte vectors of 8, as SwiGLU's below; nv vectors. */
__global__ void add_bf16x8(const uint4 *x, const uint4 *y, uint4 *out, float alpha, int64_t nv) {
    GRID_STRIDE(i, nv) {
        float a[8], b[8];
        bf16x8_unpack(x[i], a);
        bf16x8_unpack(y[i], b);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] = add_f(a[k], alpha, b[k]);
        out[i] = bf16x8_pack(a);
    }
}

__global__ void scale_kernel(const void *x, int xbf, void *out, int obf, float alpha, int64_t n) {
    GRID_STRIDE(i, n) st(out, obf, i, alpha * ld(x, xbf, i));
}

/* out = silu(g)·u, and the backward's dgate = d·u·σ(g)·(1 + g·(1 − σ(g))), dup = d·g·σ(g) (written, not
 * accumulated: serl.h): one definition for the element-by-element kernels and the bf16 vector ones,
 * every step rounded as written (no contraction the compiler might choose differently where each is
 * inlined), so both give the same bits. */
__device__ __forceinline__ float swiglu_f(float g, float u) { return __fmul_rn(__fmul_rn(g, sigmoidf_(g)), u); }
__device__ __forceinline__ void swiglu_b(float g, float u, float d, float *dg, float *du) {
    const float s = sigmoidf_(g);
    const float ds = __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, s)));
    *dg = __fmul_rn(__fmul_rn(__fmul_rn(d, u), s), ds);
    *du = __fmul_rn(__fmul_rn(d, g), s);
}

__global__ void swiglu_fwd_kernel(const void *gate, int gbf, const void *up, int ubf, void *out, int obf, int64_t n) {
    GRID_STRIDE(i, n) st(out, obf, i, swiglu_f(ld(gate, gbf, i), ld(up, ubf, i)));
}

__global__ void swiglu_bwd_kernel(const void *gate, int gbf, const void *up, int ubf, const void *dout, int dbf,
                                  void *dgate, int dgbf, void *dup, int dubf, int64_t n) {
    GRID_STRIDE(i, n) {
        float vg, vu;
        swiglu_b(ld(gate, gbf, i), ld(up, ubf, i), ld(dout, dbf, i), &vg, &vu);
        st(dgate, dgbf, i, vg);
        st(dup, dubf, i, vu);
    }
}

/* All-bf16 SwiGLU (the training shapes: [tokens, intermediate]) in 16-byte vectors of 8 elements: the
 * element-by-element kernels move 2 bytes per access and reach a fraction of the memory bandwidth. nv
 * vectors; the caller runs the n mod 8 tail through the kernels above. */
__global__ void swiglu_fwd_bf16x8(const uint4 *gate, const uint4 *up, uint4 *out, int64_t nv) {
    GRID_STRIDE(i, nv) {
        float g[8], u[8];
        bf16x8_unpack(gate[i], g);
        bf16x8_unpack(up[i], u);
#pragma unroll
        for (int k = 0; k < 8; k++) g[k] = swiglu_f(g[k], u[k]);
        out[i] = bf16x8_pack(g);
    }
}

__global__ void swiglu_bwd_bf16x8(const uint4 *gate, const uint4 *up, const uint4 *dout, uint4 *dgate, uint4 *dup,
                                  int64_t nv) {
    GRID_STRIDE(i, nv) {
        float g[8], u[8], d[8], vg[8], vu[8];
        bf16x8_unpack(gate[i], g);
        bf16x8_unpack(up[i], u);
        bf16x8_unpack(dout[i], d);
#pragma unroll
        for (int k = 0; k < 8; k++) swiglu_b(g[k], u[k], d[k], &vg[k], &vu[k]);
        dgate[i] = bf16x8_pack(vg);
        dup[i] = bf16x8_pack(vu);
    }
}


/* Rows over blocks, columns over threads: a flat index needed a 64-bit i % dim per element, which
 * cost ~2.5× the op's memory time on a GPU. */
__global__ void bias_add_kernel(const void *bias, int bbf, void *y, int ybf, int dim, int n) {
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        const int64_t o = r * dim;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) st(y, ybf, o + c, __fadd_rn(ld(y, ybf, o + c), ld(bias, bbf, c)));
    }
}

/* All-bf16 (y and the bias: the weights' bf16 copy), dim a multiple of 8, aligned: 16-byte vectors over
 * the flat [n, dim/8] grid. The row's vector index is a 64-bit i % nv, which per 8 elements costs far
 * less than the 32 bytes it moves (per element, it had bounded the flat kernel). Same sum as above. */
__global__ void bias_add_bf16x8(const uint4 *bias, uint4 *y, int nv, int64_t n_vec) {
    GRID_STRIDE(i, n_vec) {
        float v[8], b[8];
        bf16x8_unpack(y[i], v);
        bf16x8_unpack(bias[i % nv], b);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = __fadd_rn(v[k], b[k]);
        y[i] = bf16x8_pack(v);
    }
}

__global__ void bias_bwd_partial(const void *dy, int bf, double *partial, int n, int dim, int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= dim) return;
    const int r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    double acc = 0;
    for (int r = r0; r < r1; r++) acc += ld(dy, bf, (int64_t)r * dim + c);
    partial[(int64_t)blockIdx.y * dim + c] = acc;
}

/* The same for bf16 dy in vectors of 8 (nv a row): a thread sums 8 columns, each over the rows in the
 * same order, so the partials are the element kernel's sums. */
__global__ void bias_bwd_partial_bf16x8(const uint4 *dy, double *partial, int n, int nv, int rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= nv) return;
    const int r0 = blockIdx.y * rows, r1 = min(n, r0 + rows);
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int r = r0; r < r1; r++) {
        float g[8];
        bf16x8_unpack(dy[(int64_t)r * nv + c], g);
#pragma unroll
        for (int k = 0; k < 8; k++) acc[k] += g[k];
    }
    double *p = partial + ((int64_t)blockIdx.y * nv + c) * 8;
#pragma unroll
    for (int k = 0; k < 8; k++) p[k] = acc[k];
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
    const int xbf = BF(a->x_dtype), ybf = BF(a->y_dtype), obf = BF(a->out_dtype);
    int64_t done = 0; /* elements the vector kernel covers */
    if (xbf && ybf && obf && serl_aligned16({a->x, a->y, a->out}) && a->n >= 8) {
        const int64_t nv = a->n / 8;
        add_bf16x8<<<serl_blocks(nv, 256), 256, 0, ctx->stream>>>((const uint4 *)a->x, (const uint4 *)a->y, (uint4 *)a->out,
                                                                  a->alpha, nv);
        LAUNCH_CHECK("add");
        done = nv * 8;
    }
    if (done < a->n) {
        add_kernel<<<serl_blocks(a->n - done, 256), 256, 0, ctx->stream>>>(
            (const char *)a->x + done * serl_dtype_size(a->x_dtype), xbf, (const char *)a->y + done * serl_dtype_size(a->y_dtype),
            ybf, (char *)a->out + done * serl_dtype_size(a->out_dtype), obf, a->alpha, a->n - done);
        LAUNCH_CHECK("add");
    }
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
    const int gbf = BF(a->gate_dtype), ubf = BF(a->up_dtype), obf = BF(a->out_dtype);
    int64_t done = 0; /* elements the vector kernel covers */
    if (gbf && ubf && obf && serl_aligned16({a->gate, a->up, a->out}) && a->n >= 8) {
        const int64_t nv = a->n / 8;
        swiglu_fwd_bf16x8<<<serl_blocks(nv, 256), 256, 0, ctx->stream>>>((const uint4 *)a->gate, (const uint4 *)a->up,
                                                                         (uint4 *)a->out, nv);
        LAUNCH_CHECK("swiglu_fwd");
        done = nv * 8;
    }
    if (done < a->n) {
        swiglu_fwd_kernel<<<serl_blocks(a->n - done, 256), 256, 0, ctx->stream>>>(
            (const char *)a->gate + done * serl_dtype_size(a->gate_dtype), gbf,
            (const char *)a->up + done * serl_dtype_size(a->up_dtype), ubf,
            (char *)a->out + done * serl_dtype_size(a->out_dtype), obf, a->n - done);
        LAUNCH_CHECK("swiglu_fwd");
    }
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_swiglu_bwd(void *ctxp, const serl_swiglu_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_bwd_args);
    SERL_CHECK(serl_check_swiglu_bwd(ctx, a));
    const int gbf = BF(a->gate_dtype), ubf = BF(a->up_dtype), dbf = BF(a->dout_dtype), dgbf = BF(a->dgate_dtype),
              dubf = BF(a->dup_dtype);
    int64_t done = 0;
    if (gbf && ubf && dbf && dgbf && dubf && serl_aligned16({a->gate, a->up, a->dout, a->dgate, a->dup}) && a->n >= 8) {
        const int64_t nv = a->n / 8;
        swiglu_bwd_bf16x8<<<serl_blocks(nv, 256), 256, 0, ctx->stream>>>((const uint4 *)a->gate, (const uint4 *)a->up,
                                                                         (const uint4 *)a->dout, (uint4 *)a->dgate,
                                                                         (uint4 *)a->dup, nv);
        LAUNCH_CHECK("swiglu_bwd");
        done = nv * 8;
    }
    if (done < a->n) {
        swiglu_bwd_kernel<<<serl_blocks(a->n - done, 256), 256, 0, ctx->stream>>>(
            (const char *)a->gate + done * serl_dtype_size(a->gate_dtype), gbf,
            (const char *)a->up + done * serl_dtype_size(a->up_dtype), ubf,
            (const char *)a->dout + done * serl_dtype_size(a->dout_dtype), dbf,
            (char *)a->dgate + done * serl_dtype_size(a->dgate_dtype), dgbf,
            (char *)a->dup + done * serl_dtype_size(a->dup_dtype), dubf, a->n - done);
        LAUNCH_CHECK("swiglu_bwd");
    }
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_bias_add(void *ctxp, const serl_bias_add_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_add_args);
    SERL_CHECK(serl_check_bias_add(ctx, a));
    if (BF(a->bias_dtype) && BF(a->y_dtype) && a->dim % 8 == 0 && serl_aligned16({a->bias, a->y})) {
        const int64_t nv = (int64_t)a->n * (a->dim / 8);
        bias_add_bf16x8<<<serl_blocks(nv, 256), 256, 0, ctx->stream>>>((const uint4 *)a->bias, (uint4 *)a->y, a->dim / 8, nv);
        LAUNCH_CHECK("bias_add");
        return SERL_OK;
    }
    const int threads = a->dim >= 256 ? 256 : (a->dim + 31) / 32 * 32;
    const unsigned blocks = a->n < 65535 * 32 ? (unsigned)a->n : 65535u * 32;
    bias_add_kernel<<<blocks, threads, 0, ctx->stream>>>(a->bias, BF(a->bias_dtype), a->y, BF(a->y_dtype), a->dim, a->n);
    LAUNCH_CHECK("bias_add");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_bias_bwd(void *ctxp, const serl_bias_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_bwd_args);
    SERL_CHECK(serl_check_bias_bwd(ctx, a));
    const int rows = serl_chunk_rows(a->n, BIAS_ROWS), chunks = (a->n + rows - 1) / rows;
    double *partial = (double *)serl_scratch(ctx, sizeof(double) * (size_t)chunks * a->dim);
    if (!partial) return ctx->scratch_status;
    if (BF(a->dy_dtype) && a->dim % 8 == 0 && serl_aligned16({a->dy}))
        bias_bwd_partial_bf16x8<<<dim3((a->dim / 8 + 127) / 128, chunks), 128, 0, ctx->stream>>>((const uint4 *)a->dy, partial, a->n,
                                                                                               a->dim / 8, rows);
    else
        bias_bwd_partial<<<dim3((a->dim + 127) / 128, chunks), 128, 0, ctx->stream>>>(a->dy, BF(a->dy_dtype), partial, a->n, a->dim,
                                                                                       rows);
    LAUNCH_CHECK("bias_bwd");
    bias_bwd_sum<<<(a->dim + 127) / 128, 128, 0, ctx->stream>>>(partial, chunks, a->dbias, a->dim);
    LAUNCH_CHECK("bias_bwd");
    return SERL_OK;
}
