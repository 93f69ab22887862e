/* AVX-512 bodies of decode attention's score and value passes (the rest in kvcache.c), with the AVX2
 * bodies' bits, so that generation does not change with the machine's vector width:
 *   - a score is AVX2's two 8-lane partial sums (the even and the odd 8-column chunks of q·k, here the
 *     halves of one 16-lane accumulator) added, then reduced by the tree of AVX2's horizontal adds,
 *     eight scores at a time;
 *   - an output column is the same chain of multiply-adds over slots on either width.
 * What differs is the work per slot: a query row stays in registers while it meets eight key rows (the
 * AVX2 body reloads it for each), and the value accumulators of up to six heads advance together, 16
 * lanes wide, so that their chains of multiply-adds do not wait on one another (the AVX2 body runs one
 * head's at a time). */
#include <immintrin.h>

#include "internal.h"

void serl_decode_scores_avx512(int NH, int G, int D, const float *qs, int Dp, const float *const *kr, int nt,
                               float *sc, int NHp);
void serl_decode_values_avx512(int NH, int G, int D, float *acc, int Dp, const float *const *vr, const float *sc,
                               int NHp, int nt);

/* AVX's horizontal add on each 128-bit lane, as _mm256_hadd_ps does on two. */
static inline __m512 hadd16(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}

/* The sums of the eight 8-lane vectors c[0..7], each ((c0+c1)+(c2+c3)) + ((c4+c5)+(c6+c7)) as kvcache.c's
 * hsum4x8 sums four: its three horizontal adds run on c[0..3] in the low halves and on c[4..7] in the
 * high ones, then the 128-bit lanes are added pairwise. */
static inline __m256 hsum8x8(const __m256 c[8]) {
    __m512 a = _mm512_insertf32x8(_mm512_castps256_ps512(c[0]), c[4], 1);
    __m512 b = _mm512_insertf32x8(_mm512_castps256_ps512(c[1]), c[5], 1);
    __m512 e = _mm512_insertf32x8(_mm512_castps256_ps512(c[2]), c[6], 1);
    __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(c[3]), c[7], 1);
    __m512 t = hadd16(hadd16(a, b), hadd16(e, f));
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(t, t, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(t, t, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_castps512_ps256(s);
}

#define QREGS 8 /* 16-lane query chunks kept in registers: head_dim up to 128 */

/* Scores of one query head q (Dp floats, zero past D) against the key rows kr[u] + ko, u < nt, into
 * sc[u·NHp]. Always inlined, so that a literal D (64, 128) unrolls the products and keeps q in
 * registers. */
static inline __attribute__((always_inline)) void scores_head(const int D, const float *q, int64_t ko,
                                                              const float *const *kr, int nt, float *sc, int NHp) {
    const int D16 = D & ~15, Dv = D & ~7, nq = D16 / 16;
    const __mmask8 tm = (__mmask8)((1u << (D - Dv)) - 1);
    __m512 qv[QREGS];
    for (int i = 0; i < nq && i < QREGS; i++) qv[i] = _mm512_loadu_ps(q + 16 * i);
    for (int u0 = 0; u0 < nt; u0 += 8) {
        const int m = nt - u0 < 8 ? nt - u0 : 8;
        __m256 c[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            if (i >= m) {
                c[i] = _mm256_setzero_ps();
                continue;
            }
            const float *k = kr[u0 + i] + ko;
            __m512 a = _mm512_setzero_ps();
            for (int v = 0; v < nq; v++)
                a = _mm512_fmadd_ps(v < QREGS ? qv[v] : _mm512_loadu_ps(q + 16 * v), _mm512_loadu_ps(k + 16 * v), a);
            __m256 x0 = _mm512_castps512_ps256(a), x1 = _mm512_extractf32x8_ps(a, 1);
            /* AVX2's tail: a whole 8-column chunk joins the even sum, the masked rest the odd one */
            if (D16 < Dv) x0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + D16), _mm256_loadu_ps(k + D16), x0);
            if (Dv < D) x1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + Dv), _mm256_maskz_loadu_ps(tm, k + Dv), x1);
            c[i] = _mm256_add_ps(x0, x1);
        }
        float r[8];
        _mm256_storeu_ps(r, hsum8x8(c));
        for (int i = 0; i < m; i++) sc[(int64_t)(u0 + i) * NHp] = r[i];
    }
}

