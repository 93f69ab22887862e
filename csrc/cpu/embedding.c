/* Token embedding: a gather (forward) and a scatter-add (backward). Both are pure memory traffic.
 * Every id is validated before anything is written, so a bad id leaves the output untouched. */
#include <string.h>

#include "internal.h"

#define PAR_MIN 65536 /* floats moved below which one thread beats waking the pool */
#define COL_ALIGN 16  /* column chunks of whole 64-byte lines, so workers never share a cache line */

static int32_t check_ids(serl_ctx *ctx, const char *op, const int32_t *ids, int32_t n, int32_t vocab) {
    for (int32_t t = 0; t < n; t++)
        if ((uint32_t)ids[t] >= (uint32_t)vocab)
            return serl_fail(ctx, SERL_E_ARG, "%s: ids[%d] = %d is outside the vocabulary [0, %d)", op, t, ids[t],
                             vocab);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- forward: gather rows */

typedef struct {
    const serl_embedding_fwd_args *a;
    int64_t parts;
} fwd_job;

static void fwd_task(void *arg, int64_t i, int w) {
    (void)w;
    fwd_job *j = arg;
    const serl_embedding_fwd_args *a = j->a;
    int64_t lo, hi;
    serl_chunk(a->n_tokens, j->parts, i, &lo, &hi);
    const int64_t d = a->dim;
    if (a->table_dtype == a->out_dtype) {
        size_t es = serl_dtype_size(a->out_dtype), row = es * (size_t)d;
        for (int64_t t = lo; t < hi; t++)
            memcpy((char *)a->out + t * row, (const char *)a->table + (int64_t)a->ids[t] * row, row);
        return;
    }
    for (int64_t t = lo; t < hi; t++) {
        const int64_t src = (int64_t)a->ids[t] * d;
        if (a->out_dtype == SERL_DTYPE_BF16)
            serl_f32_to_bf16_n((uint16_t *)a->out + t * d, (const float *)a->table + src, d);
        else
            serl_bf16_to_f32_n((float *)a->out + t * d, (const uint16_t *)a->table + src, d);
    }
}

SERL_API int32_t serl_embedding_fwd(void *ctxp, const serl_embedding_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_embedding_fwd_args);
    SERL_CHECK(serl_check_embedding_fwd(ctx, a));
    int32_t st = check_ids(ctx, "embedding_fwd", a->ids, a->n_tokens, a->vocab);
    if (st) return st;
    int64_t total = (int64_t)a->n_tokens * a->dim;
    int64_t parts = total < PAR_MIN ? 1 : total / (PAR_MIN / 2);
    if (parts > ctx->threads) parts = ctx->threads;
    if (parts > a->n_tokens) parts = a->n_tokens;
    fwd_job j = {a, parts};
    serl_parallel(ctx, parts, fwd_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- backward: scatter-add */

/* The dim columns are split over workers: each worker walks every token in order and adds its own
 * columns, so repeated ids accumulate without races or atomics, in token order (deterministic). */
typedef struct {
    const serl_embedding_bwd_args *a;
    int64_t parts, chunks; /* chunks: COL_ALIGN-column blocks */
} bwd_job;

static void bwd_task(void *arg, int64_t i, int w) {
    (void)w;
    bwd_job *j = arg;
    const serl_embedding_bwd_args *a = j->a;
    int64_t lo, hi;
    serl_chunk(j->chunks, j->parts, i, &lo, &hi);
    lo *= COL_ALIGN;
    hi *= COL_ALIGN;
    if (hi > a->dim) hi = a->dim;
    const int64_t d = a->dim;
    if (a->dout_dtype == SERL_DTYPE_BF16) {
        for (int64_t t = 0; t < a->n_tokens; t++) {
            const uint16_t *restrict src = (const uint16_t *)a->dout + t * d;
            float *restrict dst = a->dtable + (int64_t)a->ids[t] * d;
            int64_t c = lo;
            for (; c + 8 <= hi; c += 8)
                _mm256_storeu_ps(dst + c, _mm256_add_ps(_mm256_loadu_ps(dst + c),
                                                        serl_bf16x8_to_f32(_mm_loadu_si128((const __m128i *)(src + c)))));
            for (; c < hi; c++) dst[c] += serl_bf16_to_f32(src[c]);
        }
        return;
    }
    for (int64_t t = 0; t < a->n_tokens; t++) {
        const float *restrict src = (const float *)a->dout + t * d;
        float *restrict dst = a->dtable + (int64_t)a->ids[t] * d;
        for (int64_t c = lo; c < hi; c++) dst[c] += src[c];
    }
}

SERL_API int32_t serl_embedding_bwd(void *ctxp, const serl_embedding_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_embedding_bwd_args);
    SERL_CHECK(serl_check_embedding_bwd(ctx, a));
    int32_t st = check_ids(ctx, "embedding_bwd", a->ids, a->n_tokens, a->vocab);
    if (st) return st;
    int64_t total = (int64_t)a->n_tokens * a->dim;
    int64_t chunks = (a->dim + COL_ALIGN - 1) / COL_ALIGN;
    int64_t parts = total < PAR_MIN ? 1 : total / (PAR_MIN / 2);
    if (parts > ctx->threads) parts = ctx->threads;
    if (parts > chunks) parts = chunks;
    bwd_job j = {a, parts, chunks};
    serl_parallel(ctx, parts, bwd_task, &j);
    return SERL_OK;
}
