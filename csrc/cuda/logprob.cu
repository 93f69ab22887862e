/* Log-probabilities of target tokens under softmax(logits·inv_temp), their entropy, and the gradient.
 * One block per row: the maximum, then Σ e^(z−m) (and Σ e^(z−m)·(z−m)) in double with the CPU library's
 * exponential, reduced in a fixed tree. Targets are checked on the device: a row whose target is out of
 * range gets NaN (forward) or a zero gradient (backward), and the error is reported at the next
 * synchronisation with the CPU library's message, so neither op waits for the host.
 *
 * The rows are long (151,936 columns for Qwen2.5) and the ops are bound by memory and by the exponential:
 * each row is read in 16-byte vectors (8 bf16 or 4 f32) between a scalar head and tail that align it,
 * and a vector's terms are summed in float before they join the double sums (every term has one sign,
 * so a group's relative error stays under 8 float ulps), which saves the float→double conversions that
 * would otherwise bound the forward. */
#include "common.cuh"
#include "expf.cuh"

#define THREADS 512

/* A row of n elements of es bytes at p: [0, head) and [tail, n) one by one, [head, tail) as nvec 16-byte
 * vectors. A row not aligned to its element size (never the case for a tensor) is all scalar. */
struct row_split {
    int head, nvec, tail;
};
__device__ __forceinline__ row_split split_row(const void *p, int es, int n) {
    const uintptr_t a = (uintptr_t)p;
    if (a & (uintptr_t)(es - 1)) return {n, 0, n};
    int head = (int)(((16 - (a & 15)) & 15) / es);
    if (head > n) head = n;
    const int nvec = (n - head) / (16 / es);
    return {head, nvec, head + nvec * (16 / es)};
}

template <bool BF> __device__ __forceinline__ float ld1(const void *row, int64_t j) {
    return BF ? bf16_to_f32(((const uint16_t *)row)[j]) : ((const float *)row)[j];
}
template <bool BF> __device__ __forceinline__ void st1(void *row, int64_t j, float v) {
    if (BF)
        ((uint16_t *)row)[j] = f32_to_bf16(v);
    else
        ((float *)row)[j] = v;
}

/* The 16 bytes at p as 16/es floats, and their store. */
template <bool BF> __device__ __forceinline__ void ldv(const uint4 *p, float *v) {
    const uint4 q = *p;
    if constexpr (BF)
        bf16x8_unpack(q, v);
    else
        v[0] = __uint_as_float(q.x), v[1] = __uint_as_float(q.y), v[2] = __uint_as_float(q.z), v[3] = __uint_as_float(q.w);
}
template <bool BF> __device__ __forceinline__ void stv(uint4 *p, const float *v) {
    if constexpr (BF)
        *p = bf16x8_pack(v);
    else
        *p = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3]));
}

template <bool BF>
__global__ void __launch_bounds__(THREADS) logprob_fwd_kernel(const void *logits, int64_t ldr, int vocab, float it,
                                                              const int32_t *targets, float *logp, float *entropy,
                                                              float *lse, int ign, serl_dev_err *err) {
    constexpr int ES = BF ? 2 : 4, PER = 16 / ES;
    __shared__ double shd[32];
    __shared__ float shf[32];
    const void *row = (const char *)logits + (size_t)blockIdx.x * (size_t)ldr * ES;
    const row_split sp = split_row(row, ES, vocab);
    const uint4 *vrow = (const uint4 *)((const char *)row + (size_t)sp.head * ES);
    const bool want_ent = entropy != NULL;

    float mx = -INFINITY;
    for (int j = threadIdx.x; j < sp.head; j += blockDim.x) mx = fmaxf(mx, ld1<BF>(row, j));
    for (int j = sp.tail + threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, ld1<BF>(row, j));
#pragma unroll 4
    for (int q = threadIdx.x; q < sp.nvec; q += blockDim.x) {
        float v[PER];
        ldv<BF>(vrow + q, v);
#pragma unroll
        for (int k = 0; k < PER; k++) mx = fmaxf(mx, v[k]);
    }
    const float m = __fmul_rn(block_max(mx, shf), it);

    /* d = z − m with z = x·it rounded first (as the CPU: the maximum's d is exactly 0); terms with
     * e^d = 0 add nothing to T (−inf logits give no NaN) */
    double S = 0, T = 0;
    for (int pass = 0; pass < 2; pass++) { /* the scalar head, then the tail */
        const int j0 = pass ? sp.tail : 0, j1 = pass ? vocab : sp.head;
        for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
            const float d = __fsub_rn(__fmul_rn(ld1<BF>(row, j), it), m), e = serl_expf(d);
            S += e;
            if (want_ent && e > 0) T += (double)__fmul_rn(e, d);
        }
    }
#pragma unroll 2
    for (int q = threadIdx.x; q < sp.nvec; q += blockDim.x) {
        float v[PER];
        ldv<BF>(vrow + q, v);
        float s = 0, t = 0;
#pragma unroll
        for (int k = 0; k < PER; k++) {
            const float d = __fsub_rn(__fmul_rn(v[k], it), m), e = serl_expf(d);
            s = __fadd_rn(s, e);
            if (e > 0) t = __fadd_rn(t, __fmul_rn(e, d));
        }
        S += s;
        if (want_ent) T += t;
    }
    S = block_sum(S, shd);
    if (want_ent) T = block_sum(T, shd);
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
        float zt = tg < 0 ? 0.0f : __fmul_rn(ld1<BF>(row, tg), it);
        logp[blockIdx.x] = tg < 0 ? 0.0f : (float)((double)__fsub_rn(zt, m) - logS);
    }
    if (entropy) entropy[blockIdx.x] = (float)(logS - T / S);
    if (lse) lse[blockIdx.x] = (float)((double)m + logS);
}

