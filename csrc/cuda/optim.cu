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
 * sqrt(v)·(1/sqrt(bc2)) + eps fused, p = p·decay − step·m/den. */
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, uint16_t *pb, int64_t n, float b1, float b2,
                             float eps, float decay, float step_size, float ib, float gs0, const float *grad_norm,
                             float max_norm) {
    float gs = gs0;
    if (grad_norm && max_norm > 0) {
        double nr = grad_norm[0];
        if (isfinite(nr) && nr > max_norm) gs = (float)((double)gs * (max_norm / (nr + 1e-6)));
    }
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = __fmul_rn(g[i], gs);
        float mi = fmaf(b1, m[i], __fmul_rn(c1, gi));
        float vi = fmaf(b2, v[i], __fmul_rn(c2, __fmul_rn(gi, gi)));
        float den = fmaf(__fsqrt_rn(vi), ib, eps);
        float pi = __fmul_rn(p[i], decay);
        pi = __fsub_rn(pi, __fdiv_rn(__fmul_rn(step_size, mi), den));
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (pb) pb[i] = f32_to_bf16(pi);
    }
}

extern "C" SERL_API int32_t serl_adamw(void *ctxp, const serl_adamw_args *a) {
    SERL_ENTER(ctxp, a, serl_adamw_args);
    SERL_CHECK(serl_check_adamw(ctx, a));
    double bc1 = 1.0 - pow(a->beta1, a->step), bc2 = 1.0 - pow(a->beta2, a->step);
    adamw_kernel<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(
        a->p, a->g, a->m, a->v, a->p_bf16, a->n, a->beta1, a->beta2, a->eps, (float)(1.0 - (double)a->lr * a->weight_decay),
        (float)(a->lr / bc1), (float)(1.0 / sqrt(bc2)), a->grad_scale, a->grad_norm, a->max_norm);
    LAUNCH_CHECK("adamw");
    return SERL_OK;
}
