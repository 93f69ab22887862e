/* Advantage statistics (masked whitening, per-group baselines) and the optimizer (global gradient norm
 * with clipping, AdamW). Reductions run over fixed chunks whose partial sums (double) are added in
 * chunk order, so results do not depend on the thread count. */
#include <immintrin.h>
#include <math.h>

#include "internal.h"

#define CHUNK 65536 /* elements per task */

static int64_t n_chunks(int64_t n) { return (n + CHUNK - 1) / CHUNK; }

static inline __m256d acc_lo_hi(__m256d acc, __m256 a, __m256 b) {
    /* acc += a·b lane-wise in double */
    acc = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)), _mm256_cvtps_pd(_mm256_castps256_ps128(b)), acc);
    return _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)), acc);
}

static inline double hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* ------------------------------------------------------------------------- whiten */

typedef struct {
    const serl_whiten_args *a;
    double *part; /* [chunks][2] */
    double mu, inv_sd;
    int phase;
} whiten_job;

static void whiten_task(void *arg, int64_t c, int w) {
    (void)w;
    whiten_job *j = arg;
    const serl_whiten_args *a = j->a;
    int64_t lo = c * CHUNK, hi = lo + CHUNK < a->n ? lo + CHUNK : a->n;
    const float *x = a->x, *m = a->mask;
    if (j->phase == 0) { /* Σm, Σm·x */
        double sm = 0, smx = 0;
        for (int64_t i = lo; i < hi; i++) {
            sm += m[i];
            smx += (double)m[i] * x[i];
        }
        j->part[2 * c] = sm, j->part[2 * c + 1] = smx;
    } else if (j->phase == 1) { /* Σm·(x−μ)² */
        double s = 0, mu = j->mu;
        for (int64_t i = lo; i < hi; i++) {
            double d = x[i] - mu;
            s += m[i] * d * d;
        }
        j->part[c] = s;
    } else {
        float *y = a->y;
        double mu = j->mu, is = j->inv_sd;
        for (int64_t i = lo; i < hi; i++) y[i] = m[i] != 0 ? (float)((x[i] - mu) * is) : 0.0f;
    }
}

SERL_API int32_t serl_whiten(void *ctxp, const serl_whiten_args *a) {
    SERL_ENTER(ctxp, a, serl_whiten_args);
    SERL_CHECK(serl_check_whiten(ctx, a));
    int64_t nc = n_chunks(a->n);
    whiten_job j = {a, NULL, 0, 1, 0};
    double var, sm = 0;
    if (a->mode == SERL_WHITEN_APPLY) {
        j.mu = a->stats[0];
        var = a->stats[1];
    } else {
        double *part = serl_scratch(ctx, 0, sizeof(double) * 2 * (size_t)nc);
        if (!part) return serl_fail(ctx, SERL_E_NOMEM, "whiten: out of memory");
        j.part = part;
        serl_parallel(ctx, nc, whiten_task, &j);
        double smx = 0;
        for (int64_t c = 0; c < nc; c++) sm += part[2 * c], smx += part[2 * c + 1];
        SERL_REQUIRE(sm != 0 && isfinite(sm), "whiten: Σ mask = %g (want a non-zero total weight)", sm);
        j.mu = smx / sm;
        j.phase = 1;
        serl_parallel(ctx, nc, whiten_task, &j);
        double sv = 0;
        for (int64_t c = 0; c < nc; c++) sv += part[c];
        var = sv / sm;
    }
    if (a->mode == SERL_WHITEN_STATS) {
        a->stats[0] = (float)j.mu;
        a->stats[1] = (float)var;
        a->stats[2] = (float)sm;
        return SERL_OK;
    }
    j.inv_sd = a->std_norm ? 1.0 / sqrt(var > a->eps ? var : (double)a->eps) : 1.0;
    j.phase = 2;
    serl_parallel(ctx, nc, whiten_task, &j);
    if (a->mode == SERL_WHITEN_FULL) {
        a->stats[0] = (float)j.mu;
        a->stats[1] = (float)var;
    }
    return SERL_OK;
}

/* ------------------------------------------------------------------------- group baselines */

SERL_API int32_t serl_group_baseline(void *ctxp, const serl_group_baseline_args *a) {
    SERL_ENTER(ctxp, a, serl_group_baseline_args);
    SERL_CHECK(serl_check_group_baseline(ctx, a));
    const int G = a->group_size;
    /* Groups are small (16 in SeRL) and there are few: one thread, double throughout. */
    for (int64_t g = 0; g < a->n_groups; g++) {
        const float *r = a->r + g * G;
        float *y = a->y + g * G;
        double s = 0;
        for (int i = 0; i < G; i++) s += r[i];
        double mean = s / G;
        if (a->mode == SERL_GROUP_ZSCORE) {
            double ss = 0;
            for (int i = 0; i < G; i++) ss += (r[i] - mean) * (r[i] - mean);
            double den = sqrt(ss / (G - 1)) + a->eps;
            for (int i = 0; i < G; i++) y[i] = (float)((r[i] - mean) / den);
        } else if (a->mode == SERL_GROUP_RLOO) {
            for (int i = 0; i < G; i++) {
                double ri = r[i];
                y[i] = (float)(ri - (s - ri) / (G - 1));
            }
        } else {
            for (int i = 0; i < G; i++) y[i] = (float)(r[i] - mean);
        }
    }
    return SERL_OK;
}

/* ------------------------------------------------------------------------- gradient norm */

typedef struct {
    const serl_grad_norm_args *a;
    double *part;
    float scale;
    int phase;
} gn_job;

