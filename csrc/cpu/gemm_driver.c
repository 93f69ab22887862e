/* The blocked driver of gemm_driver.h, BLIS/GotoBLAS style: A is packed into MR-row panels and B into
 * NR-column panels (packing absorbs the transposes, so the microkernel sees one layout), K is cut into
 * KC slices, M into MC blocks and N into NC blocks. The packed A and B blocks are shared by all workers
 * and packed on demand, panel by panel, by the first task that needs one (gemm_sched.h). Tasks are C
 * tiles, each a range of A panels × a range of ≤ NC_TILE columns looping over the K slices, so that its B
 * slice (KC×NC_TILE) stays in the worker's L2 while each A micro-panel (MR×KC) stays in L1. Edge tiles
 * are computed in full against zero-padded panels; the microkernel writes back only their valid part.
 *
 * A bf16 C is summed in a float32 block [MC, NC] (24 MiB at most) that each tile widens its rows of C
 * into at its first K slice (when beta ≠ 0) and rounds them back from at its last: the bits of one float32
 * C rounded at the end, which is what the callers held before, at [m, n] (537 MB for the logits of a
 * chunk of 883 tokens against Qwen2.5's vocabulary, outside every memory plan). */
#include <stdatomic.h>

#include "gemm_driver.h"
#include "gemm_sched.h"

/* Blocking for AMD EPYC (Zen 4): 32 KiB L1d and 1 MiB L2 per core, 32 MiB shared L3. Depths are in packed
 * bytes per lane, so float32 and bf16 panels block alike. */
#define KC_BYTES 1536 /* a K slice: KC = 384 float32 or 768 bf16 (384 pairs); an A micro-panel of 12 rows is
                       * 18 KiB, L1 resident */
#define MC 1536     /* rows of the shared packed A block (2.3 MiB, L3) */
#define NC 4096     /* columns of the shared packed B block (6 MiB, L3) */
#define PACK_BUDGET (32 << 20) /* bytes of packed A and B per parallel call (K slices in a group) */
#define NC_TILE 256 /* columns of a C tile: its B slice KC×NC_TILE (384 KiB) stays in the worker's L2 */

typedef struct {
    const serl_gemm_kernel *kern;
    serl_gemm_operand a, b;
    int64_t k, ldc;
    float alpha, beta;
    void *C;
    float *cblk; /* a bf16 C's float32 block, row stride ldcb; NULL for a float32 C */
    int64_t ldcb;
    /* the current block: columns [jc, jc+nc), rows [ic, ic+mc), slices s0..s0+ns-1 of depth kc_blk */
    int64_t jc, nc, ic, mc, kc_blk, s0, ns;
    char *apack, *bpack;              /* slice s, panel q at (s·panels + q)·apanel (resp. bpanel) bytes */
    int64_t apanel, bpanel;           /* bytes of a packed panel slice: MR·kc_blk·elt_bytes (resp. NR) */
    _Atomic int *aflag, *bflag;       /* [ns · panels] */
    int64_t a_panels, b_panels, mt, nt;
} gemm_job;

/* Makes sure panel q of slice s (relative to the group) is packed: packs it here or waits for the
 * worker that is packing it. */
static void ensure_panel(const gemm_job *j, int is_b, int64_t s, int64_t q) {
    int64_t panels = is_b ? j->b_panels : j->a_panels;
    _Atomic int *f = (is_b ? j->bflag : j->aflag) + s * panels + q;
    if (serl_panel_claim(f)) {
        int64_t pc = (j->s0 + s) * j->kc_blk;
        int64_t kc = j->k - pc < j->kc_blk ? j->k - pc : j->kc_blk;
        const int R = is_b ? j->kern->nr : j->kern->mr;
        int64_t lane0 = q * R, lanes = is_b ? j->nc : j->mc;
        int rv = (int)(lanes - lane0 < R ? lanes - lane0 : R);
        if (is_b)
            j->kern->pack(j->bpack + (s * panels + q) * j->bpanel, &j->b, j->jc + lane0, pc, R, rv, kc);
        else
            j->kern->pack(j->apack + (s * panels + q) * j->apanel, &j->a, j->ic + lane0, pc, R, rv, kc);
        serl_panel_publish(f);
    }
}

/* Rows [ir, ir+mr) of the current block, columns [c0, c1) (block-relative), between C and the float32
 * block of a bf16 C: widened into it (to_block) or rounded back. */
static void block_rows(const gemm_job *j, int to_block, int64_t ir, int mr, int64_t c0, int64_t c1) {
    for (int64_t i = ir; i < ir + mr; i++) {
        uint16_t *c = (uint16_t *)j->C + (j->ic + i) * j->ldc + j->jc + c0;
        float *b = j->cblk + i * j->ldcb + c0;
        if (to_block)
            serl_bf16_to_f32_n(b, c, c1 - c0);
        else
            serl_f32_to_bf16_n(c, b, c1 - c0);
    }
}

