/* AVX-512 microkernel of serl_matmul (driver, packing and the AVX2 paths are in matmul.c).
 *
 * 12×32: 24 zmm accumulators (12 rows × 2 vectors of 16 columns), 2 zmm for the B row and one broadcast,
 * 27 of 32 registers. Per k step: 2 loads of packed B, 12 broadcasts of packed A, 24 FMAs — enough
 * independent FMA chains to cover the 4-cycle latency on Zen 4 (double-pumped 512-bit) and Intel alike. */
#include <immintrin.h>

#include "internal.h"
#include "gemm_sched.h"
#include "tile_avx512.h"

#define MR 12
#define NR 32

/* The first R rows of a 12-row panel (R = 4, 8 or 12, a constant of each instance; SERL_TILE_BY_ROWS
 * picks it). Each element's sum is the same chain of FMAs whatever R is: the bits do not depend on which
 * instance ran. */
static inline __attribute__((always_inline)) void sgemm_tile(const int R, int64_t kc, const float *a, const float *b,
                                                             float *c, int64_t ldc, float alpha, float beta, int mr,
                                                             int nr) {
    __m512 c0[MR], c1[MR];
    serl_start_tile_12x32(c, ldc, mr, c0, c1);
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        a += MR;
        b += NR;
    }
    serl_store_tile_12x32(c, ldc, alpha, beta, mr, nr, c0, c1);
}

void serl_sgemm_ukr_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                           float beta, int mr, int nr) {
    SERL_TILE_BY_ROWS(mr, sgemm_tile, kc, a, b, c, ldc, alpha, beta, mr, nr);
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

/* ------------------------------------------------------------------------- x·Wᵀ with W as it lies
 *
 * xwt_block's product with the operands' roles swapped (matmul.c's wxt path): R ≤ 12 rows of W are
 * broadcast from where they lie (row stride ldw) against a panel of x packed k-major (NV vectors of 16 x
 * rows, zero lanes past nx). The accumulators hold a tile of Cᵀ, written back through L1. Each element of
 * C is the same chain of FMAs in p order as xwt_block's, alpha and beta applied as there: the same bits.
 * Each W row is asked for WXT_PF floats ahead into L1, and wn (the next tile's rows in W: wn_es-byte
 * elements, wn_ld bytes apart; or NULL) into L2 a line per row at a time, so the next tile arrives while
 * this one works. */
#define WXT_PF 64
static inline __attribute__((always_inline)) void wxt_block(const int R, const int NV, int64_t kc, const float *w,
                                                            int64_t ldw, const char *wn, int64_t wn_ld, int wn_es,
                                                            const float *xp, float *c, int64_t ldc, float alpha,
                                                            float beta, int nx) {
    const int64_t wn_mask = 64 / wn_es - 1; /* steps a line of wn's rows lasts, less one */
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t p = 0; p < kc; p++) {
        if ((p & 15) == 0)
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                _mm_prefetch((const char *)(w + i * ldw + p + WXT_PF), _MM_HINT_T0);
                if (wn && !(p & wn_mask)) _mm_prefetch(wn + i * wn_ld + p * wn_es, _MM_HINT_T1);
            }
        __m512 b0 = _mm512_load_ps(xp), b1 = NV > 1 ? _mm512_load_ps(xp + 16) : b0;
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512 av = _mm512_set1_ps(w[i * ldw + p]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            if (NV > 1) c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        xp += 16 * NV;
    }
    /* t[i][r] = C[r][i]; then each row r of C: R lanes gathered from t's column r */
    float t[MR * NR] __attribute__((aligned(64)));
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {
        _mm512_store_ps(t + i * NR, c0[i]);
        if (NV > 1) _mm512_store_ps(t + i * NR + 16, c1[i]);
    }
    const __m512i col = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0),
                                           _mm512_set1_epi32(NR));
    const __mmask16 mk = (__mmask16)((1u << R) - 1);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < nx; r++) {
        float *cr = c + r * ldc;
        __m512 v = _mm512_mul_ps(va, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, col, t + r, 4));
        if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, cr), v);
        _mm512_mask_storeu_ps(cr, mk, v);
    }
}

void serl_wxt_avx512(int64_t kc, const float *w, int64_t ldw, const char *wn, int64_t wn_ld, int wn_es, int nw,
                     const float *xp, int nx, float *c, int64_t ldc, float alpha, float beta) {
    const int nv = nx > 16 ? 2 : 1;
    switch (nw * 2 + nv - 1) {
#define CASE(R)                                                                                    \
    case 2 * R: wxt_block(R, 1, kc, w, ldw, wn, wn_ld, wn_es, xp, c, ldc, alpha, beta, nx); break; \
    case 2 * R + 1: wxt_block(R, 2, kc, w, ldw, wn, wn_ld, wn_es, xp, c, ldc, alpha, beta, nx); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    default: break;
    }
}

