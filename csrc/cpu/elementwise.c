/* Elementwise ops: residual add, scale, SwiGLU forward/backward, bias add and its gradient.
 * Memory-bound: parallel only above a size where waking the pool pays for itself. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "expf_avx2.h"

#include "internal.h"

#define PAR_MIN 65536 /* elements per op below which one thread is faster than waking the pool */

typedef struct {
    int64_t n, parts;
    const void *p;
} span_job;

static int64_t parts_of(serl_ctx *ctx, int64_t n, int64_t min) {
    if (n < min) return 1;
    int64_t parts = n / (min / 2);
    return parts < ctx->threads ? parts : ctx->threads;
}

static int64_t parts_for(serl_ctx *ctx, int64_t n) { return parts_of(ctx, n, PAR_MIN); }

/* SwiGLU is bound by its exponential and division (~0.7 ns an element on one core), not by memory: a
 * decode step's 64 × 704 took 31 µs on one thread under PAR_MIN, where waking the pool costs a few. */
#define SWIGLU_PAR_MIN 8192

/* Ops run over blocks of BLK elements: an F32 tensor is used in place, a BF16 one is converted into a
 * float32 block on the stack (and an output block is rounded back when stored). */
#define BLK 512

static inline const float *view_in(const void *p, int32_t dt, int64_t k, int64_t n, float *buf) {
    if (dt == SERL_DTYPE_F32) return (const float *)p + k;
    serl_load_f32(buf, p, dt, k, n);
    return buf;
}

/* An output block; inout: its current contents are needed (accumulation). */
static inline float *view_out(void *p, int32_t dt, int64_t k, int64_t n, float *buf, int inout) {
    if (dt == SERL_DTYPE_F32) return (float *)p + k;
    if (inout) serl_load_f32(buf, p, dt, k, n);
    return buf;
}

static inline void out_done(void *p, int32_t dt, int64_t k, int64_t n, const float *buf) {
    if (dt != SERL_DTYPE_F32) serl_store_f32(p, dt, k, buf, n);
}

/* ------------------------------------------------------------------------- add, scale */

static void add_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_add_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    float bx[BLK], by[BLK], bo[BLK];
    const float al = a->alpha;
    for (int64_t k = lo; k < hi; k += BLK) {
        int64_t n = hi - k < BLK ? hi - k : BLK;
        const float *x = view_in(a->x, a->x_dtype, k, n, bx), *y = view_in(a->y, a->y_dtype, k, n, by);
        float *o = view_out(a->out, a->out_dtype, k, n, bo, 0);
        for (int64_t e = 0; e < n; e++) o[e] = x[e] + al * y[e];
        out_done(a->out, a->out_dtype, k, n, bo);
    }
}

SERL_API int32_t serl_add(void *ctxp, const serl_add_args *a) {
    SERL_ENTER(ctxp, a, serl_add_args);
    SERL_CHECK(serl_check_add(ctx, a));
    span_job j = {a->n, parts_for(ctx, a->n), a};
    serl_parallel(ctx, j.parts, add_task, &j);
    return SERL_OK;
}

static void scale_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_scale_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    float bx[BLK], bo[BLK];
    const float al = a->alpha;
    for (int64_t k = lo; k < hi; k += BLK) {
        int64_t n = hi - k < BLK ? hi - k : BLK;
        const float *x = view_in(a->x, a->x_dtype, k, n, bx);
        float *o = view_out(a->out, a->out_dtype, k, n, bo, 0);
        for (int64_t e = 0; e < n; e++) o[e] = al * x[e];
        out_done(a->out, a->out_dtype, k, n, bo);
    }
}

SERL_API int32_t serl_scale(void *ctxp, const serl_scale_args *a) {
    SERL_ENTER(ctxp, a, serl_scale_args);
    SERL_CHECK(serl_check_scale(ctx, a));
    span_job j = {a->n, parts_for(ctx, a->n), a};
    serl_parallel(ctx, j.parts, scale_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- SwiGLU */

/* silu(g) = g·σ(g), eight lanes at a time with the library's exponential (expf_avx2.h): the forward
 * 3.6× as fast as with libm's expf an element (BenchmarkSwiGLU, f32). e^−g past 88.37 is +inf, so
 * σ(g) = 0 and silu(g) = g·0 = −0 for a very negative g: the right limit. A block's last < 8 elements
 * go through the same lanes (zero-padded), so a result never depends on where a thread's span ends. */
static inline __m256 sigmoid8(__m256 g) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, serl_exp8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)))));
}

