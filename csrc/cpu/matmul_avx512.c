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
