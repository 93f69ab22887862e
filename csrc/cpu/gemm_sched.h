/* Scheduling of the blocked matrix product (gemm_driver.c, for matmul.c's float32 and matmul_bf16.c's bf16 pair
 * kernels): one parallel call per (N block, M block, K group) whose tasks are C tiles, with panels packed on
 * demand by whichever task needs one first (a flag per panel and slice), so packing overlaps computing and no
 * barrier separates slices: on a shared machine a preempted worker never stalls a whole phase. Also the split
 * of the GEMVs (matmul.c's float32 ones, matmul_bf16.c's bf16 ones) over rows of W. */
#ifndef SERL_CPU_GEMM_SCHED_H
#define SERL_CPU_GEMM_SCHED_H

#include <immintrin.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"

enum { PANEL_EMPTY, PANEL_BUSY, PANEL_READY };

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* 1 when the caller has claimed the panel behind flag f and must pack it, then serl_panel_publish(f);
 * 0 once it is ready (packed earlier, or by another worker while this one waited). */
static inline int serl_panel_claim(_Atomic int *f) {
    if (atomic_load_explicit(f, memory_order_acquire) == PANEL_READY) return 0;
    int expect = PANEL_EMPTY;
    if (atomic_compare_exchange_strong_explicit(f, &expect, PANEL_BUSY, memory_order_acq_rel, memory_order_acquire))
        return 1;
    /* A panel packs in microseconds; waiting longer means its packer was preempted (the machine is
     * shared), so give the core back instead of spinning through its time slice. */
    for (int spins = 0; atomic_load_explicit(f, memory_order_acquire) != PANEL_READY; spins++) {
        if (spins < 4096)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
    return 0;
}

static inline void serl_panel_publish(_Atomic int *f) { atomic_store_explicit(f, PANEL_READY, memory_order_release); }

/* n flags to PANEL_EMPTY, before the parallel call that packs their panels. */
static inline void serl_panel_reset(_Atomic int *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) atomic_store_explicit(f + i, PANEL_EMPTY, memory_order_relaxed);
}

/* n·k of W (256 KiB) below which a GEMV stays on one thread. From there two threads decode the built-in
 * model 1.2× (one sequence) to 1.5× (4-16) faster on 2 idle cores; at 2^22 (16 MiB), tuned while another
 * job loaded both cores, none of its products was split. */
#define SERL_GEMV_PAR_MIN (1 << 16)

#ifndef SKINNY_MAX_N
/* W rows up to which x·Wᵀ of any height runs on a GEMV split over x (skinny tasks). A LoRA group's
 * joined x·Aᵀ has n = 3 × rank; at n 16-48 the GEMV takes 0.3-0.75× the blocked kernels' time (x rows 64
 * and 2048, in 256, 896 and 4096, f32 and bf16 pairs), W past L1 (32 KiB) and all. */
#define SKINNY_MAX_N 48
#endif
#define SKINNY_ROWS 32 /* x rows per skinny task: W (few rows) stays in L1 or L2, the chunk of x in L2 */

/* Tasks of a skinny GEMV over m rows of x: SKINNY_ROWS rows each (the caller keeps products below
 * SMALL_MNK on one thread); task t's rows are serl_chunk(m, parts, t). Two threads for a decode step's
 * LoRA x·Aᵀ on 2 idle cores: 64×8×256 1.20-1.23 µs against 1.72 on one. */
static inline int64_t serl_skinny_parts(int threads, int64_t m) { return threads < 2 ? 1 : ceil_div(m, SKINNY_ROWS); }

/* Tasks of a GEMV over W [n, k]: one unless W pays for a wake-up; then over-decomposed (tasks are pulled
 * dynamically), so that when a worker is slow to wake the caller takes its share instead of waiting. */
static inline int64_t serl_gemv_parts(int threads, int64_t n, int64_t k) {
    if (threads < 2 || n * k < SERL_GEMV_PAR_MIN) return 1;
    int64_t parts = 4 * (int64_t)threads;
    return parts > ceil_div(n, 64) ? ceil_div(n, 64) : parts;
}

