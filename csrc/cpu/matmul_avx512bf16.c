/* AVX-512 BF16 microkernel of the bf16 matrix product (driver and packing in matmul_bf16.c).
 *
 * 12×32 like the float32 kernel, but each k step is a PAIR of k: vdpbf16ps multiplies 16 lanes of bf16
 * pairs and adds both products into float32 lanes, twice the multiply-adds of an FMA per instruction.
 * A is packed as MR 32-bit pairs per k-pair (broadcast to every lane), B as NR 32-bit pairs per k-pair
 * (two zmm). C is float32; the driver rounds a bf16 C once, after the whole depth.
 * Like the instruction itself, products of subnormal bf16 values count as zero. */
#include <immintrin.h>

#include "internal.h"

#define MR 12
#define NR 32

void serl_bgemm_ukr_avx512bf16(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, float alpha,
                               float beta, int mr, int nr) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int64_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b), b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
        a += MR;
        b += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (mr == MR && nr == NR) {
        if (beta == 0.0f) {
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, c0[i]));
                _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, c1[i]));
            }
        } else {
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                float *ci = c + i * ldc;
                _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), _mm512_mul_ps(va, c0[i])));
                _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), _mm512_mul_ps(va, c1[i])));
            }
        }
        return;
    }
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : (__mmask16)((1u << (nr - 16)) - 1);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        float *ci = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}
