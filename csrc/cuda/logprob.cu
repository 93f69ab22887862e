/* Log-probabilities of target tokens under softmax(logits·inv_temp), their entropy, and the gradient.
 * One block per row: the maximum, then Σ e^(z−m) (and Σ e^(z−m)·(z−m)) in double with the CPU library's
 * exponential, reduced in a fixed tree. Targets are checked on the device: a row whose target is out of
 * range gets NaN (forward) or a zero gradient (backward), and the error is reported at the next
 * synchronisation with the CPU library's message, so neither op waits for the host. */
#include "common.cuh"
#include "expf.cuh"

#define THREADS 512

__global__ void logprob_fwd_kernel(const void *logits, int bf, int64_t ldr, int vocab, float it, const int32_t *targets,
                                   float *logp, float *entropy, float *lse, int ign, serl_dev_err *err) {
    __shared__ double shd[32];
    __shared__ float shf[32];
    const int64_t off = blockIdx.x * ldr;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, ld(logits, bf, off + j));
    const float m = __fmul_rn(block_max(mx, shf), it);
    double S = 0, T = 0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        float d = __fsub_rn(__fmul_rn(ld(logits, bf, off + j), it), m);
        float e = serl_expf(d);
        S += e;
        if (entropy && e > 0) T += (double)__fmul_rn(e, d);
    }
    S = block_sum(S, shd);
    if (entropy) T = block_sum(T, shd);
    if (threadIdx.x != 0) return;
    const double logS = log(S);
    const int32_t tg = targets[blockIdx.x];
    if (tg >= vocab || (tg < 0 && !ign)) {
        serl_report(err, SERL_DERR_LOGPROB_FWD_TARGET, blockIdx.x, ign, tg, vocab);
        if (logp) logp[blockIdx.x] = NAN;
        if (entropy) entropy[blockIdx.x] = (float)(logS - T / S);
        if (lse) lse[blockIdx.x] = (float)((double)m + logS);
        return;
    }
    if (logp) {
        float zt = tg < 0 ? 0.0f : __fmul_rn(ld(logits, bf, off + tg), it);
        logp[blockIdx.x] = tg < 0 ? 0.0f : (float)((double)__fsub_rn(zt, m) - logS);
    }
    if (entropy) entropy[blockIdx.x] = (float)(logS - T / S);
    if (lse) lse[blockIdx.x] = (float)((double)m + logS);
}

extern "C" SERL_API int32_t serl_logprob_fwd(void *ctxp, const serl_logprob_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_logprob_fwd_args);
    SERL_CHECK(serl_check_logprob_fwd(ctx, a));
    logprob_fwd_kernel<<<a->n, THREADS, 0, ctx->stream>>>(a->logits, a->logits_dtype == SERL_DTYPE_BF16, a->ld, a->vocab,
                                                          a->inv_temp, a->targets, a->logp, a->entropy, a->lse,
                                                          a->ignore_negative, ctx->derr);
    LAUNCH_CHECK("logprob_fwd");
    return SERL_OK;
}

/* dx = −c·e^(z − lse), and + c at the target (c = coef·inv_temp); each element is read and written by
 * one thread, so dlogits may be the logits buffer. */
__global__ void logprob_bwd_kernel(const void *logits, int xbf, void *dlogits, int dbf, int64_t ldr, int vocab, float it,
                                   const int32_t *targets, const float *lse, const float *coef, int ign,
                                   serl_dev_err *err) {
    const int64_t off = blockIdx.x * ldr;
    const int32_t tg = targets[blockIdx.x];
    const bool bad = tg >= vocab || (tg < 0 && !ign);
    if (bad && threadIdx.x == 0) serl_report(err, SERL_DERR_LOGPROB_BWD_TARGET, blockIdx.x, ign, tg, vocab);
    if (tg < 0 || bad) {
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) st(dlogits, dbf, off + j, 0.0f);
        return;
    }
    const float c = __fmul_rn(coef[blockIdx.x], it), l = lse[blockIdx.x];
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        float p = serl_expf(__fsub_rn(__fmul_rn(ld(logits, xbf, off + j), it), l));
        float v = __fmul_rn(-c, p);
        if (j == tg) v = __fadd_rn(v, c);
        st(dlogits, dbf, off + j, v);
    }
}

extern "C" SERL_API int32_t serl_logprob_bwd(void *ctxp, const serl_logprob_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_logprob_bwd_args);
    SERL_CHECK(serl_check_logprob_bwd(ctx, a));
    logprob_bwd_kernel<<<a->n, THREADS, 0, ctx->stream>>>(a->logits, a->logits_dtype == SERL_DTYPE_BF16, a->dlogits,
                                                          a->dlogits_dtype == SERL_DTYPE_BF16, a->ld, a->vocab, a->inv_temp,
                                                          a->targets, a->lse, a->coef, a->ignore_negative, ctx->derr);
    LAUNCH_CHECK("logprob_bwd");
    return SERL_OK;
}
