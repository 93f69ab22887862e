/* Storage dtypes of the CPU library: bf16 ⇄ f32 conversion (scalar and AVX2) and row load/store helpers
 * that let an op compute in float32 whatever its tensors' storage. Private to csrc/cpu.
 *
 * F32 → BF16 rounds as serl_bf16_round (../common.h). The hardware instruction
 * (vcvtneps2bf16) is not used for this: it flushes subnormal inputs to zero, and every SIMD path must
 * round bit for bit alike. BF16 → F32 is exact. */
#ifndef SERL_CPU_DTYPE_H
#define SERL_CPU_DTYPE_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../common.h"

static inline float serl_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t serl_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return serl_bf16_round(u);
}

/* 8 bf16 → 8 f32. */
static inline __m256 serl_bf16x8_to_f32(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* 8 f32 → 8 bf16, bit-identical to serl_f32_to_bf16. */
static inline __m128i serl_f32x8_to_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7FFF)));
    r = _mm256_srli_epi32(r, 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    return _mm256_castsi256_si128(p);
}

/* Element i of p (dtype dt) as float, and the store of a float. */
static inline float serl_ld(const void *p, int32_t dt, int64_t i) {
    return dt == SERL_DTYPE_BF16 ? serl_bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline void serl_st(void *p, int32_t dt, int64_t i, float v) {
    if (dt == SERL_DTYPE_BF16)
        ((uint16_t *)p)[i] = serl_f32_to_bf16(v);
    else
        ((float *)p)[i] = v;
}

/* Pointer to element i of p. */
static inline const void *serl_at(const void *p, int32_t dt, int64_t i) {
    return (const char *)p + (size_t)i * serl_dtype_size(dt);
}

/* n bf16 → f32 and back, vectorised. */
static inline void serl_bf16_to_f32_n(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, serl_bf16x8_to_f32(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = serl_bf16_to_f32(src[i]);
}

static inline void serl_f32_to_bf16_n(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(dst + i), serl_f32x8_to_bf16(_mm256_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = serl_f32_to_bf16(src[i]);
}

/* dst[0..n) = elements [off, off+n) of src (dtype dt) as float32. */
static inline void serl_load_f32(float *dst, const void *src, int32_t dt, int64_t off, int64_t n) {
    if (dt == SERL_DTYPE_BF16)
        serl_bf16_to_f32_n(dst, (const uint16_t *)src + off, n);
    else
        memcpy(dst, (const float *)src + off, sizeof(float) * (size_t)n);
}

/* Elements [off, off+n) of dst (dtype dt) = src[0..n). */
static inline void serl_store_f32(void *dst, int32_t dt, int64_t off, const float *src, int64_t n) {
    if (dt == SERL_DTYPE_BF16)
        serl_f32_to_bf16_n((uint16_t *)dst + off, src, n);
    else
        memmove((float *)dst + off, src, sizeof(float) * (size_t)n);
}

#endif
