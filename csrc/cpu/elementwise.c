/* Elementwise ops: residual add, scale, SwiGLU forward/backward, bias add and its gradient.
 * Memory-bound: parallel only above a size where waking the pool pays for itself. */
#include <math.h>

#include "internal.h"

#define PAR_MIN 65536 /* elements per op below which one thread is faster than waking the pool */

typedef struct {
    int64_t n, parts;
    const void *p;
} span_job;

static int64_t parts_for(serl_ctx *ctx, int64_t n) {
    if (n < PAR_MIN) return 1;
    int64_t parts = n / (PAR_MIN / 2);
    return parts < ctx->threads ? parts : ctx->threads;
}

/* ------------------------------------------------------------------------- add, scale */

static void add_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_add_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    const float *x = a->x, *y = a->y;
    float *o = a->out, al = a->alpha;
    for (int64_t k = lo; k < hi; k++) o[k] = x[k] + al * y[k];
}

SERL_API int32_t serl_add(void *ctxp, const serl_add_args *a) {
    SERL_ENTER(ctxp, a, serl_add_args);
    SERL_REQUIRE(a->n >= 0, "add: n = %lld", (long long)a->n);
    if (a->n == 0) return SERL_OK;
    SERL_REQUIRE(a->x && a->y && a->out, "add: NULL tensor");
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
    const float *x = a->x;
    float *o = a->out, al = a->alpha;
    for (int64_t k = lo; k < hi; k++) o[k] = al * x[k];
}

SERL_API int32_t serl_scale(void *ctxp, const serl_scale_args *a) {
    SERL_ENTER(ctxp, a, serl_scale_args);
    SERL_REQUIRE(a->n >= 0, "scale: n = %lld", (long long)a->n);
    if (a->n == 0) return SERL_OK;
    SERL_REQUIRE(a->x && a->out, "scale: NULL tensor");
    span_job j = {a->n, parts_for(ctx, a->n), a};
    serl_parallel(ctx, j.parts, scale_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- SwiGLU */

/* silu(g) = g·σ(g). expf of a large positive −g overflows to inf, giving g/inf = −0: the right limit. */
static inline float sigmoidf(float g) { return 1.0f / (1.0f + expf(-g)); }

static void swiglu_fwd_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_swiglu_fwd_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    for (int64_t k = lo; k < hi; k++) {
        float g = a->gate[k];
        a->out[k] = g * sigmoidf(g) * a->up[k];
    }
}

SERL_API int32_t serl_swiglu_fwd(void *ctxp, const serl_swiglu_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_fwd_args);
    SERL_REQUIRE(a->n >= 0, "swiglu_fwd: n = %lld", (long long)a->n);
    if (a->n == 0) return SERL_OK;
    SERL_REQUIRE(a->gate && a->up && a->out, "swiglu_fwd: NULL tensor");
    span_job j = {a->n, parts_for(ctx, a->n), a};
    serl_parallel(ctx, j.parts, swiglu_fwd_task, &j);
    return SERL_OK;
}

/* d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))). */
static void swiglu_bwd_task(void *arg, int64_t i, int w) {
    (void)w;
    span_job *j = arg;
    const serl_swiglu_bwd_args *a = j->p;
    int64_t lo, hi;
    serl_chunk(j->n, j->parts, i, &lo, &hi);
    for (int64_t k = lo; k < hi; k++) {
        float g = a->gate[k], u = a->up[k], d = a->dout[k];
        float s = sigmoidf(g);
        a->dgate[k] += d * u * s * (1.0f + g * (1.0f - s));
        a->dup[k] += d * g * s;
    }
}

SERL_API int32_t serl_swiglu_bwd(void *ctxp, const serl_swiglu_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_swiglu_bwd_args);
    SERL_REQUIRE(a->n >= 0, "swiglu_bwd: n = %lld", (long long)a->n);
    if (a->n == 0) return SERL_OK;
    SERL_REQUIRE(a->gate && a->up && a->dout && a->dgate && a->dup, "swiglu_bwd: NULL tensor");
    span_job j = {a->n, parts_for(ctx, a->n), a};
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
    for (int64_t r = lo; r < hi; r++) {
        float *y = a->y + r * a->dim;
        for (int c = 0; c < a->dim; c++) y[c] += a->bias[c];
    }
}

SERL_API int32_t serl_bias_add(void *ctxp, const serl_bias_add_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_add_args);
    SERL_REQUIRE(a->n >= 0 && a->dim >= 0, "bias_add: n = %d, dim = %d", a->n, a->dim);
    if (a->n == 0 || a->dim == 0) return SERL_OK;
    SERL_REQUIRE(a->bias && a->y, "bias_add: NULL tensor");
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
    for (int64_t c = lo; c < hi; c++) acc[c - lo] = 0;
    for (int64_t r = 0; r < a->n; r++) {
        const float *dy = a->dy + r * a->dim;
        for (int64_t c = lo; c < hi; c++) acc[c - lo] += dy[c];
    }
    for (int64_t c = lo; c < hi; c++) a->dbias[c] += (float)acc[c - lo];
}

SERL_API int32_t serl_bias_bwd(void *ctxp, const serl_bias_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_bias_bwd_args);
    SERL_REQUIRE(a->n >= 0 && a->dim >= 0, "bias_bwd: n = %d, dim = %d", a->n, a->dim);
    if (a->n == 0 || a->dim == 0) return SERL_OK;
    SERL_REQUIRE(a->dy && a->dbias, "bias_bwd: NULL tensor");
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