/* ------------------------------------------------------------------------- GEMV for m ≤ GEMV_MAX_M
 *
 * C = alpha·X·Wᵀ + beta·C with W streamed once (matmul.c's gemv path, and matmul_bf16.c's widening GEMV
 * for bf16 W): register blocks of 4 W rows × NI ≤ 4 x rows, dot products along k in 16 lanes (the k
 * tail masked), 16 zmm accumulators — the AVX2 version's 16 ymm accumulators plus its operands spill
 * past 16 registers; here 21 of 32 are used. */

/* 16 weights at element p of row w: float32, or bf16 widened in registers (wbf); the tail's lanes tm. */
static inline __attribute__((always_inline)) __m512 ldw16(const void *w, int wbf, int64_t p) {
    if (!wbf) return _mm512_loadu_ps((const float *)w + p);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) __m512 ldw16_tail(const void *w, int wbf, int64_t p, __mmask16 tm) {
    if (!wbf) return _mm512_maskz_loadu_ps(tm, (const float *)w + p);
    const __m256i h = _mm256_maskz_loadu_epi16(tm, (const uint16_t *)w + p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Rows i..i+NI of C at columns j..j+nj (C of dtype c_dtype, float32 sums); pf: the next block's rows
 * (serl_gemv_next) of pes-byte elements, or NULL. */
static inline __attribute__((always_inline)) void gemv_block16(const int NI, const int wbf, int64_t k,
                                                               const float *const *x, const void *const *w, float alpha,
                                                               float beta, void *C, int32_t c_dtype, int64_t ldc,
                                                               int64_t i, int64_t j, int nj, const char *const *pf,
                                                               int64_t pes) {
    const int64_t k16 = k & ~(int64_t)15;
    const __mmask16 tm = (__mmask16)((1u << (k - k16)) - 1);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NI; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = _mm512_setzero_ps();
    const void *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    for (int64_t p = 0; p < k16; p += 16) {
        serl_gemv_prefetch(pf, p * pes, 16 * pes);
        __m512 vw0 = ldw16(w0, wbf, p), vw1 = ldw16(w1, wbf, p), vw2 = ldw16(w2, wbf, p), vw3 = ldw16(w3, wbf, p);
#pragma GCC unroll 4
        for (int r = 0; r < NI; r++) {
            __m512 vx = _mm512_loadu_ps(x[r] + p);
            acc[r][0] = _mm512_fmadd_ps(vx, vw0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(vx, vw1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(vx, vw2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(vx, vw3, acc[r][3]);
        }
    }
    if (tm) {
        __m512 vw0 = ldw16_tail(w0, wbf, k16, tm), vw1 = ldw16_tail(w1, wbf, k16, tm);
        __m512 vw2 = ldw16_tail(w2, wbf, k16, tm), vw3 = ldw16_tail(w3, wbf, k16, tm);
#pragma GCC unroll 4
        for (int r = 0; r < NI; r++) {
            __m512 vx = _mm512_maskz_loadu_ps(tm, x[r] + k16);
            acc[r][0] = _mm512_fmadd_ps(vx, vw0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(vx, vw1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(vx, vw2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(vx, vw3, acc[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NI; r++) {
        float v[4];
        _mm_storeu_ps(v, serl_gemv_sums4(acc[r]));
        const int64_t off = (i + r) * ldc + j;
        for (int q = 0; q < nj; q++) {
            float y = alpha * v[q];
            if (beta != 0.0f) y += beta * serl_ld(C, c_dtype, off + q);
            serl_st(C, c_dtype, off + q, y);
        }
    }
}

/* Rows [j0, j1) of W (float32, or bf16: wbf) against all m rows of x, as matmul.c's gemv_rows_avx2:
 * blocks of 4 W rows (L1 resident) × up to 4 x rows, a partial W block repeating its last row, computed
 * but not stored. With wide (4·k floats), each block of bf16 W rows is widened once into it and serves
 * every block of x from there rather than being widened again per x block. */
static inline __attribute__((always_inline)) void gemv_rows16(const int wbf, int64_t m, int64_t k, float alpha,
                                                              const float *X, int64_t ldx, const void *W, int64_t ldw,
                                                              float beta, void *C, int32_t c_dtype, int64_t ldc,
                                                              int64_t j0, int64_t j1, float *wide) {
    const size_t ws = wbf ? sizeof(uint16_t) : sizeof(float);
    for (int64_t j = j0; j < j1; j += 4) {
        const int nj = (int)(j1 - j < 4 ? j1 - j : 4);
        const void *w[4];
        for (int q = 0; q < 4; q++) w[q] = (const char *)W + (size_t)((j + (q < nj ? q : nj - 1)) * ldw) * ws;
        const char *next[4];
        const int more = serl_gemv_next(next, W, ldw, ws, j, j1);
        if (wbf && wide)
            for (int q = 0; q < 4; q++) {
                serl_bf16_to_f32_n(wide + q * k, (const uint16_t *)w[q], k);
                w[q] = wide + q * k;
            }
        for (int64_t i = 0; i < m; i += 4) {
            const int ni = (int)(m - i < 4 ? m - i : 4);
            const float *x[4] = {X + i * ldx, X + (i + 1) * ldx, X + (i + 2) * ldx, X + (i + 3) * ldx};
            const char *const *pf = more && i == 0 ? next : NULL;
#define BLOCK(NI)                                                                                            \
    if (wbf && !wide)                                                                                        \
        gemv_block16(NI, 1, k, x, w, alpha, beta, C, c_dtype, ldc, i, j, nj, pf, (int64_t)ws);               \
    else                                                                                                     \
        gemv_block16(NI, 0, k, x, w, alpha, beta, C, c_dtype, ldc, i, j, nj, pf, (int64_t)ws);
            switch (ni) {
            case 1: BLOCK(1) break;
            case 2: BLOCK(2) break;
            case 3: BLOCK(3) break;
            default: BLOCK(4) break;
            }
#undef BLOCK
        }
    }
}

void serl_gemv_rows_avx512(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const float *W,
                           int64_t ldw, float beta, float *C, int64_t ldc, int64_t j0, int64_t j1) {
    gemv_rows16(0, m, k, alpha, X, ldx, W, ldw, beta, C, SERL_DTYPE_F32, ldc, j0, j1, NULL);
}

void serl_bgemv_rows_avx512(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const uint16_t *W,
                            int64_t ldw, float beta, void *C, int32_t c_dtype, int64_t ldc, int64_t j0, int64_t j1,
                            float *wide) {
    gemv_rows16(1, m, k, alpha, X, ldx, W, ldw, beta, C, c_dtype, ldc, j0, j1, wide);
}

/* ------------------------------------------------------------------------- sums over a long k for few rows
 *
 * out[j, c] = alpha·Σ_t h[t, j]·l[t, c] + beta·out[j, c] for j < R (≤ 8) and 48 columns from c, the last
 * vectors masked to cols: 24 zmm accumulators held across all T rows, so each row of l is read once and
 * every sum runs in t order, SERL_THIN_PF rows prefetched ahead. h and l are float32 or bf16 (hbf, lbf:
 * widened in registers), out float32. matmul.c's thin_task cuts the product into these blocks. */
static inline __m512 thin_ld16(const void *p, int bf, __mmask16 mk) {
    if (bf)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)p)), 16));
    return _mm512_maskz_loadu_ps(mk, (const float *)p);
}

static inline __attribute__((always_inline)) void thin_block16(const int R, const int hbf, const int lbf, int64_t T,
                                                               const void *h, int64_t ldh, const void *l, int64_t ldl,
                                                               float *out, int64_t ldo, float alpha, float beta,
                                                               int cols) {
    const size_t hs = hbf ? 2 : 4, ls = lbf ? 2 : 4;
    __m512 acc[8][3];
    __mmask16 mk[3];
    for (int v = 0; v < 3; v++) {
        int left = cols - 16 * v;
        mk[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
    }
#pragma GCC unroll 8
    for (int j = 0; j < R; j++)
        for (int v = 0; v < 3; v++) acc[j][v] = _mm512_setzero_ps();
    for (int64_t t = 0; t < T; t++) {
        const char *lt = (const char *)l + (size_t)(t * ldl) * ls, *ht = (const char *)h + (size_t)(t * ldh) * hs;
        const char *pf = lt + (size_t)(SERL_THIN_PF * ldl) * ls;
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 16 * ls, _MM_HINT_T0);
        _mm_prefetch(pf + 32 * ls, _MM_HINT_T0);
        _mm_prefetch(pf + 47 * ls, _MM_HINT_T0);
        __m512 x0 = thin_ld16(lt, lbf, mk[0]), x1 = thin_ld16(lt + 16 * ls, lbf, mk[1]);
        __m512 x2 = thin_ld16(lt + 32 * ls, lbf, mk[2]);
#pragma GCC unroll 8
        for (int j = 0; j < R; j++) {
            __m512 s = _mm512_set1_ps(hbf ? serl_bf16_to_f32(((const uint16_t *)ht)[j]) : ((const float *)ht)[j]);
            acc[j][0] = _mm512_fmadd_ps(s, x0, acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(s, x1, acc[j][1]);
            acc[j][2] = _mm512_fmadd_ps(s, x2, acc[j][2]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int j = 0; j < R; j++)
        for (int v = 0; v < 3; v++) {
            float *o = out + j * ldo + 16 * v;
            __m512 y = _mm512_mul_ps(va, acc[j][v]);
            if (beta != 0.0f) y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk[v], o), y);
            _mm512_mask_storeu_ps(o, mk[v], y);
        }
}

static inline __attribute__((always_inline)) void thin_cols16(const int hbf, const int lbf, int64_t T, int64_t r,
                                                              const void *h, int64_t ldh, const void *l, int64_t ldl,
                                                              float *out, int64_t ldo, float alpha, float beta,
                                                              int64_t c0, int64_t c1) {
    const size_t hs = hbf ? 2 : 4, ls = lbf ? 2 : 4;
    for (int64_t c = c0; c < c1; c += 48) {
        const int cols = (int)(c1 - c < 48 ? c1 - c : 48);
        for (int64_t j = 0; j < r; j += 8) {
            const void *hj = (const char *)h + j * hs, *lc = (const char *)l + c * ls;
            float *o = out + j * ldo + c;
#define BLOCK(R) thin_block16(R, hbf, lbf, T, hj, ldh, lc, ldl, o, ldo, alpha, beta, cols)
            SERL_ROWS_1_TO_8(r - j, BLOCK)
#undef BLOCK
        }
    }
}

void serl_thin_cols_avx512(int hbf, int lbf, int64_t T, int64_t r, const void *h, int64_t ldh, const void *l,
                           int64_t ldl, float *out, int64_t ldo, float alpha, float beta, int64_t c0, int64_t c1) {
#define COLS(HBF, LBF) thin_cols16(HBF, LBF, T, r, h, ldh, l, ldl, out, ldo, alpha, beta, c0, c1)
    SERL_FLAGS2(hbf, lbf, COLS);
#undef COLS
}

/* ------------------------------------------------------------------------- short rows of W, many rows of x
 *
 * C[i, :] = alpha·Σ_p x[i, p]·Wt[p, :] + beta·C[i, :] for rows [i0, i1), p < k (≤ 16, a LoRA rank), with
 * Wt [k, n] float32 (L1/L2 resident), x float32 or bf16 (xbf) and C bf16: C is read once and written
 * once, rounded in registers (as serl_f32_to_bf16). Four rows of C share each vector of Wt. matmul.c's
 * matmul_shortk drives it. */
static inline __attribute__((always_inline)) void shortk_rows16(const int xbf, int64_t i0, int64_t i1, int64_t n,
                                                                int64_t k, float alpha, const void *X, int64_t ldx,
                                                                const float *Wt, float beta, uint16_t *C, int64_t ldc) {
    const size_t xs = xbf ? 2 : 4;
    for (int64_t i = i0; i < i1; i += 4) {
        const int ni = (int)(i1 - i < 4 ? i1 - i : 4);
        float xv[4][16];
        for (int r = 0; r < 4; r++)
            for (int64_t p = 0; p < k; p++) {
                const char *row = (const char *)X + (size_t)((i + (r < ni ? r : 0)) * ldx) * xs;
                xv[r][p] = xbf ? serl_bf16_to_f32(((const uint16_t *)row)[p]) : ((const float *)row)[p];
            }
        for (int64_t c = 0; c < n; c += 16) {
            const int cols = (int)(n - c < 16 ? n - c : 16);
            const __mmask16 mk = cols == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t p = 0; p < k; p++) {
                __m512 w = _mm512_maskz_loadu_ps(mk, Wt + p * n + c);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(xv[r][p]), w, acc[r]);
            }
            for (int r = 0; r < ni; r++) {
                uint16_t *o = C + (i + r) * ldc + c;
                _mm_prefetch((const char *)(o + 4 * ldc), _MM_HINT_T0); /* the next block's row (1.2-1.8× at 2048 rows) */
                __m512 y = _mm512_mul_ps(_mm512_set1_ps(alpha), acc[r]);
                if (beta != 0.0f)
                    y = _mm512_fmadd_ps(
                        _mm512_set1_ps(beta),
                        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, o)), 16)), y);
                _mm256_mask_storeu_epi16(o, mk, serl_f32x16_to_bf16(y));
            }
        }
    }
}

void serl_shortk_rows_avx512(int xbf, int64_t i0, int64_t i1, int64_t n, int64_t k, float alpha, const void *X,
                             int64_t ldx, const float *Wt, float beta, uint16_t *C, int64_t ldc) {
    if (xbf)
        shortk_rows16(1, i0, i1, n, k, alpha, X, ldx, Wt, beta, C, ldc);
    else
        shortk_rows16(0, i0, i1, n, k, alpha, X, ldx, Wt, beta, C, ldc);
}
