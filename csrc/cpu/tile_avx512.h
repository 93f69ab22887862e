/* The start and write-back shared by the 12×32 AVX-512 microkernels (matmul_avx512.c's float32 one and
 * matmul_avx512bf16.c's bf16-pair one), and the reduction shared by their GEMVs: include only from files
 * built with AVX-512 flags. Inlined always, so the accumulators stay in registers. */
#ifndef SERL_CPU_TILE_AVX512_H
#define SERL_CPU_TILE_AVX512_H

#include <immintrin.h>
#include <stdint.h>

/* serl_f32_to_bf16 of 16 lanes (dtype.h's rule: round to nearest even, NaN kept quiet; subnormals kept,
 * which vcvtneps2bf16 would flush): one AVX-512 pass where two of serl_f32x8_to_bf16 took twice the
 * instructions. */
static inline __attribute__((always_inline)) __m256i serl_f32x16_to_bf16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7FFF)));
    r = _mm512_srli_epi32(r, 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r); /* every lane is below 2^16: the truncation is exact */
}

/* Calls TILE(R, ...) for the smallest R of 4, 8 and 12 that covers mr rows of a 12-row panel: the
 * microkernels are instantiated for those three row counts, so an edge panel of m % 12 rows pays for the
 * rows it has, not for 12 (m = 256 is 21 panels and 4 rows). */
#define SERL_TILE_BY_ROWS(mr, TILE, ...)         \
    do {                                         \
        if ((mr) > 8)                            \
            TILE(12, __VA_ARGS__);               \
        else if ((mr) > 4)                       \
            TILE(8, __VA_ARGS__);                \
        else                                     \
            TILE(4, __VA_ARGS__);                \
    } while (0)

/* Zeroes the accumulators and prefetches the mr rows of C the tile will write. */
static inline __attribute__((always_inline)) void serl_start_tile_12x32(const float *c, int64_t ldc, int mr, __m512 *c0,
                                                                      __m512 *c1) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
}

/* C[mr×nr] = alpha·acc + beta·C, acc in c0 (columns 0..15) and c1 (16..31) of rows 0..11. */
static inline __attribute__((always_inline)) void serl_store_tile_12x32(float *c, int64_t ldc, float alpha, float beta,
                                                                      int mr, int nr, const __m512 *c0,
                                                                      const __m512 *c1) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (mr == 12 && nr == 32) {
        if (beta == 0.0f) {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) {
                _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, c0[i]));
                _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, c1[i]));
            }
        } else {
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) {
                float *ci = c + i * ldc;
                _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), _mm512_mul_ps(va, c0[i])));
                _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), _mm512_mul_ps(va, c1[i])));
            }
        }
        return;
    }
    /* Edge tile: masked loads/stores of the valid columns, valid rows only; beta == 0 never reads C. */
    __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr <= 16 ? 0 : nr >= 32 ? 0xFFFF : (__mmask16)((1u << (nr - 16)) - 1);
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
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

/* The four sums of a GEMV block's accumulators a[0..3] (one x row against four W rows), in order: 16
 * lanes folded to 8, then pairwise across the rows. */
static inline __attribute__((always_inline)) __m128 serl_gemv_sums4(const __m512 *a) {
    __m256 h[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) h[q] = _mm256_add_ps(_mm512_castps512_ps256(a[q]), _mm512_extractf32x8_ps(a[q], 1));
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

#endif
