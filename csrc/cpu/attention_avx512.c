/* AVX-512 bodies of attention.c: the kernel C (+)= A·B (see attention.c for the contract), with 32 vector
 * registers a tile of 8 rows × 32 columns, 16 accumulators, so each broadcast of A feeds two FMAs and
 * each load of B feeds eight; and the softmax's row passes on 16 lanes. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "expf_avx2.h"
#include "expf_avx512.h"
#include "internal.h"

void serl_att_gemm_avx512(int M, int N, int K, const float *A, ptrdiff_t am, ptrdiff_t ak, const float *B,
                          ptrdiff_t ldb, float *C, ptrdiff_t ldc, int zero);
double serl_att_softmax_row_avx512(float *x, int n, float m);
float serl_att_row_max_avx512(const float *x, int n);

/* mr rows × (nv·16) columns; mr and nv are literals at every call site. */
static inline __attribute__((always_inline)) void tile512(int mr, int nv, int K, const float *A, ptrdiff_t am,
                                                          ptrdiff_t ak, const float *B, ptrdiff_t ldb, float *C,
                                                          ptrdiff_t ldc, int zero) {
    __m512 c[8][2];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) c[r][v] = zero ? _mm512_setzero_ps() : _mm512_loadu_ps(C + r * ldc + 16 * v);
    for (int k = 0; k < K; k++) {
        __m512 b[2];
        for (int v = 0; v < nv; v++) b[v] = _mm512_loadu_ps(B + k * ldb + 16 * v);
        const float *a = A + k * ak;
        for (int r = 0; r < mr; r++) {
            __m512 x = _mm512_set1_ps(a[r * am]);
            for (int v = 0; v < nv; v++) c[r][v] = _mm512_fmadd_ps(x, b[v], c[r][v]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

#define TAILS(NV)                                                                                \
    do {                                                                                         \
        int m = 0;                                                                               \
        for (; m + 8 <= M; m += 8) tile512(8, NV, K, A + m * am, am, ak, Bn, ldb, Cn + m * ldc, ldc, zero); \
        const float *Am = A + m * am;                                                            \
        float *Cm = Cn + m * ldc;                                                                \
        switch (M - m) {                                                                         \
        case 7: tile512(7, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        case 6: tile512(6, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        case 5: tile512(5, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        case 4: tile512(4, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        case 3: tile512(3, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        case 2: tile512(2, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        case 1: tile512(1, NV, K, Am, am, ak, Bn, ldb, Cm, ldc, zero); break;                    \
        default: break;                                                                          \
        }                                                                                        \
    } while (0)

void serl_att_gemm_avx512(int M, int N, int K, const float *A, ptrdiff_t am, ptrdiff_t ak, const float *B,
                          ptrdiff_t ldb, float *C, ptrdiff_t ldc, int zero) {
    int n = 0;
    for (; n + 32 <= N; n += 32) {
        const float *Bn = B + n;
        float *Cn = C + n;
        TAILS(2);
    }
    if (n < N) {
        const float *Bn = B + n;
        float *Cn = C + n;
        TAILS(1);
    }
}

/* attention.c's softmax_row_avx2 on 16 lanes (n % 16 == 0): x[j] = e^(x[j] − m) in place, Σ in double.
 * The same exponentials (expf_avx512.h), and the sum in the same order, each half of a vector into one
 * 8-lane float partial sum flushed to double every 64 terms: the bits of the AVX2 path, at about half
 * its instructions (the row passes took a third of the forward's time beside its products). */
double serl_att_softmax_row_avx512(float *x, int n, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    double sum = 0;
    for (int j = 0; j < n; j += 16) {
        const __m512 p = serl_exp16_nonpos(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm));
        _mm512_storeu_ps(x + j, p);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(p));
        acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps(p, 1));
        if ((j & 63) == 48) {
            sum += serl_hsum8d(acc);
            acc = _mm256_setzero_ps();
        }
    }
    return sum + serl_hsum8d(acc);
}

/* The largest of x[0..n), n % 16 == 0. */
float serl_att_row_max_avx512(const float *x, int n) {
    __m512 v = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16) v = _mm512_max_ps(v, _mm512_loadu_ps(x + j));
    return _mm512_reduce_max_ps(v);
}
