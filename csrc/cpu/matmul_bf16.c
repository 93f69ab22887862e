/* serl_matmul with bf16 A and B on CPUs with AVX-512 BF16: the blocked product of gemm_driver.c (the
 * float32 product's blocking, counted in packed bytes; on-demand shared packing; C tiles as tasks), over
 * k-PAIRS. Packing puts two consecutive k of a row or column into one 32-bit word, so the microkernel
 * (matmul_avx512bf16.c) feeds vdpbf16ps directly: A panels hold MR pairs per k-pair, B panels NR pairs
 * per k-pair, an odd last k paired with zero. Packing bf16 moves half the bytes of float32 and the kernel
 * does twice the multiply-adds per instruction, which is where the speed comes from.
 *
 * Accumulation is float32 over the whole depth: a bf16 C is computed into a float32 copy and rounded
 * once at the end (never once per K slice). */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_driver.h"
#include "gemm_sched.h"
#include "internal.h"

#define MR 12
#define NR 32

void serl_bgemm_ukr_avx512bf16(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, float alpha,
                               float beta, int mr, int nr);


/* ------------------------------------------------------------------------- packing */

/* Lane r (< rv) of the panel is src[r·ld + p], contiguous along p: pairs are 32-bit words of the source
 * rows, so the panel is a 32-bit transpose (matmul.c's) when rows are 4-byte aligned. */
static void pack_pairs_rows(uint32_t *dst, const uint16_t *src, int64_t ld, int R, int rv, int64_t kc) {
    const int64_t kp = kc / 2;
    if (kp > 0 && (ld & 1) == 0 && ((uintptr_t)src & 3) == 0) {
        serl_pack_t32((float *)dst, (const float *)src, ld / 2, R, rv, kp);
    } else {
        for (int64_t q = 0; q < kp; q++)
            for (int r = 0; r < R; r++)
                dst[q * R + r] = r < rv ? (uint32_t)src[r * ld + 2 * q] | (uint32_t)src[r * ld + 2 * q + 1] << 16 : 0;
    }
    if (kc & 1)
        for (int r = 0; r < R; r++) dst[kp * R + r] = r < rv ? (uint32_t)src[r * ld + kc - 1] : 0;
}

/* Lane j (< rv) at k-index p is src[p·ld + j], contiguous along j: pairs interleave two source rows. */
static void pack_pairs_interleave(uint32_t *dst, const uint16_t *src, int64_t ld, int R, int rv, int64_t kc) {
    for (int64_t q = 0; q < (kc + 1) / 2; q++) {
        const uint16_t *r0 = src + 2 * q * ld, *r1 = 2 * q + 1 < kc ? r0 + ld : NULL;
        uint32_t *d = dst + q * R;
        int j = 0;
        if (r1)
            for (; j + 8 <= rv; j += 8) {
                __m128i x = _mm_loadu_si128((const __m128i *)(r0 + j)), y = _mm_loadu_si128((const __m128i *)(r1 + j));
                _mm_storeu_si128((__m128i *)(d + j), _mm_unpacklo_epi16(x, y));
                _mm_storeu_si128((__m128i *)(d + j + 4), _mm_unpackhi_epi16(x, y));
            }
        if (r1 && j + 4 <= rv) { /* an A panel's last 4 of 12 rows */
            __m128i x = _mm_loadl_epi64((const __m128i *)(r0 + j)), y = _mm_loadl_epi64((const __m128i *)(r1 + j));
            _mm_storeu_si128((__m128i *)(d + j), _mm_unpacklo_epi16(x, y));
            j += 4;
        }
        for (; j < rv; j++) d[j] = (uint32_t)r0[j] | (r1 ? (uint32_t)r1[j] << 16 : 0);
        for (; j < R; j++) d[j] = 0;
    }
}

/* ------------------------------------------------------------------------- kernel of the blocked driver */

/* serl_gemm_pack_fn: panels of k-pairs, a 32-bit word per lane and pair. */
static void pack_pairs(void *dst, const serl_gemm_operand *o, int64_t lane0, int64_t pc, int R, int rv, int64_t kc) {
    const uint16_t *s = o->ptr;
    if (o->along_k)
        pack_pairs_rows(dst, s + lane0 * o->ld + pc, o->ld, R, rv, kc);
    else
        pack_pairs_interleave(dst, s + pc * o->ld + lane0, o->ld, R, rv, kc);
}

