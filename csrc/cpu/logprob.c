/* Log-probabilities of target tokens under softmax(logits·inv_temp), their entropy and gradient.
 * Per row: one vectorised max pass, then one pass of e^(z−m) summed in double (the row is in L2 by then),
 * so the result is stable for logits of any magnitude. Rows are split over the pool in chunks. */
#include <math.h>
#include <string.h>

#include "expf_avx2.h"
#include "internal.h"

#define ROW_WORK 65536 /* elements per task: enough to pay for a pool task pull */

/* z = x·inv_temp must be rounded to float before m is subtracted, as for the maximum itself, so that the
 * maximum's d is exactly 0 (a fused x·it − m would leave its rounding error). The empty asm stops the
 * compiler contracting the two into an FMA. */
#define NOFUSE(v) __asm__("" : "+x"(v))

static inline __m256i tail_mask(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* max_j x[j] (NaN-free inputs; a NaN may or may not win). */
static float row_max(const float *x, int v) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int j = 0;
    for (; j + 32 <= v; j += 32) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + j + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + j + 24));
    }
    for (; j + 8 <= v; j += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
    if (j < v) {
        __m256i k = tail_mask(v - j);
        __m256 t = _mm256_maskload_ps(x + j, k);
        m1 = _mm256_max_ps(m1, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), t, _mm256_castsi256_ps(k)));
    }
    return serl_hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

/* S = Σ e^(x·it − m) and, when want_ent, T = Σ e^d·d with d = x·it − m (terms with e^d = 0 count 0,
 * so −inf logits give no NaN). Both in double. */
static void row_sums(const float *x, int v, float it, float m, int want_ent, double *S, double *T) {
    const __m256 vit = _mm256_set1_ps(it), vm = _mm256_set1_ps(m), zero = _mm256_setzero_ps();
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, t0 = s0, t1 = s0;
    int j = 0;
    for (; j + 16 <= v; j += 16) {
        __m256 z0 = _mm256_mul_ps(_mm256_loadu_ps(x + j), vit), z1 = _mm256_mul_ps(_mm256_loadu_ps(x + j + 8), vit);
        NOFUSE(z0);
        NOFUSE(z1);
        __m256 d0 = _mm256_sub_ps(z0, vm), d1 = _mm256_sub_ps(z1, vm);
        __m256 e0 = serl_exp8(d0), e1 = serl_exp8(d1);
        s0 = serl_acc8d(s0, e0);
        s1 = serl_acc8d(s1, e1);
        if (want_ent) {
            t0 = serl_acc8d(t0, _mm256_and_ps(_mm256_mul_ps(e0, d0), _mm256_cmp_ps(e0, zero, _CMP_GT_OQ)));
            t1 = serl_acc8d(t1, _mm256_and_ps(_mm256_mul_ps(e1, d1), _mm256_cmp_ps(e1, zero, _CMP_GT_OQ)));
        }
    }
    for (; j < v; j += 8) {
        __m256i k = tail_mask(v - j);
        __m256 x0 = _mm256_maskload_ps(x + j, k);
        __m256 z0 = _mm256_mul_ps(x0, vit);
        NOFUSE(z0);
        __m256 d0 = _mm256_sub_ps(z0, vm);
        __m256 live = _mm256_castsi256_ps(k);
        __m256 e0 = _mm256_and_ps(serl_exp8(d0), live);
        s0 = serl_acc8d(s0, e0);
        if (want_ent) t0 = serl_acc8d(t0, _mm256_and_ps(_mm256_mul_ps(e0, d0), _mm256_cmp_ps(e0, zero, _CMP_GT_OQ)));
    }
    *S = serl_hsum4d(_mm256_add_pd(s0, s1));
    *T = want_ent ? serl_hsum4d(_mm256_add_pd(t0, t1)) : 0;
}

typedef struct {
    const serl_logprob_fwd_args *a;
    int64_t rows_per_task;
    float *row[SERL_MAX_THREADS]; /* per worker: a bf16 row widened to float32 */
} fwd_job;

static void fwd_task(void *arg, int64_t task, int w) {
    const fwd_job *j = arg;
    const serl_logprob_fwd_args *a = j->a;
    int64_t lo = task * j->rows_per_task, hi = lo + j->rows_per_task;
    if (hi > a->n) hi = a->n;
    for (int64_t t = lo; t < hi; t++) {
        const float *x;
        if (a->logits_dtype == SERL_DTYPE_BF16) {
            serl_bf16_to_f32_n(j->row[w], (const uint16_t *)a->logits + t * (int64_t)a->ld, a->vocab);
            x = j->row[w];
        } else {
            x = (const float *)a->logits + t * (int64_t)a->ld;
        }
        float m = row_max(x, a->vocab) * a->inv_temp;
        double S, T;
        row_sums(x, a->vocab, a->inv_temp, m, a->entropy != NULL, &S, &T);
        double logS = log(S), lse = (double)m + logS;
        int32_t tg = a->targets[t];
        if (a->logp) {
            float zt = tg < 0 ? 0.0f : x[tg] * a->inv_temp;
            NOFUSE(zt);
            a->logp[t] = tg < 0 ? 0.0f : (float)((double)(zt - m) - logS);
        }
        if (a->entropy) a->entropy[t] = (float)(logS - T / S);
        if (a->lse) a->lse[t] = (float)lse;
    }
}