static void tile_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const gemm_job *j = arg;
    const int MR = j->kern->mr, NR = j->kern->nr;
    const serl_gemm_ukr_fn ukr = j->kern->ukr;
    int64_t alo, ahi, blo, bhi;
    /* consecutive tasks take different A chunks, so concurrent workers mostly pack different panels */
    serl_chunk(j->a_panels, j->mt, t % j->mt, &alo, &ahi);
    serl_chunk(j->b_panels, j->nt, t / j->mt, &blo, &bhi);
    for (int64_t s = 0; s < j->ns; s++) {
        int64_t pc = (j->s0 + s) * j->kc_blk;
        int64_t kc = j->k - pc < j->kc_blk ? j->k - pc : j->kc_blk;
        float beta = pc == 0 ? j->beta : 1.0f;
        const int64_t c0 = blo * NR, c1 = bhi * NR < j->nc ? bhi * NR : j->nc; /* the tile's columns */
        for (int64_t r = blo; r < bhi; r++) ensure_panel(j, 1, s, r);
        for (int64_t q = alo; q < ahi; q++) {
            ensure_panel(j, 0, s, q);
            int64_t ir = q * MR;
            int mr = (int)(j->mc - ir < MR ? j->mc - ir : MR);
            const char *ap = j->apack + (s * j->a_panels + q) * j->apanel;
            float *crow = j->cblk ? j->cblk + ir * j->ldcb : (float *)j->C + (j->ic + ir) * j->ldc + j->jc;
            const int64_t ldc = j->cblk ? j->ldcb : j->ldc;
            if (j->cblk && pc == 0 && beta != 0.0f) block_rows(j, 1, ir, mr, c0, c1);
            for (int64_t r = blo; r < bhi; r++) {
                int64_t jr = r * NR;
                int nr = (int)(j->nc - jr < NR ? j->nc - jr : NR);
                ukr(kc, ap, j->bpack + (s * j->b_panels + r) * j->bpanel, crow + jr, ldc, j->alpha, beta, mr, nr);
            }
            if (j->cblk && pc + kc == j->k) block_rows(j, 0, ir, mr, c0, c1);
        }
    }
}

int serl_gemm_blocked(serl_ctx *ctx, const serl_gemm_kernel *kern, int ta, int tb, int64_t m, int64_t n, int64_t k,
                      float alpha, const void *A, int32_t a_dt, int64_t lda, const void *B, int32_t b_dt, int64_t ldb,
                      float beta, void *C, int32_t c_dt, int64_t ldc) {
    const int MR = kern->mr, NR = kern->nr;
    const int64_t eb = kern->elt_bytes;
    const int64_t threads = ctx->threads;
    const int64_t mc_max = (MC / MR) * MR;
    int64_t mcap = m < mc_max ? ceil_div(m, MR) * MR : mc_max;
    int64_t ncap = n < NC ? ceil_div(n, NR) * NR : NC;
    /* Split the depth evenly rather than leaving a thin last slice. */
    const int64_t slices = ceil_div(k, KC_BYTES / eb);
    int64_t kc_blk = ceil_div(k, slices);
    if (kern->kc_even) kc_blk += kc_blk & 1;
    /* As many slices per parallel call as fit the packing budget. */
    int64_t group = PACK_BUDGET / ((mcap + ncap) * kc_blk * eb);
    if (group < 1) group = 1;
    if (group > slices) group = slices;
    int64_t max_ap = ceil_div(mcap, MR), max_bp = ceil_div(ncap, NR);
    size_t abytes = (size_t)(group * mcap * kc_blk * eb);
    size_t bbytes = (size_t)(group * ncap * kc_blk * eb);
    size_t fbytes = (size_t)(group * (max_ap + max_bp)) * sizeof(_Atomic int);
    const int cbf = c_dt == SERL_DTYPE_BF16;
    size_t cbytes = cbf ? (size_t)(mcap * ncap) * sizeof(float) : 0;
    abytes = (abytes + 63) & ~(size_t)63;
    bbytes = (bbytes + 63) & ~(size_t)63;
    fbytes = (fbytes + 63) & ~(size_t)63;
    char *buf = serl_scratch(ctx, 0, abytes + bbytes + fbytes + cbytes);
    if (!buf) return -1;
    gemm_job j = {.kern = kern,
                  .a = {.ptr = A, .ld = lda, .dtype = a_dt, .along_k = !ta},
                  .b = {.ptr = B, .ld = ldb, .dtype = b_dt, .along_k = tb},
                  .k = k, .ldc = ldc, .alpha = alpha, .beta = beta, .C = C,
                  .cblk = cbf ? (float *)(buf + abytes + bbytes + fbytes) : NULL, .ldcb = ncap, .kc_blk = kc_blk,
                  .apanel = MR * kc_blk * eb, .bpanel = NR * kc_blk * eb};
    j.apack = buf;
    j.bpack = buf + abytes;
    for (j.jc = 0; j.jc < n; j.jc += NC) {
        j.nc = n - j.jc < NC ? n - j.jc : NC;
        j.b_panels = ceil_div(j.nc, NR);
        for (j.ic = 0; j.ic < m; j.ic += mc_max) {
            j.mc = m - j.ic < mc_max ? m - j.ic : mc_max;
            j.a_panels = ceil_div(j.mc, MR);
            serl_gemm_tiles(j.nc, NC_TILE, j.a_panels, j.b_panels, threads, &j.mt, &j.nt);
            for (j.s0 = 0; j.s0 < slices; j.s0 += group) {
                j.ns = slices - j.s0 < group ? slices - j.s0 : group;
                j.bflag = (_Atomic int *)(buf + abytes + bbytes);
                j.aflag = j.bflag + group * max_bp;
                serl_panel_reset(j.aflag, j.ns * j.a_panels);
                /* With all of K in one group the packed B block outlives the M block: later M blocks
                 * of the same columns reuse it. */
                if (j.ic == 0 || group < slices) serl_panel_reset(j.bflag, j.ns * j.b_panels);
                serl_parallel(ctx, j.mt * j.nt, tile_task, &j);
            }
        }
    }
    return 0;
}