/* serl_gemm_ukr_fn: the driver counts depth in k, the kernel in pairs (an odd last k pairs with zero). */
static void ukr_pairs(int64_t kc, const void *a, const void *b, float *c, int64_t ldc, float alpha, float beta,
                      int mr, int nr) {
    serl_bgemm_ukr_avx512bf16((kc + 1) / 2, a, b, c, ldc, alpha, beta, mr, nr);
}

/* Two bytes per k element (a pair per 32-bit word); slices start on a pair. */
static const serl_gemm_kernel kern_pairs = {.mr = MR, .nr = NR, .elt_bytes = sizeof(uint16_t), .kc_even = 1,
                                            .pack = pack_pairs, .ukr = ukr_pairs};

/* ------------------------------------------------------------------------- entry (from serl_matmul) */

/* Validated args with bf16 A and B, k > 0 and alpha ≠ 0, on an AVX-512 BF16 context. */
int32_t serl_matmul_bf16(serl_ctx *ctx, const serl_matmul_args *a) {
    const size_t csz = (size_t)serl_dtype_size(a->c_dtype);
    for (int64_t b = 0; b < a->batch; b++) {
        const uint16_t *A = (const uint16_t *)a->a + b * a->stride_a, *B = (const uint16_t *)a->b + b * a->stride_b;
        if (serl_gemm_blocked(ctx, &kern_pairs, a->trans_a, a->trans_b, a->m, a->n, a->k, a->alpha, A, SERL_DTYPE_BF16,
                              a->lda, B, SERL_DTYPE_BF16, a->ldb, a->beta, (char *)a->c + (size_t)(b * a->stride_c) * csz,
                              a->c_dtype, a->ldc) != 0)
            return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for packing buffers");
    }
    return SERL_OK;
}

/* ------------------------------------------------------------------------- x·Wᵀ with bf16 W, few rows */

/* Generation streams every weight once per token, so a bf16 W halves the bytes. With bf16 x on AVX-512
 * BF16 the pair GEMV (matmul_avx512bf16.c) multiplies the rows as they are. Otherwise W rows are widened
 * in registers (8 bf16 → 8 float32) and multiplied with float32 rows of x (widened once per call when x
 * is bf16); with more than 4 rows of x, each block of 4 W rows is widened once into the worker's scratch
 * (L1/L2) and serves every block of x from there, so the conversion is not repeated per x block. Blocks
 * of 4 W rows × ≤ 4 x rows (≤ 2 on AVX2 with W widened in registers), dot products along k, the k tail
 * with a zero-filled copy. */

static inline __m256 ld8w(const uint16_t *w) { return serl_bf16x8_to_f32(_mm_loadu_si128((const __m128i *)w)); }

/* 8 weights at element p of row w: bf16 widened in registers, or float32 widened beforehand. */
static inline __attribute__((always_inline)) __m256 ld8(const void *w, int wide, int64_t p) {
    return wide ? _mm256_loadu_ps((const float *)w + p) : ld8w((const uint16_t *)w + p);
}