static int64_t rows_per_task(serl_ctx *ctx, int64_t n, int64_t vocab) {
    int64_t r = ROW_WORK / (vocab > 0 ? vocab : 1);
    if (r < 1) r = 1;
    /* at least ~4 tasks per worker when there are rows enough, for load balance */
    int64_t cap = (n + 4 * ctx->threads - 1) / (4 * ctx->threads);
    if (cap < 1) cap = 1;
    return r < cap ? r : cap;
}

SERL_API int32_t serl_logprob_fwd(void *ctxp, const serl_logprob_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_logprob_fwd_args);
    SERL_CHECK(serl_check_logprob_fwd(ctx, a));
    for (int32_t t = 0; t < a->n; t++) {
        int32_t tg = a->targets[t];
        SERL_REQUIRE((tg >= 0 && tg < a->vocab) || (tg < 0 && a->ignore_negative),
                     "logprob_fwd: targets[%d] = %d outside [0, %d)%s", t, tg, a->vocab,
                     a->ignore_negative ? "" : " (ignore_negative is off)");
    }
    fwd_job j = {a, rows_per_task(ctx, a->n, a->vocab), {0}};
    if (a->logits_dtype != SERL_DTYPE_F32)
        for (int w = 0; w < ctx->threads; w++)
            if (!(j.row[w] = serl_scratch(ctx, w, sizeof(float) * (size_t)a->vocab)))
                return serl_fail(ctx, SERL_E_NOMEM, "logprob_fwd: out of memory for a row buffer");
    serl_parallel(ctx, (a->n + j.rows_per_task - 1) / j.rows_per_task, fwd_task, &j);
    return SERL_OK;
}

typedef struct {
    const serl_logprob_bwd_args *a;
    int64_t rows_per_task;
    float *row[SERL_MAX_THREADS]; /* per worker: a bf16 row of logits or dlogits in float32 */
} bwd_job;

/* Each element is read before its own store, and the target's +c is added after the vector pass, so
 * dlogits may be the logits buffer itself. */
static void bwd_task(void *arg, int64_t task, int w) {
    const bwd_job *j = arg;
    const serl_logprob_bwd_args *a = j->a;
    int64_t lo = task * j->rows_per_task, hi = lo + j->rows_per_task;
    if (hi > a->n) hi = a->n;
    const int v = a->vocab;
    const int xbf = a->logits_dtype == SERL_DTYPE_BF16, dbf = a->dlogits_dtype == SERL_DTYPE_BF16;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t off = t * (int64_t)a->ld;
        int32_t tg = a->targets[t];
        if (tg < 0) {
            memset((char *)a->dlogits + off * (int64_t)serl_dtype_size(a->dlogits_dtype), 0,
                   serl_dtype_size(a->dlogits_dtype) * (size_t)v);
            continue;
        }
        /* bf16 rows go through one float32 buffer, which may serve as both x and dx (in place) */
        const float *x = xbf ? j->row[w] : (const float *)a->logits + off;
        float *dx = dbf ? j->row[w] : (float *)a->dlogits + off;
        if (xbf) serl_bf16_to_f32_n(j->row[w], (const uint16_t *)a->logits + off, v);
        float c = a->coef[t] * a->inv_temp;
        const __m256 vit = _mm256_set1_ps(a->inv_temp), vl = _mm256_set1_ps(a->lse[t]), vnc = _mm256_set1_ps(-c);
        int k = 0;
        for (; k + 8 <= v; k += 8) {
            __m256 z = _mm256_mul_ps(_mm256_loadu_ps(x + k), vit);
            NOFUSE(z);
            __m256 p = serl_exp8(_mm256_sub_ps(z, vl));
            _mm256_storeu_ps(dx + k, _mm256_mul_ps(vnc, p));
        }
        if (k < v) {
            __m256i m = tail_mask(v - k);
            __m256 z = _mm256_mul_ps(_mm256_maskload_ps(x + k, m), vit);
            NOFUSE(z);
            __m256 p = serl_exp8(_mm256_sub_ps(z, vl));
            _mm256_maskstore_ps(dx + k, m, _mm256_mul_ps(vnc, p));
        }
        dx[tg] += c;
        if (dbf) serl_f32_to_bf16_n((uint16_t *)a->dlogits + off, dx, v);
    }
}

SERL_API int32_t serl_logprob_bwd(void *ctxp, const serl_logprob_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_logprob_bwd_args);
    SERL_CHECK(serl_check_logprob_bwd(ctx, a));
    for (int32_t t = 0; t < a->n; t++) {
        int32_t tg = a->targets[t];
        SERL_REQUIRE((tg >= 0 && tg < a->vocab) || (tg < 0 && a->ignore_negative),
                     "logprob_bwd: targets[%d] = %d outside [0, %d)%s", t, tg, a->vocab,
                     a->ignore_negative ? "" : " (ignore_negative is off)");
    }
    bwd_job j = {a, rows_per_task(ctx, a->n, a->vocab), {0}};
    if (a->logits_dtype != SERL_DTYPE_F32 || a->dlogits_dtype != SERL_DTYPE_F32)
        for (int w = 0; w < ctx->threads; w++)
            if (!(j.row[w] = serl_scratch(ctx, w, sizeof(float) * (size_t)a->vocab)))
                return serl_fail(ctx, SERL_E_NOMEM, "logprob_bwd: out of memory for a row buffer");
    serl_parallel(ctx, (a->n + j.rows_per_task - 1) / j.rows_per_task, bwd_task, &j);
    return SERL_OK;
}