/* Items [*lo, *hi) of n that task t of parts takes in whole blocks of blk (the last block may be short),
 * so register blocks stay whole; 0 when the task has none. */
static inline int serl_chunk_blocks(int64_t n, int64_t blk, int64_t parts, int64_t t, int64_t *lo, int64_t *hi) {
    serl_chunk(ceil_div(n, blk), parts, t, lo, hi);
    *lo *= blk;
    *hi = *hi * blk < n ? *hi * blk : n;
    return *lo < *hi;
}

/* Rows [*lo, *hi) of W that GEMV task t of parts takes: whole blocks of 4 rows. */
static inline int serl_gemv_rows(int64_t n, int64_t parts, int64_t t, int64_t *lo, int64_t *hi) {
    return serl_chunk_blocks(n, 4, parts, t, lo, hi);
}

/* A GEMV streams W from memory once, 4 rows at a time, each row from its start: a new stream for the
 * hardware prefetcher every row and every page, at 60-65% of the machine's read rate with one x row.
 * So while block j's rows are multiplied, the first pass over x fetches the next block's rows into L2
 * (prefetcht1; into L1 the prefetches would hold the core's few L1 miss buffers, as in kvcache.c), a
 * line of each as the loop reads a line of its own. serl_gemv_next sets pf to rows j+4.. of W (es-byte
 * elements, ldw apart; a partial block repeats its last row as the block itself does) and returns 1,
 * or 0 when block j is the last of [j, j1). */
static inline int serl_gemv_next(const char *pf[4], const void *W, int64_t ldw, size_t es, int64_t j, int64_t j1) {
    if (j + 4 >= j1) return 0;
    for (int q = 0; q < 4; q++) {
        int64_t r = j + 4 + q < j1 ? j + 4 + q : j1 - 1;
        pf[q] = (const char *)W + (size_t)(r * ldw) * es;
    }
    return 1;
}

/* The prefetches of a GEMV loop step reading `step` bytes of each row at byte offset off: one line of each
 * of the next block's rows each time the step starts a new 64-byte line. Always inlined: gcc finds a
 * function of prefetches alone pure, and a pure void call is dead code it deletes before inlining. */
static inline __attribute__((always_inline)) void serl_gemv_prefetch(const char *const *pf, int64_t off, int64_t step) {
    if (!pf || (off & 63) >= step) return;
    for (int q = 0; q < 4; q++) _mm_prefetch(pf[q] + off, _MM_HINT_T1);
}

/* The tile grid of an M×N block (a_panels × b_panels micro-panels, nc columns): ≤ nc_tile columns a
 * tile, then M split until there are about 8 tiles per worker, each M chunk keeping ≥ 4 A panels so
 * that a B slice loaded into L2 serves ≥ 4·MR rows. Where M is too short for that (a weight gradient
 * of 256 rows: 5 tiles for 2 workers, one idle a sixth of the time), N is cut finer, to ≥ 2 B panels a
 * tile, until there are 4 tiles a worker: 256×256×2048 dyᵀ·x went from 117-143 to 143-183 GFLOP/s on
 * 2 cores. Never fewer tiles than workers where the panels allow. */
static inline void serl_gemm_tiles(int64_t nc, int64_t nc_tile, int64_t a_panels, int64_t b_panels, int64_t threads,
                                   int64_t *mt_out, int64_t *nt_out) {
    int64_t nt = ceil_div(nc, nc_tile);
    if (nt > b_panels) nt = b_panels;
    int64_t mt = threads > 1 ? ceil_div(8 * threads, nt) : 1;
    if (mt > a_panels / 4) mt = a_panels / 4;
    if (mt < 1) mt = 1;
    if (threads > 1 && mt * nt < 4 * threads) {
        int64_t want = ceil_div(4 * threads, mt), most = b_panels / 2;
        if (want > most) want = most;
        if (want > nt) nt = want;
    }
    if (mt * nt < threads) {
        mt = a_panels < threads ? a_panels : threads;
        nt = b_panels < threads ? b_panels : threads;
    }
    *mt_out = mt;
    *nt_out = nt;
}

#endif