static void gn_task(void *arg, int64_t c, int w) {
    (void)w;
    gn_job *j = arg;
    const serl_grad_norm_args *a = j->a;
    int64_t lo = c * CHUNK, hi = lo + CHUNK < a->n ? lo + CHUNK : a->n;
    float *g = a->g;
    int64_t i = lo;
    if (j->phase == 0) {
        __m256d s0 = _mm256_setzero_pd(), s1 = s0;
        for (; i + 16 <= hi; i += 16) {
            __m256 a0 = _mm256_loadu_ps(g + i), a1 = _mm256_loadu_ps(g + i + 8);
            s0 = acc_lo_hi(s0, a0, a0);
            s1 = acc_lo_hi(s1, a1, a1);
        }
        double s = hsum4d(_mm256_add_pd(s0, s1));
        for (; i < hi; i++) s += (double)g[i] * g[i];
        j->part[c] = s;
    } else {
        __m256 vs = _mm256_set1_ps(j->scale);
        for (; i + 8 <= hi; i += 8) _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), vs));
        for (; i < hi; i++) g[i] *= j->scale;
    }
}

SERL_API int32_t serl_grad_norm(void *ctxp, const serl_grad_norm_args *a) {
    SERL_ENTER(ctxp, a, serl_grad_norm_args);
    SERL_CHECK(serl_check_grad_norm(ctx, a));
    int64_t nc = n_chunks(a->n);
    double *part = serl_scratch(ctx, 0, sizeof(double) * (size_t)(nc > 0 ? nc : 1));
    if (!part) return serl_fail(ctx, SERL_E_NOMEM, "grad_norm: out of memory");
    gn_job j = {a, part, 1, 0};
    if (nc > 0) serl_parallel(ctx, nc, gn_task, &j);
    double s = 0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    double norm = sqrt(s);
    a->out[0] = (float)norm;
    /* A non-finite norm leaves g untouched: the caller sees it in out[0] and skips the step. */
    if (a->max_norm > 0 && isfinite(norm) && norm > a->max_norm) {
        j.scale = (float)(a->max_norm / (norm + 1e-6));
        j.phase = 1;
        serl_parallel(ctx, nc, gn_task, &j);
    }
    return SERL_OK;
}

/* ------------------------------------------------------------------------- AdamW */

typedef struct {
    const serl_adamw_args *a;
    float decay, step_size, inv_bc2_sqrt, gs; /* gs: grad_scale times the clip factor */
} adamw_job;

static void adamw_task(void *arg, int64_t c, int w) {
    (void)w;
    const adamw_job *j = arg;
    const serl_adamw_args *a = j->a;
    int64_t lo = c * CHUNK, hi = lo + CHUNK < a->n ? lo + CHUNK : a->n;
    float *p = a->p, *m = a->m, *v = a->v;
    const float *g = a->g;
    const float b1 = a->beta1, b2 = a->beta2, gs = j->gs, eps = a->eps;
    uint16_t *pb = a->p_bf16;
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), vc1 = _mm256_set1_ps(c1), vc2 = _mm256_set1_ps(c2);
    const __m256 vgs = _mm256_set1_ps(gs), veps = _mm256_set1_ps(eps), vdec = _mm256_set1_ps(j->decay);
    const __m256 vss = _mm256_set1_ps(j->step_size), vib = _mm256_set1_ps(j->inv_bc2_sqrt);
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), vgs);
        __m256 mi = _mm256_fmadd_ps(vb1, _mm256_loadu_ps(m + i), _mm256_mul_ps(vc1, gi));
        __m256 vi = _mm256_fmadd_ps(vb2, _mm256_loadu_ps(v + i), _mm256_mul_ps(vc2, _mm256_mul_ps(gi, gi)));
        __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), vib, veps);
        /* p·decay − step·m/den in one rounding, spelled out (the CUDA library does the same), not left
         * to the compiler's contraction (gcc fuses the product into the subtraction; clang would not) */
        __m256 pi = _mm256_fmsub_ps(_mm256_loadu_ps(p + i), vdec, _mm256_div_ps(_mm256_mul_ps(vss, mi), den));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(p + i, pi);
        if (pb) _mm_storeu_si128((__m128i *)(pb + i), serl_f32x8_to_bf16(pi));
    }
    for (; i < hi; i++) {
        /* the vector form's roundings, element by element */
        float gi = g[i] * gs;
        float mi = fmaf(b1, m[i], c1 * gi);
        float vi = fmaf(b2, v[i], c2 * (gi * gi));
        float den = fmaf(sqrtf(vi), j->inv_bc2_sqrt, eps);
        m[i] = mi, v[i] = vi;
        p[i] = fmaf(p[i], j->decay, -(j->step_size * mi / den));
        if (pb) pb[i] = serl_f32_to_bf16(p[i]);
    }
}

SERL_API int32_t serl_adamw(void *ctxp, const serl_adamw_args *a) {
    SERL_ENTER(ctxp, a, serl_adamw_args);
    SERL_CHECK(serl_check_adamw(ctx, a));
    float gs = a->grad_scale;
    if (a->grad_norm && a->max_norm > 0) {
        /* the scale serl_grad_norm applies, read from device memory: no host round trip in between */
        double norm = a->grad_norm[0];
        if (isfinite(norm) && norm > a->max_norm) gs = (float)((double)gs * (a->max_norm / (norm + 1e-6)));
    }
    /* PyTorch: p·(1 − lr·wd), then p −= (lr/bc1)·m / (sqrt(v)/sqrt(bc2) + eps); scalars in double. */
    double bc1 = 1.0 - pow(a->beta1, a->step), bc2 = 1.0 - pow(a->beta2, a->step);
    adamw_job j = {a, (float)(1.0 - (double)a->lr * a->weight_decay), (float)(a->lr / bc1), (float)(1.0 / sqrt(bc2)), gs};
    serl_parallel(ctx, n_chunks(a->n), adamw_task, &j);
    return SERL_OK;
}