static inline __m128 hsum4x8(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

typedef struct {
    int64_t m, n, k, ldx, ldw, ldc, parts;
    float alpha, beta;
    const float *X;    /* float32 rows, stride ldx */
    const uint16_t *W; /* bf16 rows, stride ldw */
    void *C;
    int32_t c_dtype;
    float *wide[SERL_MAX_THREADS]; /* per worker: 4 W rows in float32 (m > 4 only) */
    int avx512;                    /* the same on 16 lanes (matmul_avx512.c) */
} bgemv_job;

/* The AVX-512 widening GEMV (matmul_avx512.c): rows [j0, j1) of bf16 W, the same blocking on 16 lanes. */
void serl_bgemv_rows_avx512(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const uint16_t *W,
                            int64_t ldw, float beta, void *C, int32_t c_dtype, int64_t ldc, int64_t j0, int64_t j1,
                            float *wide);

/* w[q] are bf16 rows, or float32 rows when wide; pf: the next block's bf16 rows (serl_gemv_next) or NULL. */
static inline __attribute__((always_inline)) void bgemv_block(int NI, int wide, const bgemv_job *g,
                                                              const float *const *x, const void *const *w, int64_t i,
                                                              int64_t j, int nj, const char *const *pf) {
    const int64_t k = g->k, k8 = k & ~(int64_t)7;
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NI; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = _mm256_setzero_ps();
    for (int64_t p = 0; p < k8; p += 8) {
        serl_gemv_prefetch(pf, 2 * p, 16);
        __m256 w0 = ld8(w[0], wide, p), w1 = ld8(w[1], wide, p), w2 = ld8(w[2], wide, p), w3 = ld8(w[3], wide, p);
#pragma GCC unroll 4
        for (int r = 0; r < NI; r++) {
            __m256 xv = _mm256_loadu_ps(x[r] + p);
            acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(xv, w2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_ps(xv, w3, acc[r][3]);
        }
    }
    if (k8 < k) {
        int tail = (int)(k - k8);
        float wt[4][8] = {{0}}, xt[8] = {0};
        for (int q = 0; q < 4; q++)
            for (int e = 0; e < tail; e++)
                wt[q][e] = wide ? ((const float *)w[q])[k8 + e] : serl_bf16_to_f32(((const uint16_t *)w[q])[k8 + e]);
        __m256 w0 = _mm256_loadu_ps(wt[0]), w1 = _mm256_loadu_ps(wt[1]), w2 = _mm256_loadu_ps(wt[2]), w3 = _mm256_loadu_ps(wt[3]);
        for (int r = 0; r < NI; r++) {
            memcpy(xt, x[r] + k8, sizeof(float) * (size_t)tail);
            __m256 xv = _mm256_loadu_ps(xt);
            acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
            acc[r][2] = _mm256_fmadd_ps(xv, w2, acc[r][2]);
            acc[r][3] = _mm256_fmadd_ps(xv, w3, acc[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NI; r++) {
        float v[4];
        _mm_storeu_ps(v, hsum4x8(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
        int64_t off = (i + r) * g->ldc + j;
        for (int q = 0; q < nj; q++) {
            float y = g->alpha * v[q];
            if (g->beta != 0.0f) y += g->beta * serl_ld(g->C, g->c_dtype, off + q);
            serl_st(g->C, g->c_dtype, off + q, y);
        }
    }
}

static void bgemv_task(void *arg, int64_t t, int worker) {
    const bgemv_job *g = arg;
    int64_t lo, hi;
    if (!serl_gemv_rows(g->n, g->parts, t, &lo, &hi)) return;
    float *wf = g->wide[worker];
    if (g->avx512) {
        serl_bgemv_rows_avx512(g->m, g->k, g->alpha, g->X, g->ldx, g->W, g->ldw, g->beta, g->C, g->c_dtype, g->ldc, lo, hi, wf);
        return;
    }
    for (int64_t j = lo; j < hi; j += 4) {
        int nj = (int)(hi - j < 4 ? hi - j : 4);
        const void *w[4];
        for (int q = 0; q < 4; q++) w[q] = g->W + (j + (q < nj ? q : nj - 1)) * g->ldw;
        const char *next[4];
        const int more = serl_gemv_next(next, g->W, g->ldw, sizeof(uint16_t), j, hi);
        if (wf) {
            for (int q = 0; q < 4; q++) {
                serl_bf16_to_f32_n(wf + q * g->k, (const uint16_t *)w[q], g->k);
                w[q] = wf + q * g->k;
            }
        }
        /* x rows a block: with W widened in registers, 2 on AVX2's 16 ymm registers (a 4-row block's 16
         * accumulators and 4 W vectors spilled: 4×768×768 took 81-83 µs, against 69-71 in 2-row blocks
         * and 78-79 in f32, on one core) */
        const int rows = wf ? 4 : 2;
        for (int64_t i = 0; i < g->m; i += rows) {
            int ni = (int)(g->m - i < rows ? g->m - i : rows);
            const float *x[4];
            for (int r = 0; r < 4; r++) x[r] = g->X + (i + (r < ni ? r : 0)) * g->ldx;
            const char *const *pf = more && i == 0 ? next : NULL;
#define BLOCK(NI)                                                 \
    if (wf)                                                       \
        bgemv_block(NI, 1, g, x, w, i, j, nj, pf);                \
    else                                                          \
        bgemv_block(NI, 0, g, x, w, i, j, nj, pf);
            switch (ni) {
            case 1: BLOCK(1) break;
            case 2: BLOCK(2) break;
            case 3: BLOCK(3) break;
            default: BLOCK(4) break;
            }
#undef BLOCK
        }
    }
}

/* bf16 x and W on AVX-512 BF16: the pair GEMV (matmul_avx512bf16.c), from W's rows as they are. */
void serl_dpgemv_rows_avx512bf16(int64_t m, int64_t k, float alpha, const uint16_t *X, int64_t ldx, const uint16_t *W,
                                 int64_t ldw, float beta, void *C, int32_t c_dtype, int64_t ldc, int64_t j0, int64_t j1);

typedef struct {
    const serl_matmul_args *a;
    int64_t b, parts;  /* the matrix of the batch */
    const uint16_t *w; /* its W rows: B, or B transposed (x·W) */
    int64_t ldw;
    int skinny; /* tasks take chunks of x's rows (serl_skinny_parts) against all of W, not rows of W against all of x */
} dpgemv_job;

static void dpgemv_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const dpgemv_job *g = arg;
    const serl_matmul_args *a = g->a;
    const size_t cs = serl_dtype_size(a->c_dtype);
    const uint16_t *X = (const uint16_t *)a->a + g->b * a->stride_a;
    char *C = (char *)a->c + (size_t)(g->b * a->stride_c) * cs;
    if (g->skinny) {
        int64_t lo, hi;
        serl_chunk(a->m, g->parts, t, &lo, &hi);
        serl_dpgemv_rows_avx512bf16(hi - lo, a->k, a->alpha, X + lo * a->lda, a->lda, g->w, g->ldw, a->beta,
                                    C + (size_t)(lo * a->ldc) * cs, a->c_dtype, a->ldc, 0, a->n);
        return;
    }
    int64_t lo, hi;
    if (serl_gemv_rows(a->n, g->parts, t, &lo, &hi))
        serl_dpgemv_rows_avx512bf16(a->m, a->k, a->alpha, X, a->lda, g->w, g->ldw, a->beta, C, a->c_dtype, a->ldc, lo, hi);
}

/* Validated args with !trans_a, bf16 B, k > 0, alpha ≠ 0, and trans_b with m ≤ 32 (bf16 A on AVX-512 BF16)
 * or 16, or n ≤ SKINNY_MAX_N and m ≤ 128; on AVX-512 BF16 with bf16 A also n ≤ SKINNY_MAX_N with any m,
 * B transposed or not. */
int32_t serl_matmul_bf16_gemv(serl_ctx *ctx, const serl_matmul_args *a) {
    const int64_t m = a->m, n = a->n, k = a->k;
    if (a->a_dtype == SERL_DTYPE_BF16 && ctx->simd >= SERL_SIMD_AVX512BF16) {
        uint16_t *wt = NULL; /* B [k, n] transposed into W rows */
        if (!a->trans_b && !(wt = serl_scratch(ctx, 0, sizeof(uint16_t) * (size_t)(n * k))))
            return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory transposing W");
        for (int64_t b = 0; b < a->batch; b++) {
            dpgemv_job g = {a, b, serl_gemv_parts(ctx->threads, n, k), (const uint16_t *)a->b + b * a->stride_b, a->ldb,
                            n <= SKINNY_MAX_N};
            if (wt) {
                for (int64_t p = 0; p < k; p++)
                    for (int64_t j = 0; j < n; j++) wt[j * k + p] = g.w[p * a->ldb + j];
                g.w = wt, g.ldw = k;
            }
            if (g.skinny) g.parts = serl_skinny_parts(ctx->threads, m);
            serl_parallel(ctx, g.parts, dpgemv_task, &g);
        }
        return SERL_OK;
    }
    float *xw = NULL;
    if (a->a_dtype == SERL_DTYPE_BF16) {
        xw = serl_scratch_shared(ctx, sizeof(float) * (size_t)(m * k)); /* C is written in place: its scratch is free */
        if (!xw) return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory widening x");
    }
    float *wide[SERL_MAX_THREADS] = {NULL};
    if (m > 4)
        for (int w = 0; w < ctx->threads; w++)
            if (!(wide[w] = serl_scratch(ctx, w, sizeof(float) * 4 * (size_t)k)))
                return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory widening W rows");
    for (int64_t b = 0; b < a->batch; b++) {
        bgemv_job g = {.m = m, .n = n, .k = k, .ldx = a->lda, .ldw = a->ldb, .ldc = a->ldc, .parts = 1, .wide = {NULL},
                       .alpha = a->alpha, .beta = a->beta, .W = (const uint16_t *)a->b + b * a->stride_b,
                       .C = (char *)a->c + (size_t)(b * a->stride_c) * serl_dtype_size(a->c_dtype), .c_dtype = a->c_dtype,
                       .avx512 = ctx->simd >= SERL_SIMD_AVX512};
        if (xw) {
            for (int64_t i = 0; i < m; i++)
                serl_bf16_to_f32_n(xw + i * k, (const uint16_t *)a->a + b * a->stride_a + i * a->lda, k);
            g.X = xw, g.ldx = k;
        } else {
            g.X = (const float *)a->a + b * a->stride_a;
        }
        memcpy(g.wide, wide, sizeof wide);
        g.parts = serl_gemv_parts(ctx->threads, n, k);
        serl_parallel(ctx, g.parts, bgemv_task, &g);
    }
    return SERL_OK;
}