/* sc[u·NHp + n] = qs[n]·k, k = kr[u] + (n/G)·D, for the task's NH query heads and the chunk's nt slots. */
void serl_decode_scores_avx512(int NH, int G, int D, const float *qs, int Dp, const float *const *kr, int nt,
                               float *sc, int NHp) {
    for (int n = 0; n < NH; n++) {
        const float *q = qs + (int64_t)n * Dp;
        const int64_t ko = (int64_t)(n / G) * D;
        if (D == 64)
            scores_head(64, q, ko, kr, nt, sc + n, NHp);
        else if (D == 128)
            scores_head(128, q, ko, kr, nt, sc + n, NHp);
        else
            scores_head(D, q, ko, kr, nt, sc + n, NHp);
    }
}

#define VHEADS 6 /* heads a value pass holds: 6 × 4 16-lane accumulators, 24 registers */

/* acc[n] += Σ_u sc[u·NHp + n]·(vr[u] + (n/G)·D) for heads n0..n0+nh-1 (nh ≤ VHEADS, a literal at every
 * call) and columns d0..d0+16·w-1 (w ≤ 4; the last 16 masked by tm, past D the accumulators' padding),
 * slot after slot: every head's chains of multiply-adds advance together, so that nh·w independent
 * ones hide the instruction's latency (one head's four waited on it). */
static inline __attribute__((always_inline)) void values_group(const int nh, int w, __mmask16 tm, float *acc, int Dp,
                                                               int n0, int G, int D, int d0, const float *const *vr,
                                                               const float *sc, int NHp, int nt) {
    __m512 c[VHEADS][4] = {{_mm512_setzero_ps()}};
    int64_t ko[VHEADS];
#pragma GCC unroll 6
    for (int h = 0; h < nh; h++) {
        ko[h] = (int64_t)((n0 + h) / G) * D + d0;
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            if (i < w) c[h][i] = _mm512_loadu_ps(acc + (int64_t)(n0 + h) * Dp + d0 + 16 * i);
    }
    for (int u = 0; u < nt; u++) {
        const float *p = sc + (int64_t)u * NHp + n0;
#pragma GCC unroll 6
        for (int h = 0; h < nh; h++) {
            const __m512 pu = _mm512_set1_ps(p[h]);
            const float *v = vr[u] + ko[h];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                if (i >= w) break;
                const __m512 x = i == w - 1 ? _mm512_maskz_loadu_ps(tm, v + 16 * i) : _mm512_loadu_ps(v + 16 * i);
                c[h][i] = _mm512_fmadd_ps(pu, x, c[h][i]);
            }
        }
    }
#pragma GCC unroll 6
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            if (i < w) _mm512_storeu_ps(acc + (int64_t)(n0 + h) * Dp + d0 + 16 * i, c[h][i]);
}

/* acc[n] += Σ_u sc[u·NHp + n] · (vr[u] + (n/G)·D) for the task's NH heads over the chunk's nt slots. */
void serl_decode_values_avx512(int NH, int G, int D, float *acc, int Dp, const float *const *vr, const float *sc,
                               int NHp, int nt) {
    const int chunks = (D + 15) / 16;
    const __mmask16 tail = D % 16 ? (__mmask16)((1u << (D % 16)) - 1) : (__mmask16)0xFFFF;
    for (int c0 = 0; c0 < chunks; c0 += 4) {
        const int w = chunks - c0 < 4 ? chunks - c0 : 4;
        const __mmask16 tm = c0 + w == chunks ? tail : (__mmask16)0xFFFF;
        for (int n0 = 0; n0 < NH; n0 += VHEADS) {
            switch (NH - n0 < VHEADS ? NH - n0 : VHEADS) {
            case 1: values_group(1, w, tm, acc, Dp, n0, G, D, 16 * c0, vr, sc, NHp, nt); break;
            case 2: values_group(2, w, tm, acc, Dp, n0, G, D, 16 * c0, vr, sc, NHp, nt); break;
            case 3: values_group(3, w, tm, acc, Dp, n0, G, D, 16 * c0, vr, sc, NHp, nt); break;
            case 4: values_group(4, w, tm, acc, Dp, n0, G, D, 16 * c0, vr, sc, NHp, nt); break;
            case 5: values_group(5, w, tm, acc, Dp, n0, G, D, 16 * c0, vr, sc, NHp, nt); break;
            default: values_group(6, w, tm, acc, Dp, n0, G, D, 16 * c0, vr, sc, NHp, nt); break;
            }
        }
    }
}
