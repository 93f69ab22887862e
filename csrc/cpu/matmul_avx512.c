/* AVX-512 microkernel of serl_matmul (driver, packing and the AVX2 paths are in matmul.c).
 *
 * 12×32: 24 zmm accumulators (12 rows × 2 vectors of 16 columns), 2 zmm for the B row and one broadcast,
 * 27 of 32 registers. Per k step: 2 loads of packed B, 12 broadcasts of packed A, 24 FMAs — enough
 * independent FMA chains to cover the 4-cycle latency on Zen 4 (double-pumped 512-bit) and Intel alike. */
#include <immintrin.h>

#include "internal.h"
#include "tile_avx512.h"

#define MR 12
#define NR 32

void serl_sgemm_ukr_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                           float beta, int mr, int nr) {
    __m512 c0[MR], c1[MR];
    serl_start_tile_12x32(c, ldc, mr, c0, c1);
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        a += MR;
        b += NR;
    }
    serl_store_tile_12x32(c, ldc, alpha, beta, mr, nr, c0, c1);
}

/* ------------------------------------------------------------------------- x·Wᵀ for few rows
 *
 * C[mr×nr] = alpha·X[mr×kc]·P + beta·C with X unpacked (row stride ldx, broadcast straight from its rows)
 * and P a W panel packed k-major (kc × 32, zero-padded lanes). The row count is a compile-time constant
 * of each instance (1..12), so the driver can split m into near-equal blocks with no wasted rows. */
static inline __attribute__((always_inline)) void xwt_block(const int R, int64_t kc, const float *x, int64_t ldx,
                                                            const float *b, float *c, int64_t ldc, float alpha,
                                                            float beta, int nr) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512 av = _mm512_set1_ps(x[i * ldx + p]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        b += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : (__mmask16)((1u << (nr - 16)) - 1);
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
        if (beta != 0.0f) { /* beta == 0 never reads C */
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

void serl_xwt_avx512(int64_t kc, const float *x, int64_t ldx, int mr, const float *b, float *c, int64_t ldc,
                     float alpha, float beta, int nr) {
    switch (mr) {
#define CASE(R) \
    case R: xwt_block(R, kc, x, ldx, b, c, ldc, alpha, beta, nr); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    default: break;
    }
}

/* ------------------------------------------------------------------------- GEMV for m ≤ GEMV_MAX_M
 *
 * C = alpha·X·Wᵀ + beta·C with W streamed once (matmul.c's gemv path): register blocks of 4 W rows ×
 * NI ≤ 4 x rows, dot products along k in 16 lanes (the k tail masked), 16 zmm accumulators — the AVX2
 * version's 16 ymm accumulators plus its operands spill past 16 registers; here 21 of 32 are used. */
static inline __attribute__((always_inline)) void gemv_block16(const int NI, int64_t k, const float *const *x,
                                                               const float *const *w, float alpha, float beta,
                                                               float *c, int64_t ldc, int nj) {
    const int64_t k16 = k & ~(int64_t)15;
    const __mmask16 tm = (__mmask16)((1u << (k - k16)) - 1);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < NI; i++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[i][q] = _mm512_setzero_ps();
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    for (int64_t p = 0; p < k16; p += 16) {
        __m512 vw0 = _mm512_loadu_ps(w0 + p), vw1 = _mm512_loadu_ps(w1 + p);
        __m512 vw2 = _mm512_loadu_ps(w2 + p), vw3 = _mm512_loadu_ps(w3 + p);
#pragma GCC unroll 4
        for (int i = 0; i < NI; i++) {
            __m512 vx = _mm512_loadu_ps(x[i] + p);
            acc[i][0] = _mm512_fmadd_ps(vx, vw0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(vx, vw1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(vx, vw2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(vx, vw3, acc[i][3]);
        }
    }
    if (tm) {
        __m512 vw0 = _mm512_maskz_loadu_ps(tm, w0 + k16), vw1 = _mm512_maskz_loadu_ps(tm, w1 + k16);
        __m512 vw2 = _mm512_maskz_loadu_ps(tm, w2 + k16), vw3 = _mm512_maskz_loadu_ps(tm, w3 + k16);
#pragma GCC unroll 4
        for (int i = 0; i < NI; i++) {
            __m512 vx = _mm512_maskz_loadu_ps(tm, x[i] + k16);
            acc[i][0] = _mm512_fmadd_ps(vx, vw0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(vx, vw1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(vx, vw2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(vx, vw3, acc[i][3]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NI; i++) {
        float v[4], *ci = c + i * ldc;
        _mm_storeu_ps(v, serl_gemv_sums4(acc[i]));
        for (int q = 0; q < nj; q++) ci[q] = beta == 0.0f ? alpha * v[q] : alpha * v[q] + beta * ci[q];
    }
}

/* Rows [j0, j1) of W against all m rows of x, as matmul.c's gemv_rows_avx2: blocks of 4 W rows (L1
 * resident) × up to 4 x rows, a partial W block repeating its last row, computed but not stored. */
void serl_gemv_rows_avx512(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const float *W,
                           int64_t ldw, float beta, float *C, int64_t ldc, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j += 4) {
        const int nj = (int)(j1 - j < 4 ? j1 - j : 4);
        const float *w[4];
        for (int q = 0; q < 4; q++) w[q] = W + (j + (q < nj ? q : nj - 1)) * ldw;
        for (int64_t i = 0; i < m; i += 4) {
            const int ni = (int)(m - i < 4 ? m - i : 4);
            const float *x[4] = {X + i * ldx, X + (i + 1) * ldx, X + (i + 2) * ldx, X + (i + 3) * ldx};
            float *c = C + i * ldc + j;
            switch (ni) {
            case 1: gemv_block16(1, k, x, w, alpha, beta, c, ldc, nj); break;
            case 2: gemv_block16(2, k, x, w, alpha, beta, c, ldc, nj); break;
            case 3: gemv_block16(3, k, x, w, alpha, beta, c, ldc, nj); break;
            default: gemv_block16(4, k, x, w, alpha, beta, c, ldc, nj); break;
            }
        }
    }
}