extern "C" SERL_API int32_t serl_logprob_fwd(void *ctxp, const serl_logprob_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_logprob_fwd_args);
    SERL_CHECK(serl_check_logprob_fwd(ctx, a));
    if (a->logits_dtype == SERL_DTYPE_BF16)
        logprob_fwd_kernel<true><<<a->n, THREADS, 0, ctx->stream>>>(a->logits, a->ld, a->vocab, a->inv_temp, a->targets,
                                                                   a->logp, a->entropy, a->lse, a->ignore_negative,
                                                                   ctx->derr);
    else
        logprob_fwd_kernel<false><<<a->n, THREADS, 0, ctx->stream>>>(a->logits, a->ld, a->vocab, a->inv_temp,
                                                                    a->targets, a->logp, a->entropy, a->lse,
                                                                    a->ignore_negative, ctx->derr);
    LAUNCH_CHECK("logprob_fwd");
    return SERL_OK;
}

/* dx = −c·e^(z − lse), and + c at the target (c = coef·inv_temp); each element is read and written by
 * one thread, so dlogits may be the logits buffer. Rows of one dtype whose logits and dlogits are
 * aligned alike go in vectors; other rows (mixed dtypes, different offsets) element by element. */
template <bool XBF, bool DBF>
__global__ void __launch_bounds__(THREADS) logprob_bwd_kernel(const void *logits, void *dlogits, int64_t ldr, int vocab,
                                                              float it, const int32_t *targets, const float *lse,
                                                              const float *coef, int ign, serl_dev_err *err) {
    constexpr int XES = XBF ? 2 : 4, DES = DBF ? 2 : 4, PER = 16 / DES;
    const void *xrow = (const char *)logits + (size_t)blockIdx.x * (size_t)ldr * XES;
    void *drow = (char *)dlogits + (size_t)blockIdx.x * (size_t)ldr * DES;
    const int32_t tg = targets[blockIdx.x];
    const bool bad = tg >= vocab || (tg < 0 && !ign);
    if (bad && threadIdx.x == 0) serl_report(err, SERL_DERR_LOGPROB_BWD_TARGET, blockIdx.x, ign, tg, vocab);
    const row_split sp = split_row(drow, DES, vocab);
    uint4 *dv = (uint4 *)((char *)drow + (size_t)sp.head * DES);
    if (tg < 0 || bad) { /* ignored (or refused) rows: a zero gradient */
        for (int j = threadIdx.x; j < sp.head; j += blockDim.x) st1<DBF>(drow, j, 0.0f);
        for (int j = sp.tail + threadIdx.x; j < vocab; j += blockDim.x) st1<DBF>(drow, j, 0.0f);
        for (int q = threadIdx.x; q < sp.nvec; q += blockDim.x) *(dv + q) = make_uint4(0, 0, 0, 0);
        return;
    }
    const float c = __fmul_rn(coef[blockIdx.x], it), l = lse[blockIdx.x];
    /* the element j of the gradient from logit x: −c·p, then + c at the target, as the CPU rounds it */
    auto grad = [c, it, l, tg](float x, int j) {
        const float v = __fmul_rn(-c, serl_expf(__fsub_rn(__fmul_rn(x, it), l)));
        return j == tg ? __fadd_rn(v, c) : v;
    };
    bool vec = false; /* one dtype, and the two rows aligned alike */
    if constexpr (XBF == DBF) vec = (((uintptr_t)xrow ^ (uintptr_t)drow) & 15) == 0;
    if (!vec) {
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) st1<DBF>(drow, j, grad(ld1<XBF>(xrow, j), j));
        return;
    }
    if constexpr (XBF == DBF) {
        for (int j = threadIdx.x; j < sp.head; j += blockDim.x) st1<DBF>(drow, j, grad(ld1<XBF>(xrow, j), j));
        for (int j = sp.tail + threadIdx.x; j < vocab; j += blockDim.x) st1<DBF>(drow, j, grad(ld1<XBF>(xrow, j), j));
        const uint4 *xv = (const uint4 *)((const char *)xrow + (size_t)sp.head * XES);
#pragma unroll 2
        for (int q = threadIdx.x; q < sp.nvec; q += blockDim.x) {
            float v[PER];
            ldv<XBF>(xv + q, v);
            const int j0 = sp.head + q * PER;
#pragma unroll
            for (int k = 0; k < PER; k++) v[k] = grad(v[k], j0 + k);
            stv<DBF>(dv + q, v);
        }
    }
}

extern "C" SERL_API int32_t serl_logprob_bwd(void *ctxp, const serl_logprob_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_logprob_bwd_args);
    SERL_CHECK(serl_check_logprob_bwd(ctx, a));
    const bool xbf = a->logits_dtype == SERL_DTYPE_BF16, dbf = a->dlogits_dtype == SERL_DTYPE_BF16;
    auto kernel = xbf ? (dbf ? logprob_bwd_kernel<true, true> : logprob_bwd_kernel<true, false>)
                      : (dbf ? logprob_bwd_kernel<false, true> : logprob_bwd_kernel<false, false>);
    kernel<<<a->n, THREADS, 0, ctx->stream>>>(a->logits, a->dlogits, a->ld, a->vocab, a->inv_temp, a->targets, a->lse,
                                              a->coef, a->ignore_negative, ctx->derr);
    LAUNCH_CHECK("logprob_bwd");
    return SERL_OK;
}
