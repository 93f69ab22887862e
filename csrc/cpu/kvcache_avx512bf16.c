/* AVX-512 BF16 scores of decode attention (the rest in kvcache.c): with bf16 queries and a bf16 cache,
 * q·k runs on vdpbf16ps straight from the cache rows, 32 dimensions per instruction, float32 sums and no
 * widening pass over the keys. Like the instruction, subnormal products count as zero. */
#include <immintrin.h>

#include "internal.h"

/* sc[n] = scale · Σ_d q[n·ldq + d] · k[(n/G)·D + d] for n < NH: q rows bf16, zero from D up to a multiple
 * of 32 (ldq ≥ that), k the task's part of one slot (bf16, read with masks, never past a row). */
void serl_decode_scores_avx512bf16(int NH, int G, int D, const uint16_t *q, int64_t ldq, const uint16_t *k, float scale,
                                   float *sc) {
    const int D32 = D & ~31;
    const __mmask32 tail = (__mmask32)((1ull << (D - D32)) - 1);
    for (int n = 0; n < NH; n++) {
        const uint16_t *qn = q + n * ldq, *kn = k + (int64_t)(n / G) * D;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int d = 0;
        for (; d + 64 <= D32; d += 64) {
            acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(qn + d), (__m512bh)_mm512_loadu_si512(kn + d));
            acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512(qn + d + 32), (__m512bh)_mm512_loadu_si512(kn + d + 32));
        }
        if (d < D32)
            acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(qn + d), (__m512bh)_mm512_loadu_si512(kn + d));
        if (D32 < D)
            acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512(qn + D32),
                                    (__m512bh)_mm512_maskz_loadu_epi16(tail, kn + D32));
        sc[n] = scale * _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    }
}
