/* RMSNorm as in Hugging Face's Llama/Qwen2 (float32): y = (x · rsqrt(mean(x²) + eps)) · w, optionally of
 * the residual sum x + res (stored as the add would store it).
 * Row statistics accumulate in double; rows are split over workers. The weight gradient is a reduction
 * over rows: each task sums its rows into its own double partial, and the partials are added in task
 * order afterwards, so the result does not depend on which worker ran which task. */
#include <immintrin.h>
#include <math.h>

#include "internal.h"

#define PAR_MIN 32768 /* elements below which one thread beats waking the pool */

static int64_t row_parts(serl_ctx *ctx, int64_t n, int64_t dim) {
    int64_t total = n * dim;
    int64_t parts = total < PAR_MIN ? 1 : total / (PAR_MIN / 2);
    if (parts > 4 * (int64_t)ctx->threads) parts = 4 * (int64_t)ctx->threads; /* some slack for balance */
    if (parts > n) parts = n;
    return parts < 1 ? 1 : parts;
}

/* Σ a[j]·b[j] in double (a == b gives the sum of squares). */
static double dot_f64(const float *a, const float *b, int64_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), s2 = _mm256_setzero_pd(), s3 = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 a0 = _mm256_loadu_ps(a + j), a1 = _mm256_loadu_ps(a + j + 8);
        __m256 b0 = _mm256_loadu_ps(b + j), b1 = _mm256_loadu_ps(b + j + 8);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a0)), _mm256_cvtps_pd(_mm256_castps256_ps128(b0)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a0, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b0, 1)), s1);
        s2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a1)), _mm256_cvtps_pd(_mm256_castps256_ps128(b1)), s2);
        s3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a1, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b1, 1)), s3);
    }
    for (; j + 4 <= n; j += 4)
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + j)), _mm256_cvtps_pd(_mm_loadu_ps(b + j)), s0);
    __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double r = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; j < n; j++) r += (double)a[j] * b[j];
    return r;
}

/* ------------------------------------------------------------------------- forward */

typedef struct {
    const serl_rmsnorm_fwd_args *a;
    int64_t parts;
} fwd_job;

/* A row of bf16 (or mixed) tensors goes through float32 blocks of BLK; the arithmetic is the same. */
#define BLK 512

static void fwd_row_mixed(const serl_rmsnorm_fwd_args *a, int64_t r) {
    const int64_t d = a->dim, base = r * d;
    float xb[BLK], yb[BLK];
    double ss = 0;
    for (int64_t c0 = 0; c0 < d; c0 += BLK) {
        int64_t n = d - c0 < BLK ? d - c0 : BLK;
        serl_load_f32(xb, a->x, a->x_dtype, base + c0, n);
        ss += dot_f64(xb, xb, n);
    }
    float rs = (float)(1.0 / sqrt(ss / (double)d + (double)a->eps));
    if (a->rstd) a->rstd[r] = rs;
    for (int64_t c0 = 0; c0 < d; c0 += BLK) {
        int64_t n = d - c0 < BLK ? d - c0 : BLK;
        serl_load_f32(xb, a->x, a->x_dtype, base + c0, n);
        for (int64_t c = 0; c < n; c++) yb[c] = (xb[c] * rs) * a->w[c0 + c];
        serl_store_f32(a->y, a->y_dtype, base + c0, yb, n);
    }
}

static void fwd_row_f32(const serl_rmsnorm_fwd_args *a, int64_t r) {
    const int64_t d = a->dim;
    const float *x = (const float *)a->x + r * d;
    float *y = (float *)a->y + r * d; /* may alias x: each element is read before it is written */
    float rs = (float)(1.0 / sqrt(dot_f64(x, x, d) / (double)d + (double)a->eps));
    if (a->rstd) a->rstd[r] = rs;
    /* HF order: (x · rstd) rounded to float32, then · w. */
    for (int64_t c = 0; c < d; c++) y[c] = (x[c] * rs) * a->w[c];
}

/* sum[r,:] = x[r,:] + res[r,:] rounded to sum's dtype: serl_add's arithmetic (alpha 1), so the norm that
 * then reads sum sees the bits the two ops would. */
static void add_row(const serl_rmsnorm_fwd_args *a, int64_t r) {
    const int64_t d = a->dim, base = r * d;
    if (a->x_dtype == SERL_DTYPE_F32 && a->res_dtype == SERL_DTYPE_F32 && a->sum_dtype == SERL_DTYPE_F32) {
        const float *x = (const float *)a->x + base, *res = (const float *)a->res + base;
        float *sum = (float *)a->sum + base; /* may alias x or res: element by element */
        for (int64_t c = 0; c < d; c++) sum[c] = x[c] + res[c];
        return;
    }
    float xb[BLK], rb[BLK];
    for (int64_t c0 = 0; c0 < d; c0 += BLK) {
        int64_t n = d - c0 < BLK ? d - c0 : BLK;
        serl_load_f32(xb, a->x, a->x_dtype, base + c0, n);
        serl_load_f32(rb, a->res, a->res_dtype, base + c0, n);
        for (int64_t c = 0; c < n; c++) xb[c] += rb[c];
        serl_store_f32(a->sum, a->sum_dtype, base + c0, xb, n);
    }
}

static void fwd_task(void *arg, int64_t i, int w) {
    (void)w;
    fwd_job *j = arg;
    const serl_rmsnorm_fwd_args *a = j->a, *na = a; /* na: the args of the norm itself */
    serl_rmsnorm_fwd_args sa;
    if (a->res) { /* the row is added into sum first (still in cache), then sum is normalised */
        sa = *a;
        sa.x = a->sum, sa.x_dtype = a->sum_dtype;
        na = &sa;
    }
    int64_t lo, hi;
    serl_chunk(a->n, j->parts, i, &lo, &hi);
    const int mixed = na->x_dtype != SERL_DTYPE_F32 || na->y_dtype != SERL_DTYPE_F32;
    for (int64_t r = lo; r < hi; r++) {
        if (a->res) add_row(a, r);
        if (mixed)
            fwd_row_mixed(na, r);
        else
            fwd_row_f32(na, r);
    }
}

