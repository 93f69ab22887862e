/* The optimizer: global gradient norm with clipping, and AdamW with the clip read from device memory
 * (no host round trip between the two). The norm is a two-stage deterministic reduction in double:
 * fixed chunks, then the chunk sums in order by one block. */
#include "common.cuh"

#define CHUNK 65536
#define THREADS 512

__global__ void sumsq_partial(const float *g, int64_t n, double *part) {
    __shared__ double sh[32];
    const int64_t lo = (int64_t)blockIdx.x * CHUNK, hi = min(n, lo + CHUNK);
    double s = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) s += (double)g[i] * g[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* out[0] = ‖g‖ (float), norm[0] = the same in double; one block, the partials in a fixed tree */
__global__ void norm_finish(const double *part, int64_t nc, float *out, double *norm) {
    __shared__ double sh[32];
    double s = 0;
    for (int64_t c = threadIdx.x; c < nc; c += blockDim.x) s += part[c];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        double r = sqrt(s);
        out[0] = (float)r;
        norm[0] = r;
    }
}

/* A non-finite norm leaves g untouched: the caller sees it in out[0] and skips the step. */
__global__ void clip_kernel(float *g, int64_t n, const double *norm, double max_norm) {
    const double nr = norm[0];
    if (!(isfinite(nr) && nr > max_norm)) return;
    const float s = (float)(max_norm / (nr + 1e-6));
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = __fmul_rn(g[i], s);
}

extern "C" SERL_API int32_t serl_grad_norm(void *ctxp, const serl_grad_norm_args *a) {
    SERL_ENTER(ctxp, a, serl_grad_norm_args);
    SERL_CHECK(serl_check_grad_norm(ctx, a));
    const int64_t nc = (a->n + CHUNK - 1) / CHUNK;
    double *part = (double *)serl_scratch(ctx, sizeof(double) * (size_t)(nc + 2));
    if (!part) return ctx->scratch_status;
    double *norm = part + nc;
    if (nc > 0) {
        sumsq_partial<<<(unsigned)nc, THREADS, 0, ctx->stream>>>(a->g, a->n, part);
        LAUNCH_CHECK("grad_norm");
    }
    norm_finish<<<1, THREADS, 0, ctx->stream>>>(part, nc, a->out, norm);
    LAUNCH_CHECK("grad_norm");
    if (a->max_norm > 0 && a->n > 0) {
        clip_kernel<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->g, a->n, norm, (double)a->max_norm);
        LAUNCH_CHECK("grad_norm");
    }
    return SERL_OK;
}

/* The CPU library's vector form: m = β1·m + (1−β1)·g' and v likewise as fused multiply-adds, den =
 * sqrt(v)·(1/sqrt(bc2)) + eps fused, p = p·decay − step·m/den with p·decay fused into the subtraction
 * (the CPU's fmsub), so both devices give the same bits. */
struct adamw_consts {
    float b1, b2, c1, c2, eps, decay, step_size, ib, gs;
};

__device__ __forceinline__ void adamw_elem(const adamw_consts &k, float g, float *p, float *m, float *v) {
    const float gi = __fmul_rn(g, k.gs);
    const float mi = fmaf(k.b1, *m, __fmul_rn(k.c1, gi));
    const float vi = fmaf(k.b2, *v, __fmul_rn(k.c2, __fmul_rn(gi, gi)));
    const float den = fmaf(__fsqrt_rn(vi), k.ib, k.eps);
    *p = fmaf(*p, k.decay, -__fdiv_rn(__fmul_rn(k.step_size, mi), den));
    *m = mi;
    *v = vi;
}

/* The constants, with grad_scale times the clip factor serl_grad_norm would apply (read from device
 * memory: no host round trip between the two). */