static inline __m256 swiglu_fwd8v(__m256 g, __m256 u) { return _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), u); }

/* o = silu(g)·u over n < 8 lanes or 8 (full). Zero-padded stack copies only for a tail: zeroing them
 * for every full vector cost the forward a few per cent and the backward (five of them) 2–3× its time. */
static inline void swiglu_fwd8(const float *gate, const float *up, float *o, int n) {
    if (n == 8) {
        _mm256_storeu_ps(o, swiglu_fwd8v(_mm256_loadu_ps(gate), _mm256_loadu_ps(up)));
        return;
    }
    float tg[8] = {0}, tu[8] = {0}, to[8];
    memcpy(tg, gate, sizeof(float) * (size_t)n), memcpy(tu, up, sizeof(float) * (size_t)n);
    _mm256_storeu_ps(to, swiglu_fwd8v(_mm256_loadu_ps(tg), _mm256_loadu_ps(tu)));
    memcpy(o, to, sizeof(float) * (size_t)n);
}

static void swiglu_fwd_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_swiglu_fwd_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    float bg[BLK], bu[BLK], bo[BLK];
    for (int64_t k = lo; k < hi; k += BLK) {
        int64_t n = hi - k < BLK ? hi - k : BLK;
        const float *gate = view_in(a->gate, a->gate_dtype, k, n, bg), *up = view_in(a->up, a->up_dtype, k, n, bu);
        float *o = view_out(a->out, a->out_dtype, k, n, bo, 0);
        for (int64_t e = 0; e < n; e += 8) swiglu_fwd8(gate + e, up + e, o + e, n - e < 8 ? (int)(n - e) : 8);
        out_done(a->out, a->out_dtype, k, n, bo);
    }
}

SERL_API int32_t serl_swiglu_fwd(void *ctxp, const serl_swiglu_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_fwd_args);
    SERL_CHECK(serl_check_swiglu_fwd(ctx, a));
    span_job j = {a->n, parts_of(ctx, a->n, SWIGLU_PAR_MIN), a};
    serl_parallel(ctx, j.parts, swiglu_fwd_task, &j);
    return SERL_OK;
}

/* d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))): dgate = dout·u·σ·(1 + g·(1 − σ)), dup = dout·g·σ (written,
 * not accumulated: serl.h), on eight lanes. */
static inline void swiglu_bwd8v(__m256 g, __m256 u, __m256 d, __m256 *dg, __m256 *du) {
    const __m256 one = _mm256_set1_ps(1.0f), s = sigmoid8(g);
    const __m256 slope = _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, s))));
    *dg = _mm256_mul_ps(_mm256_mul_ps(d, u), slope);
    *du = _mm256_mul_ps(_mm256_mul_ps(d, g), s);
}

/* over n < 8 lanes or 8, the tail through zero-padded copies as swiglu_fwd8 */
static inline void swiglu_bwd8(const float *gate, const float *up, const float *dout, float *dgate, float *dup, int n) {
    __m256 dg, du;
    if (n == 8) {
        swiglu_bwd8v(_mm256_loadu_ps(gate), _mm256_loadu_ps(up), _mm256_loadu_ps(dout), &dg, &du);
        _mm256_storeu_ps(dgate, dg), _mm256_storeu_ps(dup, du);
        return;
    }
    float t[5][8] = {{0}};
    const size_t b = sizeof(float) * (size_t)n;
    memcpy(t[0], gate, b), memcpy(t[1], up, b), memcpy(t[2], dout, b);
    swiglu_bwd8v(_mm256_loadu_ps(t[0]), _mm256_loadu_ps(t[1]), _mm256_loadu_ps(t[2]), &dg, &du);
    _mm256_storeu_ps(t[3], dg), _mm256_storeu_ps(t[4], du);
    memcpy(dgate, t[3], b), memcpy(dup, t[4], b);
}