SERL_API int32_t serl_rmsnorm_fwd(void *ctxp, const serl_rmsnorm_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_rmsnorm_fwd_args);
    SERL_CHECK(serl_check_rmsnorm_fwd(ctx, a));
    fwd_job j = {a, row_parts(ctx, a->n, a->dim)};
    serl_parallel(ctx, j.parts, fwd_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- backward */

/* With r = rstd, y_j = x_j·r·w_j and ∂r/∂x_k = −r³·x_k/D:
 *   dx_k = r·(w_k·dy_k − x_k·r²·(1/D)·Σ_j dy_j·w_j·x_j),   dw_j = Σ_rows dy_j·x_j·r. */
typedef struct {
    const serl_rmsnorm_bwd_args *a;
    int64_t parts;
    double *partial; /* [parts, dim] */
} bwd_job;

static void bwd_row_mixed(const serl_rmsnorm_bwd_args *a, int64_t r, double *pw) {
    const int64_t d = a->dim, base = r * d;
    const float *wt = a->w;
    const float rs = a->rstd[r];
    float xb[BLK], gb[BLK], db[BLK];
    double s = 0;
    for (int64_t c0 = 0; c0 < d; c0 += BLK) {
        int64_t n = d - c0 < BLK ? d - c0 : BLK;
        serl_load_f32(xb, a->x, a->x_dtype, base + c0, n);
        serl_load_f32(gb, a->dy, a->dy_dtype, base + c0, n);
        for (int64_t c = 0; c < n; c++) s += (double)(gb[c] * wt[c0 + c]) * xb[c];
    }
    const float coef = (float)((double)rs * rs * (s / (double)d));
    for (int64_t c0 = 0; c0 < d; c0 += BLK) {
        int64_t n = d - c0 < BLK ? d - c0 : BLK;
        serl_load_f32(xb, a->x, a->x_dtype, base + c0, n);
        serl_load_f32(gb, a->dy, a->dy_dtype, base + c0, n);
        serl_load_f32(db, a->dx, a->dx_dtype, base + c0, n);
        for (int64_t c = 0; c < n; c++) {
            db[c] += rs * (wt[c0 + c] * gb[c] - xb[c] * coef);
            pw[c0 + c] += (double)(gb[c] * xb[c] * rs);
        }
        serl_store_f32(a->dx, a->dx_dtype, base + c0, db, n);
    }
}

static void bwd_task(void *arg, int64_t i, int w) {
    (void)w;
    bwd_job *j = arg;
    const serl_rmsnorm_bwd_args *a = j->a;
    int64_t lo, hi;
    serl_chunk(a->n, j->parts, i, &lo, &hi);
    const int64_t d = a->dim;
    const float *restrict wt = a->w;
    double *restrict pw = j->partial + i * d;
    for (int64_t c = 0; c < d; c++) pw[c] = 0;
    if (a->x_dtype != SERL_DTYPE_F32 || a->dy_dtype != SERL_DTYPE_F32 || a->dx_dtype != SERL_DTYPE_F32) {
        for (int64_t r = lo; r < hi; r++) bwd_row_mixed(a, r, pw);
        return;
    }
    for (int64_t r = lo; r < hi; r++) {
        const float *restrict x = (const float *)a->x + r * d;
        const float *restrict dy = (const float *)a->dy + r * d;
        float *restrict dx = (float *)a->dx + r * d;
        const float rs = a->rstd[r];
        /* Σ dy·w·x in double; the x·(dy·w) product matches the loop below. */
        double s = 0;
        {
            __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
            int64_t c = 0;
            for (; c + 8 <= d; c += 8) {
                __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(wt + c));
                __m256 xv = _mm256_loadu_ps(x + c);
                s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(g)),
                                     _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), s0);
                s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)),
                                     _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), s1);
            }
            __m256d sv = _mm256_add_pd(s0, s1);
            __m128d h = _mm_add_pd(_mm256_castpd256_pd128(sv), _mm256_extractf128_pd(sv, 1));
            s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
            for (; c < d; c++) s += (double)(dy[c] * wt[c]) * x[c];
        }
        const float coef = (float)((double)rs * rs * (s / (double)d));
        for (int64_t c = 0; c < d; c++) {
            dx[c] += rs * (wt[c] * dy[c] - x[c] * coef);
            pw[c] += (double)(dy[c] * x[c] * rs);
        }
    }
}

SERL_API int32_t serl_rmsnorm_bwd(void *ctxp, const serl_rmsnorm_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_rmsnorm_bwd_args);
    SERL_CHECK(serl_check_rmsnorm_bwd(ctx, a));
    int64_t parts = row_parts(ctx, a->n, a->dim);
    double *partial = serl_scratch(ctx, 0, sizeof(double) * (size_t)parts * (size_t)a->dim);
    if (!partial) return serl_fail(ctx, SERL_E_NOMEM, "rmsnorm_bwd: out of memory for %lld weight partials", (long long)parts);
    bwd_job j = {a, parts, partial};
    serl_parallel(ctx, parts, bwd_task, &j);
    /* The partials are small (parts × dim): one thread adds them, tasks in order, without a second wake-up. */
    for (int64_t c = 0; c < a->dim; c++) {
        double s = 0;
        for (int64_t p = 0; p < parts; p++) s += partial[p * a->dim + c];
        a->dw[c] += (float)s;
    }
    return SERL_OK;
}