__device__ __forceinline__ adamw_consts adamw_setup(float b1, float b2, float eps, float decay, float step_size, float ib,
                                                    float gs, const float *grad_norm, float max_norm) {
    if (grad_norm && max_norm > 0) {
        double nr = grad_norm[0];
        if (isfinite(nr) && nr > max_norm) gs = (float)((double)gs * (max_norm / (nr + 1e-6)));
    }
    return {b1, b2, 1.0f - b1, 1.0f - b2, eps, decay, step_size, ib, gs};
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, uint16_t *pb, int64_t n, float b1, float b2,
                             float eps, float decay, float step_size, float ib, float gs0, const float *grad_norm,
                             float max_norm) {
    const adamw_consts k = adamw_setup(b1, b2, eps, decay, step_size, ib, gs0, grad_norm, max_norm);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_elem(k, g[i], &pi, &mi, &vi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (pb) pb[i] = f32_to_bf16(pi);
    }
}

/* The same over nv groups of 4 in 16-byte vectors (8-byte ones for the bf16 copy): 30 bytes move per
 * parameter, ~15 GB per step of a 0.5B model, and 4-byte accesses leave much of the bandwidth unused. */
__global__ void adamw_kernel4(float4 *p, const float4 *g, float4 *m, float4 *v, uint2 *pb, int64_t nv, float b1,
                              float b2, float eps, float decay, float step_size, float ib, float gs0,
                              const float *grad_norm, float max_norm) {
    const adamw_consts k = adamw_setup(b1, b2, eps, decay, step_size, ib, gs0, grad_norm, max_norm);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nv; i += (int64_t)gridDim.x * blockDim.x) {
        float4 pi = p[i], mi = m[i], vi = v[i];
        const float4 gi = g[i];
        adamw_elem(k, gi.x, &pi.x, &mi.x, &vi.x);
        adamw_elem(k, gi.y, &pi.y, &mi.y, &vi.y);
        adamw_elem(k, gi.z, &pi.z, &mi.z, &vi.z);
        adamw_elem(k, gi.w, &pi.w, &mi.w, &vi.w);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (pb)
            pb[i] = make_uint2(f32_to_bf16(pi.x) | (uint32_t)f32_to_bf16(pi.y) << 16,
                               f32_to_bf16(pi.z) | (uint32_t)f32_to_bf16(pi.w) << 16);
    }
}

extern "C" SERL_API int32_t serl_adamw(void *ctxp, const serl_adamw_args *a) {
    SERL_ENTER(ctxp, a, serl_adamw_args);
    SERL_CHECK(serl_check_adamw(ctx, a));
    double bc1 = 1.0 - pow(a->beta1, a->step), bc2 = 1.0 - pow(a->beta2, a->step);
    const float decay = (float)(1.0 - (double)a->lr * a->weight_decay), step_size = (float)(a->lr / bc1),
                ib = (float)(1.0 / sqrt(bc2));
    int64_t done = 0; /* elements the vector kernel covers */
    const bool vec = !(((uintptr_t)a->p | (uintptr_t)a->g | (uintptr_t)a->m | (uintptr_t)a->v) & 15) &&
                     !((uintptr_t)a->p_bf16 & 7);
    if (vec && a->n >= 4) {
        const int64_t nv = a->n / 4;
        adamw_kernel4<<<serl_blocks(nv, 256), 256, 0, ctx->stream>>>(
            (float4 *)a->p, (const float4 *)a->g, (float4 *)a->m, (float4 *)a->v, (uint2 *)a->p_bf16, nv, a->beta1,
            a->beta2, a->eps, decay, step_size, ib, a->grad_scale, a->grad_norm, a->max_norm);
        LAUNCH_CHECK("adamw");
        done = nv * 4;
    }
    if (done < a->n) {
        adamw_kernel<<<serl_blocks(a->n - done, 256), 256, 0, ctx->stream>>>(
            a->p + done, a->g + done, a->m + done, a->v + done, a->p_bf16 ? a->p_bf16 + done : NULL, a->n - done,
            a->beta1, a->beta2, a->eps, decay, step_size, ib, a->grad_scale, a->grad_norm, a->max_norm);
        LAUNCH_CHECK("adamw");
    }
    return SERL_OK;
}
