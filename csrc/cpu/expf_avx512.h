/* serl_exp8_nonpos of expf_avx2.h on 16 lanes, for files built with AVX-512 flags: the same operations
 * on the same constants lane by lane (the Cephes polynomial, its reduction and 2^n), so each lane's bits
 * equal the 8-lane version's and the two SIMD paths agree exactly. Private to csrc/cpu. */
#ifndef SERL_EXPF_AVX512_H
#define SERL_EXPF_AVX512_H

#include <immintrin.h>

#include "expf_avx2.h"

/* serl_exp8_core on 16 lanes. */
static inline __m512 serl_exp16_core(__m512 x, __m512 *n) {
    *n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(SERL_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(SERL_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(SERL_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SERL_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SERL_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SERL_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SERL_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SERL_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SERL_EXP_P5));
    return _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
}

/* serl_exp8_nonpos on 16 lanes: e^x for x ≤ 0; below −87.3, −inf included, exactly 0. */
static inline __m512 serl_exp16_nonpos(__m512 x) {
    const __m512 lo = _mm512_set1_ps(SERL_EXP_NONPOS_LO);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    x = _mm512_min_ps(x, _mm512_set1_ps(SERL_EXP_NONPOS_HI));
    __m512 fx;
    __m512 y = serl_exp16_core(x, &fx);
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps((__mmask16)~under, y);
}

#endif
