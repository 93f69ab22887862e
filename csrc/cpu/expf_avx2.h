/* Vectorised expf for AVX2+FMA (Cephes polynomial, ≤ 2 ulp over the normal range), shared by the
 * log-probability, sampling, SwiGLU and attention kernels. Private to csrc/cpu. */
#ifndef SERL_EXPF_AVX2_H
#define SERL_EXPF_AVX2_H

#include <immintrin.h>

/* The Cephes expf: n = round(x·log₂e), r = x − n·ln 2 (ln 2 in two parts), e^r by a degree-5 polynomial.
 * Named once, for the 8-lane code here and the 16-lane code of expf_avx512.h, which must give its bits. */
#define SERL_EXP_LOG2E 1.44269504088896341f
#define SERL_EXP_LN2_HI 0.693359375f
#define SERL_EXP_LN2_LO (-2.12194440e-4f)
#define SERL_EXP_P0 1.9875691500e-4f
#define SERL_EXP_P1 1.3981999507e-3f
#define SERL_EXP_P2 8.3334519073e-3f
#define SERL_EXP_P3 4.1665795894e-2f
#define SERL_EXP_P4 1.6666665459e-1f
#define SERL_EXP_P5 5.0000001201e-1f
/* serl_exp8_nonpos's clamp: below LO the result is 0; HI keeps 2^n representable */
#define SERL_EXP_NONPOS_LO (-87.3365f)
#define SERL_EXP_NONPOS_HI 88.0f

/* e^(x − n·ln 2) for n = round(x·log₂e), by the Cephes polynomial, for x already clamped to the range
 * its caller serves; n is returned for the caller's 2^n. */
static inline __m256 serl_exp8_core(__m256 x, __m256 *n) {
    *n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(SERL_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(*n, _mm256_set1_ps(SERL_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(*n, _mm256_set1_ps(SERL_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SERL_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SERL_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SERL_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SERL_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SERL_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SERL_EXP_P5));
    return _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
}

/* e^x for 8 lanes. x < −87.33 (including −inf) gives exactly 0 rather than a denormal, so that
 * masked (−inf) logits contribute nothing; x > 88.37 gives +inf; NaN stays NaN. */
static inline __m256 serl_exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f);
    const __m256 lo = _mm256_set1_ps(-87.3365447505531f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    x = _mm256_min_ps(hi, x); /* min(hi, NaN) = NaN: NaN propagates */
    x = _mm256_max_ps(lo, x);
    __m256 n;
    __m256 y = serl_exp8_core(x, &n);
    /* 2^n as two factors 2^(n−1)·2 would cover n = 128; x ≤ 88.37 keeps n ≤ 128, so split n. */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
    y = _mm256_andnot_ps(under, y);
    return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
}

/* e^x for x ≤ 0, as softmax takes it (the same polynomial without serl_exp8's overflow split, about 1
 * ulp): x below −87.3, −inf included, gives exactly 0. Attention's and decode attention's. */
static inline __m256 serl_exp8_nonpos(__m256 x) {
    const __m256 lo = _mm256_set1_ps(SERL_EXP_NONPOS_LO);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    x = _mm256_min_ps(x, _mm256_set1_ps(SERL_EXP_NONPOS_HI));
    __m256 fx;
    __m256 y = serl_exp8_core(x, &fx);
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, y);
}

/* Horizontal helpers. */
static inline float serl_hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline double serl_hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* Σ of the 8 lanes of v in double: halves widened and added, then pairwise. */
static inline double serl_hsum8d(__m256 v) {
    __m256d a = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d b = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(b, _mm_unpackhi_pd(b, b)));
}

/* acc += the 8 lanes of v, widened to double. */
static inline __m256d serl_acc8d(__m256d acc, __m256 v) {
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

/* Scalar e^x with the same polynomial, for tails, so a row's lanes and tail agree. */
static inline float serl_exp1(float x) {
    __m256 v = serl_exp8(_mm256_set1_ps(x));
    return _mm256_cvtss_f32(v);
}

#endif
