/* AVX-512 BF16 microkernel of the bf16 matrix product (driver and packing in matmul_bf16.c).
 *
 * 12×32 like the float32 kernel, but each k step is a PAIR of k: vdpbf16ps multiplies 16 lanes of bf16
 * pairs and adds both products into float32 lanes, twice the multiply-adds of an FMA per instruction.
 * A is packed as MR 32-bit pairs per k-pair (broadcast to every lane), B as NR 32-bit pairs per k-pair
 * (two zmm). C is float32; the driver rounds a bf16 C once, after the whole depth.
 * Like the instruction itself, products of subnormal bf16 values count as zero. */
#include <immintrin.h>

#include "internal.h"
#include "gemm_sched.h"
#include "tile_avx512.h"

#define MR 12
#define NR 32

/* The first R rows of a 12-row panel, R = 4, 8 or 12 (SERL_TILE_BY_ROWS picks it; the same bits
 * whichever runs). */
static inline __attribute__((always_inline)) void bgemm_tile(const int R, int64_t kp, const uint32_t *a,
                                                             const uint32_t *b, float *c, int64_t ldc, float alpha,
                                                             float beta, int mr, int nr) {
    __m512 c0[MR], c1[MR];
    serl_start_tile_12x32(c, ldc, mr, c0, c1);
#pragma GCC unroll 2
    for (int64_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b), b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
        a += MR;
        b += NR;
    }
    serl_store_tile_12x32(c, ldc, alpha, beta, mr, nr, c0, c1);
}

void serl_bgemm_ukr_avx512bf16(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, float alpha,
                               float beta, int mr, int nr) {
    SERL_TILE_BY_ROWS(mr, bgemm_tile, kp, a, b, c, ldc, alpha, beta, mr, nr);
}

/* ------------------------------------------------------------------------- GEMV on pairs
 *
 * C = alpha·X·Wᵀ + beta·C for few rows of bf16 x against bf16 W (generation in bf16): W streamed once,
 * straight from its rows — consecutive k of a row are already the instruction's pairs, so nothing is
 * packed or widened. Register blocks of 4 W rows × NI ≤ 4 x rows, 32 k per instruction (the tail read
 * with a mask, zeros beyond it), 16 zmm accumulators; float32 sums, C rounded once when it is bf16. */
static inline __attribute__((always_inline)) void dpgemv_block(const int NI, int64_t k, const uint16_t *const *x,
                                                               const uint16_t *const *w, float alpha, float beta,
                                                               void *C, int32_t c_dtype, int64_t off, int64_t ldc,
                                                               int nj, const char *const *pf) {
    const int64_t k32 = k & ~(int64_t)31;
    const __mmask32 tm = (__mmask32)((1ull << (k - k32)) - 1);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < NI; i++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[i][q] = _mm512_setzero_ps();
    const uint16_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    for (int64_t p = 0; p < k32; p += 32) {
        serl_gemv_prefetch(pf, 2 * p, 64);
        __m512bh vw0 = (__m512bh)_mm512_loadu_si512(w0 + p), vw1 = (__m512bh)_mm512_loadu_si512(w1 + p);
        __m512bh vw2 = (__m512bh)_mm512_loadu_si512(w2 + p), vw3 = (__m512bh)_mm512_loadu_si512(w3 + p);
#pragma GCC unroll 4
        for (int i = 0; i < NI; i++) {
            __m512bh vx = (__m512bh)_mm512_loadu_si512(x[i] + p);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], vx, vw0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], vx, vw1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], vx, vw2);
            acc[i][3] = _mm512_dpbf16_ps(acc[i][3], vx, vw3);
        }
    }
    if (tm) {
        __m512bh vw0 = (__m512bh)_mm512_maskz_loadu_epi16(tm, w0 + k32), vw1 = (__m512bh)_mm512_maskz_loadu_epi16(tm, w1 + k32);
        __m512bh vw2 = (__m512bh)_mm512_maskz_loadu_epi16(tm, w2 + k32), vw3 = (__m512bh)_mm512_maskz_loadu_epi16(tm, w3 + k32);
#pragma GCC unroll 4
        for (int i = 0; i < NI; i++) {
            __m512bh vx = (__m512bh)_mm512_maskz_loadu_epi16(tm, x[i] + k32);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], vx, vw0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], vx, vw1);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], vx, vw2);
            acc[i][3] = _mm512_dpbf16_ps(acc[i][3], vx, vw3);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NI; i++) {
        float v[4];
        _mm_storeu_ps(v, serl_gemv_sums4(acc[i]));
        const int64_t o = off + i * ldc;
        for (int q = 0; q < nj; q++) {
            float y = alpha * v[q];
            if (beta != 0.0f) y += beta * serl_ld(C, c_dtype, o + q);
            serl_st(C, c_dtype, o + q, y);
        }
    }
}

/* Rows [j0, j1) of W against all m rows of x (C element [i, j] at C + i·ldc + j, float32 or bf16): blocks
 * of 4 W rows (L1 resident) × up to 4 x rows, a partial W block repeating its last row, computed but not
 * stored. */
void serl_dpgemv_rows_avx512bf16(int64_t m, int64_t k, float alpha, const uint16_t *X, int64_t ldx, const uint16_t *W,
                                 int64_t ldw, float beta, void *C, int32_t c_dtype, int64_t ldc, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j += 4) {
        const int nj = (int)(j1 - j < 4 ? j1 - j : 4);
        const uint16_t *w[4];
        for (int q = 0; q < 4; q++) w[q] = W + (j + (q < nj ? q : nj - 1)) * ldw;
        const char *next[4];
        const int more = serl_gemv_next(next, W, ldw, sizeof(uint16_t), j, j1);
        for (int64_t i = 0; i < m; i += 4) {
            const int ni = (int)(m - i < 4 ? m - i : 4);
            const uint16_t *x[4] = {X + i * ldx, X + (i + 1) * ldx, X + (i + 2) * ldx, X + (i + 3) * ldx};
            const int64_t off = i * ldc + j;
            const char *const *pf = more && i == 0 ? next : NULL;
            switch (ni) {
            case 1: dpgemv_block(1, k, x, w, alpha, beta, C, c_dtype, off, ldc, nj, pf); break;
            case 2: dpgemv_block(2, k, x, w, alpha, beta, C, c_dtype, off, ldc, nj, pf); break;
            case 3: dpgemv_block(3, k, x, w, alpha, beta, C, c_dtype, off, ldc, nj, pf); break;
            default: dpgemv_block(4, k, x, w, alpha, beta, C, c_dtype, off, ldc, nj, pf); break;
            }
        }
    }
}