static void swiglu_bwd_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_swiglu_bwd_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    float bg[BLK], bu[BLK], bd[BLK], bdg[BLK], bdu[BLK];
    for (int64_t k = lo; k < hi; k += BLK) {
        int64_t n = hi - k < BLK ? hi - k : BLK;
        const float *gate = view_in(a->gate, a->gate_dtype, k, n, bg), *up = view_in(a->up, a->up_dtype, k, n, bu);
        const float *dout = view_in(a->dout, a->dout_dtype, k, n, bd);
        float *dgate = view_out(a->dgate, a->dgate_dtype, k, n, bdg, 0), *dup = view_out(a->dup, a->dup_dtype, k, n, bdu, 0);
        for (int64_t e = 0; e < n; e += 8)
            swiglu_bwd8(gate + e, up + e, dout + e, dgate + e, dup + e, n - e < 8 ? (int)(n - e) : 8);
        out_done(a->dgate, a->dgate_dtype, k, n, bdg);
        out_done(a->dup, a->dup_dtype, k, n, bdu);
    }
}

SERL_API int32_t serl_swiglu_bwd(void *ctxp, const serl_swiglu_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_bwd_args);
    SERL_CHECK(serl_check_swiglu_bwd(ctx, a));
    span_job j = {a->n, parts_of(ctx, a->n, SWIGLU_PAR_MIN), a};
    serl_parallel(ctx, j.parts, swiglu_bwd_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- bias */

static void bias_add_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_bias_add_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    float bb[BLK], by[BLK];
    for (int64_t r = lo; r < hi; r++) {
        for (int64_t c0 = 0; c0 < a->dim; c0 += BLK) {
            int64_t n = a->dim - c0 < BLK ? a->dim - c0 : BLK, k = r * a->dim + c0;
            const float *bias = view_in(a->bias, a->bias_dtype, c0, n, bb);
            float *y = view_out(a->y, a->y_dtype, k, n, by, 1);
            for (int64_t c = 0; c < n; c++) y[c] += bias[c];
            out_done(a->y, a->y_dtype, k, n, by);
        }
    }
}

SERL_API int32_t serl_bias_add(void *ctxp, const serl_bias_add_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_add_args);
    SERL_CHECK(serl_check_bias_add(ctx, a));
    int64_t total = (int64_t)a->n * a->dim;
    int64_t parts = parts_for(ctx, total);
    if (parts > a->n) parts = a->n;
    span_job j = {a->n, parts, a};
    serl_parallel(ctx, parts, bias_add_task, &j);
    return SERL_OK;
}

/* Columns are split over workers, so each dbias element has one writer and no reduction is needed;
 * each worker walks rows in order (contiguous reads) into a double accumulator for its columns. */
typedef struct {
    span_job s;
    double *scratch[SERL_MAX_THREADS];
} bias_bwd_job;

static void bias_bwd_task(void *arg, int64_t i, int w) {
    bias_bwd_job *bj = arg;
    span_job *j = &bj->s;
    const serl_bias_bwd_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(a->dim, j->parts, i, &lo, &hi);
    double *acc = bj->scratch[w];
    float buf[BLK];
    for (int64_t c = lo; c < hi; c++) acc[c - lo] = 0;
    for (int64_t r = 0; r < a->n; r++) {
        for (int64_t c0 = lo; c0 < hi; c0 += BLK) {
            int64_t n = hi - c0 < BLK ? hi - c0 : BLK;
            const float *dy = view_in(a->dy, a->dy_dtype, r * a->dim + c0, n, buf);
            for (int64_t c = 0; c < n; c++) acc[c0 - lo + c] += dy[c];
        }
    }
    for (int64_t c = lo; c < hi; c++) a->dbias[c] += (float)acc[c - lo];
}

SERL_API int32_t serl_bias_bwd(void *ctxp, const serl_bias_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_bwd_args);
    SERL_CHECK(serl_check_bias_bwd(ctx, a));
    int64_t parts = parts_for(ctx, (int64_t)a->n * a->dim);
    if (parts > a->dim) parts = a->dim;
    bias_bwd_job j = {{a->n, parts, a}, {0}};
    for (int w = 0; w < ctx->threads; w++) {
        j.scratch[w] = serl_scratch(ctx, w, sizeof(double) * (size_t)(a->dim / parts + 1));
        if (!j.scratch[w]) return serl_fail(ctx, SERL_E_NOMEM, "bias_bwd: out of memory");
    }
    serl_parallel(ctx, parts, bias_bwd_task, &j);
    return SERL_OK;
}
