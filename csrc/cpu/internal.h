/* Internal declarations shared by the CPU library's translation units: the context, the thread pool,
 * per-worker scratch memory and error reporting. Nothing here is exported. */
#ifndef SERL_CPU_INTERNAL_H
#define SERL_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../serl.h"
#include "dtype.h"

#define SERL_MAX_THREADS 256
#define SERL_ALIGN 64


typedef struct serl_pool serl_pool;

/* A task function runs task index `task` on worker `worker` (0 = the calling thread). */
typedef void (*serl_task_fn)(void *arg, int64_t task, int worker);

typedef struct {
    void *p;
    size_t bytes;
} serl_scratch_buf;

typedef struct serl_capture serl_capture; /* graph.c */

typedef struct serl_ctx {
    serl_pool *pool;
    int threads;
    int simd; /* SERL_SIMD_* (serl.h) chosen at creation (core.c's detect_simd) */
    char err[1024];
    serl_scratch_buf scratch[SERL_MAX_THREADS];
    serl_scratch_buf shared; /* one op's scratch for all its workers (serl_scratch_shared) */
    serl_capture *cap;       /* the graph being captured (graph.c), NULL when ops run */
} serl_ctx;
#define SERL_CTX serl_ctx /* for ../common.h */

/* Records a formatted message on ctx and returns status. */
int32_t serl_fail(serl_ctx *ctx, int32_t status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Validates the context and the args struct's size word; returns early from the calling op on error.
 * While the context captures a graph, the op is recorded (or refused) instead of run (graph.c). */
#define SERL_ENTER(ctxp, a, T)                                                                          \
    SERL_ENTER_ARGS(ctxp, a, T);                                                                        \
    if (ctx->cap) return serl_graph_record(ctx, #T, a)

/* Graph capture (graph.c): records the op whose args type is named type, or refuses it; notes the first
 * failure during capture (serl_fail calls it); drops a capture (context destroy). */
int32_t serl_graph_record(serl_ctx *ctx, const char *type, const void *args);
void serl_graph_spoil(serl_ctx *ctx, int32_t status);
void serl_graph_abandon(serl_ctx *ctx);

/* Runs fn(arg, i, worker) for i in [0, n_tasks) on the pool; the caller works too. Returns when done. */
void serl_parallel(serl_ctx *ctx, int64_t n_tasks, serl_task_fn fn, void *arg);

/* Splits [0,n) into `parts` near-equal chunks: chunk i is [*lo, *hi). */
static inline void serl_chunk(int64_t n, int64_t parts, int64_t i, int64_t *lo, int64_t *hi) {
    int64_t q = n / parts, r = n % parts;
    *lo = i * q + (i < r ? i : r);
    *hi = *lo + q + (i < r ? 1 : 0);
}

/* Per-worker scratch of at least `bytes`, 64-byte aligned, kept across calls. NULL when out of memory. */
void *serl_scratch(serl_ctx *ctx, int worker, size_t bytes);

/* One op's scratch shared by all its workers (the float32 C of a few-row x·Wᵀ stored in bf16, the
 * keys and values attention stages), kept across calls like serl_scratch (a fresh allocation of that size
 * per call would fault its pages in every time). An op that takes it calls no other op that does. */
void *serl_scratch_shared(serl_ctx *ctx, size_t bytes);

serl_pool *serl_pool_create(int threads);
void serl_pool_destroy(serl_pool *p);
void serl_pool_run(serl_pool *p, int64_t n_tasks, serl_task_fn fn, void *arg);

/* Memory blocks, 64-byte aligned; from SERL_HUGE_PAGE up, 2 MiB-aligned mappings of their own with huge
 * pages advised (alloc.c), which serl_alloc also commits when it allocates them (core.c). Every block goes
 * back through serl_aligned_free, never free(). */
#define SERL_HUGE_PAGE ((size_t)2 << 20)
void *serl_aligned_alloc(size_t bytes);
void serl_aligned_free(void *p);

/* matmul.c's transposing pack of 32-bit elements (lane r < rv of the panel is src[r·ld + p]): dst[p·R + r]
 * for p < kc, zero lanes rv..R-1. The bf16 product uses it on k-pairs (two bf16 as one 32-bit word). */
void serl_pack_t32(float *dst, const float *src, int64_t ld, int R, int rv, int64_t kc);

/* BLOCK(R) with R the compile-time constant equal to n (1..8; 8 for more): the row-count dispatch of a
 * register block inlined once per row count (matmul.c's and matmul_avx512.c's thin Aᵀ·B). */
#define SERL_ROWS_1_TO_8(n, BLOCK)                                                                       \
    switch ((n) < 8 ? (n) : 8) {                                                                         \
    case 1: BLOCK(1); break;                                                                             \
    case 2: BLOCK(2); break;                                                                             \
    case 3: BLOCK(3); break;                                                                             \
    case 4: BLOCK(4); break;                                                                             \
    case 5: BLOCK(5); break;                                                                             \
    case 6: BLOCK(6); break;                                                                             \
    case 7: BLOCK(7); break;                                                                             \
    default: BLOCK(8); break;                                                                            \
    }

/* F(A, B) with compile-time flags equal to the runtime ones a and b (two operands' "is bf16"): one
 * instance of an inlined kernel per dtype pair. */
#define SERL_FLAGS2(a, b, F)                                                                             \
    do {                                                                                                 \
        if ((a) && (b))                                                                                  \
            F(1, 1);                                                                                     \
        else if (a)                                                                                      \
            F(1, 0);                                                                                     \
        else if (b)                                                                                      \
            F(0, 1);                                                                                     \
        else                                                                                             \
            F(0, 0);                                                                                     \
    } while (0)

/* Rows ahead that matmul.c's thin Aᵀ·B (both widths) prefetches of its long operand: its rows are far
 * apart (a gradient's dy, 19 KiB rows for Qwen2.5-0.5B's MLP), and without it a 2048-row sum over 4864
 * columns ran at a third of the speed (52 against 150-210 GFLOP/s at 4 to 16 rows ahead). */
#ifndef SERL_THIN_PF
#define SERL_THIN_PF 16
#endif

#include "../check.h" /* needs the context and serl_fail above */

#endif
