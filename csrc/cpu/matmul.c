/* serl_matmul: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b], row-major, float32.
 *
 * The paths:
 *  - small products (m·n·k below SMALL_MNK) other than x·Wᵀ: plain loops, no packing, no thread wake-up;
 *  - m ≤ GEMV_MAX_M (AVX2) or GEMV_MAX_M_AVX512 (_LONG_K where k ≥ LONG_K) with B transposed (y = x·Wᵀ,
 *    the decode hot path): every row of W is streamed once for all m rows of x, dot products vectorised
 *    along k; also x·Wᵀ and x·W with at most SKINNY_MAX_N columns of C for any m (a LoRA adapter's x·Aᵀ
 *    and dy·B);
 *  - the other x·Wᵀ with m ≤ XWT_MAX_M (batched decode, y = x·Wᵀ for tens of sequences; few rows against
 *    W rows of k ≤ THIN_K, a LoRA adapter's u·Bᵀ in decoding) or below SMALL_MNK: only W is packed, one
 *    NR-row panel at a time into the worker's L1/L2, and a register-blocked kernel broadcasts x straight
 *    from its rows against it (no A packing, no shared panels, no fork for small calls); on AVX-512 with
 *    rows of W LONG_K or longer and W at least 4× x the roles swap: x is packed once and W's rows are
 *    broadcast from where they lie (wxt), as W then streams from memory;
 *  - Aᵀ·B with at most THIN_R rows or columns (THIN_R_PAIR for bf16 pairs; a LoRA adapter's weight
 *    gradients): sums over k held in registers for a block of C while the other operand streams past
 *    once;
 *  - everything else: the blocked product of gemm_driver.c (BLIS/GotoBLAS style: shared A and B panels
 *    packed on demand, C tiles as tasks) with the float32 kernels below; a bf16 operand is widened while
 *    its panels are packed.
 * The microkernel is MR×NR register-blocked FMA: 6×16 ymm here (AVX2) and 12×32 zmm in matmul_avx512.c.
 * Edge tiles are computed in full against zero-padded panels; only their valid part is written back. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_driver.h"
#include "gemm_sched.h"
#include "internal.h"

#define SMALL_MNK (32 * 32 * 32) /* below this, packing and waking workers cost more than they save */
/* Rows up to which the GEMV path (W streamed once, dot products along k) beats the x·Wᵀ microkernel.
 * On AVX2 the microkernel is on par or faster from 12 rows and mixed at 8. The AVX-512 GEMV has the
 * registers the AVX2 one spills for: at 24 and 32 rows it takes 0.8-1.0× the x·Wᵀ path's time on the
 * built-in model's shapes (W in L2/L3), and mixed from 40. Rows of LONG_K or more are a real model's
 * (Qwen2.5-0.5B's k is 896 or 4864; the built-in model's 256 and 704), whose weights stream from memory
 * in decoding, where the x·Wᵀ path's packing waits on them: the GEMV takes 0.8-0.95× its time up to
 * 48 rows (W cycled through 128 MiB, one core or two), on par at 56-64. Against a W that stays in L3 it
 * would lose 5-10% there, hence the split by k rather than one higher threshold. */
#define GEMV_MAX_M 8
#define GEMV_MAX_M_AVX512 32
#define GEMV_MAX_M_AVX512_LONG_K 48
#define LONG_K 768
#ifndef BF16_GEMV_MAX_M
/* bf16 x and W on AVX-512 BF16: rows up to which the pair GEMV (W streamed once from its rows) beats the
 * blocked pair kernel, whose packing of W is the time it loses: 1.4-3.6× faster at 4-16 rows, 1.1× at
 * 24-32 on the built-in model's and Qwen2.5-0.5B's shapes. From 40 rows it takes 1.6-1.8× the blocked
 * kernel's time on the built-in model's (k = 256, W in L2/L3: its horizontal sums weigh, and nothing
 * waits on memory), but 0.7-0.9× on one core and 0.65-0.95× on two with rows of LONG_K or more
 * streamed from memory (the 0.5B shapes, W cycled through 128 MiB; BenchmarkGEMVStream's m=64). */
#define BF16_GEMV_MAX_M 32
#define BF16_GEMV_MAX_M_LONG_K 64
#endif
#ifndef WIDEN_GEMV_MAX_M
/* bf16 W otherwise: rows up to which the widening GEMV runs; past them the x·Wᵀ path, W widened as its
 * panels pack (matmul_widen_blocked). With AVX-512 both take the same time at 8 and 16 rows (W 768×768,
 * 2048×768), and from 24 rows the GEMV takes 1.0-1.5× the x·Wᵀ path's time on the built-in model's
 * shapes (W in L2/L3); with rows of LONG_K or more streamed from memory 0.7-1.0× at 24-32 rows, bf16 or
 * f32 x (SERL_SIMD=avx512, the 0.5B shapes cycled through 128 MiB, one core or two), mixed past them:
 * 4 widened rows of 4864 (78 KiB) leave L1 for every block of x rows. On AVX2 the GEMV's 4-row blocks
 * spill its registers: the x·Wᵀ path takes 0.7-0.85× its time at 8 and 16 rows, and 1.7-1.8× at 4,
 * where the GEMV works in 2-row blocks (one core). */
#define WIDEN_GEMV_MAX_M 16
#define WIDEN_GEMV_MAX_M_LONG_K 32
#endif
#ifndef WIDEN_GEMV_MAX_M_AVX2
#define WIDEN_GEMV_MAX_M_AVX2 4
#endif
#ifndef THIN_R
/* Rows or columns up to which Aᵀ·B takes the thin path (matmul_thin), which holds 8 rows of out at a
 * time. A LoRA group's joined dA += duᵀ·x has m = 3 × rank: at m 16-32 the thin path takes 0.55-0.9× the
 * blocked kernel's time in f32 at 2048 tokens (in 256, 896 and 4096). */
#define THIN_R 32
#endif
#ifndef THIN_R_PAIR
/* THIN_R with two bf16 operands on AVX-512 BF16, where the pair kernel's tiles are full enough sooner:
 * dA of 24 rows over 2048 tokens of 896 takes it 310 µs against the thin path's 437 (146 against 137
 * on 256; 3.8 against 4.4 ms at 48 rows of 4096). */
#define THIN_R_PAIR 16
#endif
#ifndef THIN_K
#define THIN_K 16 /* depth up to which x·Wᵀ skips the GEMV (see matmul_f32) */
#endif
#define XWT_MAX_M 128
#define XWT_KC 768          /* depth slice of the x·Wᵀ path: a packed W panel slice is 96 KiB (L2) */
#ifndef XWT_PAR_MIN
/* m·n·k below which the x·Wᵀ path stays on one thread (about 10 µs of work, a few worker hand-offs).
 * On the 2-core machine with nothing else running, the built-in model's batched decode products (m 9..64
 * against W [256|704|1024, 256] and [256, 704]) run 1.3-1.5× faster on two threads (64×704×256:
 * 176-183 → 236-269 GFLOP/s at 2^22; 16×704×256: 132-137 → 177-189 at 2^20); the workers are still
 * spinning from the op before, so a hand-off costs little. Decoding 12-32 sequences is 1.1-1.4× faster
 * at 2^20 than at 2^22; at 2^19 the gain was lost in noise. With another job busy on both cores two
 * threads were measured slower (60-90 against 90-100 GFLOP/s, when only products of 2^25 were split); a
 * machine is seldom shared that way while it trains, and the over-decomposed tasks let the caller take
 * a descheduled worker's share. */
#define XWT_PAR_MIN (1 << 20)
#endif

/* Tasks for a product of mnk multiply-adds cut into `blocks` independent pieces (W panels, column or row
 * blocks): one below XWT_PAR_MIN, else up to 4 a thread, so that the caller takes a slow worker's share
 * instead of waiting for it. */
static inline int64_t block_parts(const serl_ctx *ctx, int64_t mnk, int64_t blocks) {
    if (ctx->threads < 2 || mnk < XWT_PAR_MIN) return 1;
    return blocks < 4 * ctx->threads ? blocks : 4 * ctx->threads;
}

/* The AVX-512 microkernel (matmul_avx512.c). */
void serl_sgemm_ukr_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                           float beta, int mr, int nr);
#define MR_AVX512 12
#define NR_AVX512 32

/* ------------------------------------------------------------------------- C tile write-back */

/* c[i,j] = alpha·t[i·ld_t + j] + beta·c[i,j] for the valid part of an edge tile; beta == 0 never reads c. */
static void store_edge(const float *t, int ld_t, float *c, int64_t ldc, float alpha, float beta, int mr, int nr) {
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        const float *ti = t + i * ld_t;
        if (beta == 0.0f)
            for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j];
        else
            for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j] + beta * ci[j];
    }
}

/* ------------------------------------------------------------------------- AVX2 microkernel, 6×16 */

#define MR_AVX2 6
#define NR_AVX2 16
#define SERL_PACK_MAX_R 32 /* the widest panel packed here: NR_AVX512 */
_Static_assert(MR_AVX512 <= SERL_PACK_MAX_R && NR_AVX512 <= SERL_PACK_MAX_R && NR_AVX2 <= SERL_PACK_MAX_R,
               "pack_n keeps a mask per 8 lanes of SERL_PACK_MAX_R");
_Static_assert(MR_AVX512 % 2 == 0 && MR_AVX2 % 2 == 0 && NR_AVX512 % 2 == 0 && NR_AVX2 % 2 == 0,
               "pack_n stores lanes in pairs at the least");

static inline __m256 combine8(__m256 acc, const float *c, __m256 va, __m256 vb, float beta) {
    __m256 r = _mm256_mul_ps(va, acc);
    if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), r);
    return r;
}

/* a and b are float32 panels (serl_gemm_ukr_fn). */
static void ukr_avx2(int64_t kc, const void *pa, const void *pb, float *c, int64_t ldc, float alpha, float beta,
                     int mr, int nr) {
    const float *a = pa, *b = pb;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int i = 0; i < mr; i++) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), av;
        av = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(av, b0, c40);
        c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(av, b0, c50);
        c51 = _mm256_fmadd_ps(av, b1, c51);
        a += MR_AVX2;
        b += NR_AVX2;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (mr == MR_AVX2 && nr == NR_AVX2) {
#define ROW(i, x0, x1)                                                         \
    _mm256_storeu_ps(c + i * ldc, combine8(x0, c + i * ldc, va, vb, beta));     \
    _mm256_storeu_ps(c + i * ldc + 8, combine8(x1, c + i * ldc + 8, va, vb, beta))
        ROW(0, c00, c01);
        ROW(1, c10, c11);
        ROW(2, c20, c21);
        ROW(3, c30, c31);
        ROW(4, c40, c41);
        ROW(5, c50, c51);
#undef ROW
        return;
    }
    float t[MR_AVX2 * NR_AVX2] __attribute__((aligned(32)));
    _mm256_store_ps(t + 0, c00), _mm256_store_ps(t + 8, c01);
    _mm256_store_ps(t + 16, c10), _mm256_store_ps(t + 24, c11);
    _mm256_store_ps(t + 32, c20), _mm256_store_ps(t + 40, c21);
    _mm256_store_ps(t + 48, c30), _mm256_store_ps(t + 56, c31);
    _mm256_store_ps(t + 64, c40), _mm256_store_ps(t + 72, c41);
    _mm256_store_ps(t + 80, c50), _mm256_store_ps(t + 88, c51);
    store_edge(t, NR_AVX2, c, ldc, alpha, beta, mr, nr);
}

static void ukr_avx512(int64_t kc, const void *a, const void *b, float *c, int64_t ldc, float alpha, float beta,
                       int mr, int nr) {
    serl_sgemm_ukr_avx512(kc, a, b, c, ldc, alpha, beta, mr, nr);
}

/* ------------------------------------------------------------------------- packing */

/* Transposing pack: lane r (< rv) of the panel is src[r·ld + p], contiguous along p. Writes
 * dst[p·R + r] for p < kc, r < R, zero for lanes rv..R-1. Blocks of 8×8 and 4×8 go through ymm
 * unpack/shuffle transposes; the leftovers are scalar. */
void serl_pack_t32(float *dst, const float *src, int64_t ld, int R, int rv, int64_t kc) {
    int r = 0;
    for (; r + 4 <= rv; r += (r + 8 <= rv ? 8 : 4)) {
        int eight = r + 8 <= rv;
        const float *s0 = src + r * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
        const float *s4 = s3 + ld, *s5 = s4 + ld, *s6 = s5 + ld, *s7 = s6 + ld;
        float *d = dst + r;
        int64_t p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 r0 = _mm256_loadu_ps(s0 + p), r1 = _mm256_loadu_ps(s1 + p);
            __m256 r2 = _mm256_loadu_ps(s2 + p), r3 = _mm256_loadu_ps(s3 + p);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            /* u_q holds lanes 0..3 of columns q (low half) and q+4 (high half) */
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            float *dp = d + p * R;
            if (eight) {
                __m256 r4 = _mm256_loadu_ps(s4 + p), r5 = _mm256_loadu_ps(s5 + p);
                __m256 r6 = _mm256_loadu_ps(s6 + p), r7 = _mm256_loadu_ps(s7 + p);
                __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                __m256 v0 = _mm256_shuffle_ps(t4, t6, 0x44), v1 = _mm256_shuffle_ps(t4, t6, 0xEE);
                __m256 v2 = _mm256_shuffle_ps(t5, t7, 0x44), v3 = _mm256_shuffle_ps(t5, t7, 0xEE);
                _mm256_storeu_ps(dp + 0 * R, _mm256_permute2f128_ps(u0, v0, 0x20));
                _mm256_storeu_ps(dp + 1 * R, _mm256_permute2f128_ps(u1, v1, 0x20));
                _mm256_storeu_ps(dp + 2 * R, _mm256_permute2f128_ps(u2, v2, 0x20));
                _mm256_storeu_ps(dp + 3 * R, _mm256_permute2f128_ps(u3, v3, 0x20));
                _mm256_storeu_ps(dp + 4 * R, _mm256_permute2f128_ps(u0, v0, 0x31));
                _mm256_storeu_ps(dp + 5 * R, _mm256_permute2f128_ps(u1, v1, 0x31));
                _mm256_storeu_ps(dp + 6 * R, _mm256_permute2f128_ps(u2, v2, 0x31));
                _mm256_storeu_ps(dp + 7 * R, _mm256_permute2f128_ps(u3, v3, 0x31));
            } else {
                _mm_storeu_ps(dp + 0 * R, _mm256_castps256_ps128(u0));
                _mm_storeu_ps(dp + 1 * R, _mm256_castps256_ps128(u1));
                _mm_storeu_ps(dp + 2 * R, _mm256_castps256_ps128(u2));
                _mm_storeu_ps(dp + 3 * R, _mm256_castps256_ps128(u3));
                _mm_storeu_ps(dp + 4 * R, _mm256_extractf128_ps(u0, 1));
                _mm_storeu_ps(dp + 5 * R, _mm256_extractf128_ps(u1, 1));
                _mm_storeu_ps(dp + 6 * R, _mm256_extractf128_ps(u2, 1));
                _mm_storeu_ps(dp + 7 * R, _mm256_extractf128_ps(u3, 1));
            }
        }
        int w = eight ? 8 : 4;
        for (; p < kc; p++)
            for (int q = 0; q < w; q++) d[p * R + q] = src[(r + q) * ld + p];
    }
    for (; r < rv; r++)
        for (int64_t p = 0; p < kc; p++) dst[p * R + r] = src[r * ld + p];
    if (rv < R)
        for (int64_t p = 0; p < kc; p++) memset(dst + p * R + rv, 0, (size_t)(R - rv) * sizeof(float));
}

/* Copying pack: lane r (< rv) at k-index p is src[p·ld + r], contiguous along r. Vector loads of 8
 * lanes, masked past lane rv (nothing beyond it is read, and the padding lanes come out zero), stored
 * in groups of 8, 4 and 2 lanes, so that R need not be a multiple of 8 (an A panel's 12 or 6 rows,
 * which went through a scalar loop before). Each k-index is a new row of src, up to 48 bytes used of
 * it: the loads wait on L3 (the operand's columns, a weight gradient's dy and x) unless its row
 * PACK_AHEAD further is asked for now, which took dyᵀ·x on one core from 0.90-0.95× OpenBLAS's time
 * to 0.94-0.98× (BenchmarkSGEMMGrad, built-in and 0.5B shapes). */
#define PACK_AHEAD 16
static void pack_n(float *dst, const float *src, int64_t ld, int R, int rv, int64_t kc) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i mask[(SERL_PACK_MAX_R + 7) / 8];
    for (int g = 0; g * 8 < R; g++) mask[g] = _mm256_cmpgt_epi32(_mm256_set1_epi32(rv - 8 * g), lane);
    const int whole = rv == R ? R & ~7 : 0; /* lanes stored from plain loads */
    for (int64_t p = 0; p < kc; p++) {
        const float *s = src + p * ld;
        float *d = dst + p * R;
        if (p + PACK_AHEAD < kc) {
            _mm_prefetch((const char *)(s + PACK_AHEAD * ld), _MM_HINT_T0);
            _mm_prefetch((const char *)(s + PACK_AHEAD * ld + rv - 1), _MM_HINT_T0);
        }
        int r = 0;
        for (; r < whole; r += 8) _mm256_storeu_ps(d + r, _mm256_loadu_ps(s + r));
        for (; r + 8 <= R; r += 8) _mm256_storeu_ps(d + r, _mm256_maskload_ps(s + r, mask[r / 8]));
        if (r == R) continue;
        __m256 v = _mm256_maskload_ps(s + r, mask[r / 8]);
        __m128 lo = _mm256_castps256_ps128(v);
        int left = R - r;
        if (left >= 4) {
            _mm_storeu_ps(d + r, lo);
            lo = _mm256_extractf128_ps(v, 1);
            r += 4, left -= 4;
        }
        if (left) _mm_storel_pi((__m64 *)(d + r), lo); /* the 2 lanes left of an AVX2 A panel's 6 */
    }
}

/* ------------------------------------------------------------------------- kernels of the blocked driver */

/* serl_pack_t32 and pack_n for an operand of either dtype (element offset off); bf16 is widened. */
#define PACK_T_CHUNK 64 /* depths widened at a time by a bf16 transposing pack: R·64 floats, 8 KiB at most */
static void pack_t_any(float *dst, const void *src, int32_t dt, int64_t off, int64_t ld, int R, int rv, int64_t kc) {
    if (dt == SERL_DTYPE_F32) {
        serl_pack_t32(dst, (const float *)src + off, ld, R, rv, kc);
        return;
    }
    /* The rows' next depths widened into a row-major block in L1, then the float32 transpose: an element
     * loop here made bf16 x·Wᵀ on CPUs without AVX-512 BF16 slower than float32 (every operand of the
     * blocked product packs through it). */
    const uint16_t *s = (const uint16_t *)src + off;
    float blk[SERL_PACK_MAX_R * PACK_T_CHUNK] __attribute__((aligned(32)));
    for (int64_t p0 = 0; p0 < kc; p0 += PACK_T_CHUNK) {
        const int64_t w = kc - p0 < PACK_T_CHUNK ? kc - p0 : PACK_T_CHUNK;
        for (int r = 0; r < rv; r++) serl_bf16_to_f32_n(blk + r * PACK_T_CHUNK, s + r * ld + p0, w);
        serl_pack_t32(dst + p0 * R, blk, PACK_T_CHUNK, R, rv, w);
    }
}

static void pack_n_any(float *dst, const void *src, int32_t dt, int64_t off, int64_t ld, int R, int rv, int64_t kc) {
    if (dt == SERL_DTYPE_F32) {
        pack_n(dst, (const float *)src + off, ld, R, rv, kc);
        return;
    }
    const uint16_t *s = (const uint16_t *)src + off;
    for (int64_t p = 0; p < kc; p++) {
        serl_bf16_to_f32_n(dst + p * R, s + p * ld, rv);
        for (int r = rv; r < R; r++) dst[p * R + r] = 0.0f;
    }
}

/* serl_gemm_pack_fn of the float32 kernels: float32 panels from float32 or bf16 operands. */
static void pack_f32(void *dst, const serl_gemm_operand *o, int64_t lane0, int64_t pc, int R, int rv, int64_t kc) {
    if (o->along_k)
        pack_t_any(dst, o->ptr, o->dtype, lane0 * o->ld + pc, o->ld, R, rv, kc);
    else
        pack_n_any(dst, o->ptr, o->dtype, pc * o->ld + lane0, o->ld, R, rv, kc);
}

static const serl_gemm_kernel kern_avx2 = {.mr = MR_AVX2, .nr = NR_AVX2, .elt_bytes = sizeof(float), .pack = pack_f32,
                                           .ukr = ukr_avx2};
static const serl_gemm_kernel kern_avx512 = {.mr = MR_AVX512, .nr = NR_AVX512, .elt_bytes = sizeof(float),
                                             .pack = pack_f32, .ukr = ukr_avx512};

/* ------------------------------------------------------------------------- small products */

static void gemm_small(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        float *ci = C + i * ldc;
        if (tb) {
            for (int64_t jj = 0; jj < n; jj++) {
                const float *bj = B + jj * ldb;
                float s = 0.0f;
                if (!ta) {
                    const float *ai = A + i * lda;
                    for (int64_t p = 0; p < k; p++) s += ai[p] * bj[p];
                } else {
                    for (int64_t p = 0; p < k; p++) s += A[p * lda + i] * bj[p];
                }
                ci[jj] = beta == 0.0f ? alpha * s : alpha * s + beta * ci[jj];
            }
        } else {
            if (beta == 0.0f)
                for (int64_t jj = 0; jj < n; jj++) ci[jj] = 0.0f;
            else if (beta != 1.0f)
                for (int64_t jj = 0; jj < n; jj++) ci[jj] *= beta;
            for (int64_t p = 0; p < k; p++) {
                float av = alpha * (ta ? A[p * lda + i] : A[i * lda + p]);
                const float *bp = B + p * ldb;
                for (int64_t jj = 0; jj < n; jj++) ci[jj] += av * bp[jj];
            }
        }
    }
}

/* ------------------------------------------------------------------------- GEMV-like: m ≤ GEMV_MAX_M, C = A·Wᵀ */

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 4 sums of 4 vectors each: [Σa, Σb, Σc, Σd]. */
static inline __m128 hsum4x8(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

static inline void store4(float *c, __m128 s, float alpha, float beta, int nj) {
    float v[4];
    _mm_storeu_ps(v, s);
    for (int q = 0; q < nj; q++) c[q] = beta == 0.0f ? alpha * v[q] : alpha * v[q] + beta * c[q];
}

/* One register block: NI (≤ 4) rows of x against 4 rows of W, dot products along k in ymm lanes, the
 * k tail through masked loads, the next block's rows prefetched (pf: serl_gemv_next, or NULL). Inlined
 * with a constant NI, so unused accumulators vanish. */
static inline __attribute__((always_inline)) void gemv_block(int NI, int64_t k, const float *const *x,
                                                             const float *const *w, float alpha, float beta,
                                                             float *c, int64_t ldc, int nj, const char *const *pf) {
    int64_t k8 = k & ~(int64_t)7;
    int tail = (int)(k - k8);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < NI; i++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[i][q] = _mm256_setzero_ps();
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    for (int64_t p = 0; p < k8; p += 8) {
        serl_gemv_prefetch(pf, p * (int64_t)sizeof(float), 8 * sizeof(float));
        __m256 vw0 = _mm256_loadu_ps(w0 + p), vw1 = _mm256_loadu_ps(w1 + p);
        __m256 vw2 = _mm256_loadu_ps(w2 + p), vw3 = _mm256_loadu_ps(w3 + p);
#pragma GCC unroll 4
        for (int i = 0; i < NI; i++) {
            __m256 vx = _mm256_loadu_ps(x[i] + p);
            acc[i][0] = _mm256_fmadd_ps(vx, vw0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(vx, vw1, acc[i][1]);
            acc[i][2] = _mm256_fmadd_ps(vx, vw2, acc[i][2]);
            acc[i][3] = _mm256_fmadd_ps(vx, vw3, acc[i][3]);
        }
    }
    if (tail) {
        __m256i tm = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 vw0 = _mm256_maskload_ps(w0 + k8, tm), vw1 = _mm256_maskload_ps(w1 + k8, tm);
        __m256 vw2 = _mm256_maskload_ps(w2 + k8, tm), vw3 = _mm256_maskload_ps(w3 + k8, tm);
#pragma GCC unroll 4
        for (int i = 0; i < NI; i++) {
            __m256 vx = _mm256_maskload_ps(x[i] + k8, tm);
            acc[i][0] = _mm256_fmadd_ps(vx, vw0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(vx, vw1, acc[i][1]);
            acc[i][2] = _mm256_fmadd_ps(vx, vw2, acc[i][2]);
            acc[i][3] = _mm256_fmadd_ps(vx, vw3, acc[i][3]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NI; i++)
        store4(c + i * ldc, hsum4x8(acc[i][0], acc[i][1], acc[i][2], acc[i][3]), alpha, beta, nj);
}

/* Rows [j0, j1) of W against all m rows of x: blocks of 4 W rows (L1 resident) × up to 4 x rows, every
 * x row passing each W block, so W is streamed from memory once. A partial W block repeats its last
 * row, computed but not stored. */
static void gemv_rows_avx2(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const float *W,
                           int64_t ldw, float beta, float *C, int64_t ldc, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j += 4) {
        int nj = (int)(j1 - j < 4 ? j1 - j : 4);
        const float *w[4];
        for (int q = 0; q < 4; q++) w[q] = W + (j + (q < nj ? q : nj - 1)) * ldw;
        const char *next[4];
        const int more = serl_gemv_next(next, W, ldw, sizeof(float), j, j1);
        for (int64_t i = 0; i < m; i += 4) {
            int ni = (int)(m - i < 4 ? m - i : 4);
            const float *x[4] = {X + i * ldx, X + (i + 1) * ldx, X + (i + 2) * ldx, X + (i + 3) * ldx};
            float *c = C + i * ldc + j;
            const char *const *pf = more && i == 0 ? next : NULL;
            switch (ni) {
            case 1: gemv_block(1, k, x, w, alpha, beta, c, ldc, nj, pf); break;
            case 2: gemv_block(2, k, x, w, alpha, beta, c, ldc, nj, pf); break;
            case 3: gemv_block(3, k, x, w, alpha, beta, c, ldc, nj, pf); break;
            default: gemv_block(4, k, x, w, alpha, beta, c, ldc, nj, pf); break;
            }
        }
    }
}

/* The AVX-512 GEMV (matmul_avx512.c), the same blocking on 16 lanes. */
void serl_gemv_rows_avx512(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const float *W,
                           int64_t ldw, float beta, float *C, int64_t ldc, int64_t j0, int64_t j1);

typedef void (*gemv_rows_fn)(int64_t m, int64_t k, float alpha, const float *X, int64_t ldx, const float *W,
                             int64_t ldw, float beta, float *C, int64_t ldc, int64_t j0, int64_t j1);

typedef struct {
    int64_t m, n, k, ldx, ldw, ldc, parts;
    float alpha, beta;
    const float *X, *W;
    float *C;
    gemv_rows_fn rows;
} gemv_job;

static void gemv_task(void *arg, int64_t t, int worker) {
    (void)worker;
    gemv_job *g = arg;
    int64_t lo, hi;
    if (serl_gemv_rows(g->n, g->parts, t, &lo, &hi)) g->rows(g->m, g->k, g->alpha, g->X, g->ldx, g->W, g->ldw, g->beta, g->C, g->ldc, lo, hi);
}

/* The GEMV over a chunk of x's rows (serl_skinny_parts) against all of W (few rows, L1 resident): the
 * chunk's rows stay in L2 while each block of W rows passes them. */
static void skinny_task(void *arg, int64_t t, int worker) {
    (void)worker;
    gemv_job *g = arg;
    int64_t lo, hi;
    serl_chunk(g->m, g->parts, t, &lo, &hi);
    g->rows(hi - lo, g->k, g->alpha, g->X + lo * g->ldx, g->ldx, g->W, g->ldw, g->beta, g->C + lo * g->ldc, g->ldc, 0, g->n);
}

/* ------------------------------------------------------------------------- x·Wᵀ, m ≤ XWT_MAX_M */

/* C[mr×nr] = alpha·X[mr×kc]·P + beta·C, X unpacked (row stride ldx), P a W panel packed k-major with
 * NR lanes; mr ≤ MR of the kernel, nr ≤ NR. beta == 0 never reads C. */
typedef void (*xwt_fn)(int64_t kc, const float *x, int64_t ldx, int mr, const float *b, float *c, int64_t ldc,
                       float alpha, float beta, int nr);
void serl_xwt_avx512(int64_t kc, const float *x, int64_t ldx, int mr, const float *b, float *c, int64_t ldc,
                     float alpha, float beta, int nr);

static inline __attribute__((always_inline)) void xwt_block_avx2(const int R, int64_t kc, const float *x,
                                                                 int64_t ldx, const float *b, float *c,
                                                                 int64_t ldc, float alpha, float beta, int nr) {
    __m256 c0[MR_AVX2], c1[MR_AVX2];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            __m256 av = _mm256_broadcast_ss(x + i * ldx + p);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
        b += NR_AVX2;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (nr == NR_AVX2) {
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            float *ci = c + i * ldc;
            _mm256_storeu_ps(ci, combine8(c0[i], ci, va, vb, beta));
            _mm256_storeu_ps(ci + 8, combine8(c1[i], ci + 8, va, vb, beta));
        }
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
        __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
        if (beta != 0.0f) {
            r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
            r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
        }
        _mm256_maskstore_ps(ci, m0, r0);
        _mm256_maskstore_ps(ci + 8, m1, r1);
    }
}

static void xwt_avx2(int64_t kc, const float *x, int64_t ldx, int mr, const float *b, float *c, int64_t ldc,
                     float alpha, float beta, int nr) {
    switch (mr) {
#define CASE(R) \
    case R: xwt_block_avx2(R, kc, x, ldx, b, c, ldc, alpha, beta, nr); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
    default: break;
    }
}

typedef struct {
    int64_t m, n, k, ldx, ldw, ldc, parts, panels, kc_blk;
    float alpha, beta;
    const float *X;
    const void *W; /* float32, or bf16 widened as its panels are packed */
    int32_t w_dtype;
    float *C;
    int nr_max, mr_max;
    xwt_fn fn;
    float *pack[SERL_MAX_THREADS]; /* per worker: one packed W panel slice, kc_blk × nr_max */
} xwt_job;

/* W panels [q0, q1) (nr_max rows of W each = nr_max columns of C) against all m rows of x: each panel
 * slice is packed once and then serves every row block while it is hot in L1/L2. Rows are cut into
 * near-equal blocks of ≤ mr_max, so no block computes padding rows. */
static void xwt_panels(const xwt_job *g, float *pack, int64_t q0, int64_t q1) {
    const int NR = g->nr_max;
    int64_t mb = (g->m + g->mr_max - 1) / g->mr_max;
    for (int64_t q = q0; q < q1; q++) {
        int64_t j = q * NR;
        int nr = (int)(g->n - j < NR ? g->n - j : NR);
        for (int64_t pc = 0; pc < g->k; pc += g->kc_blk) {
            int64_t kc = g->k - pc < g->kc_blk ? g->k - pc : g->kc_blk;
            pack_t_any(pack, g->W, g->w_dtype, j * g->ldw + pc, g->ldw, NR, nr, kc);
            float beta = pc == 0 ? g->beta : 1.0f;
            for (int64_t bi = 0; bi < mb; bi++) {
                int64_t lo, hi;
                serl_chunk(g->m, mb, bi, &lo, &hi);
                g->fn(kc, g->X + lo * g->ldx + pc, g->ldx, (int)(hi - lo), pack, g->C + lo * g->ldc + j, g->ldc,
                      g->alpha, beta, nr);
            }
        }
    }
}

static void xwt_task(void *arg, int64_t t, int worker) {
    const xwt_job *g = arg;
    int64_t lo, hi;
    serl_chunk(g->panels, g->parts, t, &lo, &hi);
    xwt_panels(g, g->pack[worker], lo, hi);
}

/* j for x·Wᵀ, m×n×k with float32 x and C and W of w_dtype: blocking, tasks (split by W panels) and the
 * workers' panel buffers; SERL_OK, or the out-of-memory error. xwt_run then runs it on one matrix. */
static int32_t xwt_setup(serl_ctx *ctx, xwt_job *j, int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldw,
                         int64_t ldc, float alpha, float beta, int32_t w_dtype) {
    const int avx512 = ctx->simd >= SERL_SIMD_AVX512;
    const int64_t slices = ceil_div(k, XWT_KC);
    *j = (xwt_job){.m = m, .n = n, .k = k, .ldx = ldx, .ldw = ldw, .ldc = ldc, .parts = 1,
                   .kc_blk = ceil_div(k, slices), .alpha = alpha, .beta = beta, .w_dtype = w_dtype,
                   .nr_max = avx512 ? NR_AVX512 : NR_AVX2, .mr_max = avx512 ? MR_AVX512 : MR_AVX2,
                   .fn = avx512 ? serl_xwt_avx512 : xwt_avx2};
    j->panels = ceil_div(n, j->nr_max);
    j->parts = block_parts(ctx, m * n * k, j->panels);
    const int workers = j->parts > 1 ? ctx->threads : 1;
    for (int w = 0; w < workers; w++) {
        j->pack[w] = serl_scratch(ctx, w, (size_t)(j->kc_blk * j->nr_max) * sizeof(float));
        if (!j->pack[w]) return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for packing buffers");
    }
    return SERL_OK;
}

static void xwt_run(serl_ctx *ctx, xwt_job *j, const float *X, const void *W, float *C) {
    j->X = X, j->W = W, j->C = C;
    if (j->parts > 1)
        serl_parallel(ctx, j->parts, xwt_task, j);
    else
        xwt_panels(j, j->pack[0], 0, j->panels);
}

/* ------------------------------------------------------------------------- x·Wᵀ, W read as it lies (AVX-512)
 *
 * The x·Wᵀ path's product on AVX-512 for a W of rows LONG_K or longer (a real model's weights, streamed
 * from memory in decoding): x is packed once into panels of 32 rows (the last one 16 or 32 lanes wide)
 * and serl_wxt_avx512 broadcasts W's rows from where they lie against them, 12 W rows (12 columns of C) a
 * tile, asking for the next tile's rows while it works; a bf16 W's tile is widened row by row into the
 * worker's L1 first (no transpose). The packed path packs W panel by panel, waiting on memory with
 * nothing to overlap; here x, m×k against W's n×k, is what is packed. Qwen2.5-0.5B's MLP up projection,
 * W [4864, 896] cycled through 128 MiB (BenchmarkGEMVStream, one core of an Emerald Rapids Xeon, medians
 * of 3): 64 rows 1.28× in f32, 1.21× in bf16, 1.17× f32 x against a bf16 W, 128 rows 1.06-1.09×; against
 * OpenBLAS's SkylakeX sgemm call by call 1.08-1.12× became 1.36-1.39× at 64 rows, 1.07× became 1.17× at 128.
 * Decoding the 0.5B shape (serl bench --mode decode, 64 sequences, two cores), its products of 40-64
 * rows: 1.14× (MLP up and gate), 1.10× (down), 1.08× (q, o) in f32, 1.10×, 1.03-1.06×, 1.02-1.05× in
 * bf16. Against a W in L2 (the built-in model's shapes, k 256 and 704) the packed path's packing is cheap
 * and this one's wasted lanes in x's last panel weigh: 0.8-0.95× at 40, 56 and 100 rows, hence the depth
 * rule (wxt_fits). Depth is sliced as the packed path slices it and bf16 widens exactly, so the bits are
 * the same. Tasks split W's rows. */
void serl_wxt_avx512(int64_t kc, const float *w, int64_t ldw, const char *wn, int64_t wn_ld, int wn_es, int nw,
                     const float *xp, int nx, float *c, int64_t ldc, float alpha, float beta);
#define WXT_MR 12 /* W rows a tile */
#define WXT_XR 32 /* x rows a panel */

typedef struct {
    int64_t m, n, k, ldw, ldc, kc_blk, parts, blocks;
    float alpha, beta;
    float *xp;     /* x's panels */
    const void *W; /* float32, or bf16 widened a tile at a time into tile[worker] */
    int wbf;
    float *C;
    float *tile[SERL_MAX_THREADS]; /* bf16 W: per worker, WXT_MR rows of kc_blk floats */
} wxt_job;

static inline int wxt_width(int64_t rows) { return rows > 16 ? 32 : 16; }

/* Whether an x·Wᵀ of the x·Wᵀ path's rows reads W as it lies: on AVX-512, rows of W of LONG_K or more,
 * and W at least 4× x (x is packed by the caller alone: against the 0.5B shape's k and v projections,
 * 128 rows of W, 40-64 rows of x took 1.25-1.4× the packed path's time in bf16). */
static inline int wxt_fits(const serl_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    return ctx->simd >= SERL_SIMD_AVX512 && k >= LONG_K && n >= 4 * m;
}

static void wxt_task(void *arg, int64_t t, int worker) {
    const wxt_job *g = arg;
    const int64_t es = g->wbf ? 2 : 4, ldwb = g->ldw * es; /* W's element and row bytes */
    int64_t lo, hi;
    serl_chunk(g->blocks, g->parts, t, &lo, &hi);
    for (int64_t q = lo; q < hi; q++) {
        const int64_t j = q * WXT_MR;
        const int nw = (int)(g->n - j < WXT_MR ? g->n - j : WXT_MR);
        for (int64_t pc = 0; pc < g->k; pc += g->kc_blk) {
            const int64_t kc = g->k - pc < g->kc_blk ? g->k - pc : g->kc_blk;
            const float beta = pc == 0 ? g->beta : 1.0f;
            const char *wt = (const char *)g->W + (j * g->ldw + pc) * es; /* the tile's first row */
            const float *w = (const float *)wt;
            int64_t ldw = g->ldw;
            if (g->wbf) {
                float *tl = g->tile[worker];
                for (int i = 0; i < nw; i++) serl_bf16_to_f32_n(tl + i * kc, (const uint16_t *)(wt + i * ldwb), kc);
                w = tl, ldw = kc;
            }
            /* the next tile's rows (the next slice, or block), asked for by the first x panel */
            const char *wn = pc + kc < g->k ? wt + kc * es : q + 1 < hi ? (const char *)g->W + (j + WXT_MR) * ldwb : NULL;
            for (int64_t r0 = 0; r0 < g->m; r0 += WXT_XR) {
                const int64_t nx = g->m - r0 < WXT_XR ? g->m - r0 : WXT_XR;
                serl_wxt_avx512(kc, w, ldw, r0 == 0 ? wn : NULL, ldwb, (int)es, nw,
                                g->xp + r0 * g->k + pc * wxt_width(nx), (int)nx, g->C + r0 * g->ldc + j, g->ldc,
                                g->alpha, beta);
            }
        }
    }
}

/* j for x·Wᵀ, m×n×k (m ≤ XWT_MAX_M) with a W of w_dtype and float32 x and C: blocking, tasks (split by W
 * tiles), the x panels (worker 0's scratch) and a bf16 W's tile buffers; SERL_OK, or the out-of-memory
 * error. wxt_run then runs it on one matrix. */
static int32_t wxt_setup(serl_ctx *ctx, wxt_job *j, int64_t m, int64_t n, int64_t k, int64_t ldw, int64_t ldc,
                         float alpha, float beta, int32_t w_dtype) {
    *j = (wxt_job){.m = m, .n = n, .k = k, .ldw = ldw, .ldc = ldc, .kc_blk = ceil_div(k, ceil_div(k, XWT_KC)),
                   .blocks = ceil_div(n, WXT_MR), .alpha = alpha, .beta = beta, .wbf = w_dtype == SERL_DTYPE_BF16};
    j->parts = block_parts(ctx, m * n * k, j->blocks);
    /* the tile first, rounded to 16 floats: the x panels' loads are aligned */
    const size_t xn = (size_t)(ceil_div(m, WXT_XR) * WXT_XR * k);
    const size_t tn = j->wbf ? (size_t)(WXT_MR * j->kc_blk + 15) & ~(size_t)15 : 0;
    const int workers = j->parts > 1 ? ctx->threads : 1;
    for (int w = 0; w < workers; w++) {
        float *s = serl_scratch(ctx, w, sizeof(float) * (tn + (w == 0 ? xn : 0)));
        if (!s) return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for x's panels and W's tiles");
        j->tile[w] = s;
        if (w == 0) j->xp = s + tn;
    }
    return SERL_OK;
}

static void wxt_run(serl_ctx *ctx, wxt_job *j, const float *X, int64_t ldx, const void *W, float *C) {
    for (int64_t r0 = 0; r0 < j->m; r0 += WXT_XR) {
        const int64_t nx = j->m - r0 < WXT_XR ? j->m - r0 : WXT_XR;
        serl_pack_t32(j->xp + r0 * j->k, X + r0 * ldx, ldx, wxt_width(nx), (int)nx, j->k);
    }
    j->W = W, j->C = C;
    serl_parallel(ctx, j->parts, wxt_task, j);
}

/* ------------------------------------------------------------------------- Aᵀ·B with few rows or columns
 *
 * C = alpha·Aᵀ·B + beta·C where m or n is at most THIN_R and k is long: a LoRA adapter's weight gradients
 * dA += duᵀ·x (m = rank) and dB += dyᵀ·u (n = rank), k the tokens. As out[j, c] = Σ_t h[t, j]·l[t, c]
 * with h the thin operand: all rows of out for a block of columns stay in registers while the rows of l
 * stream past once (the blocked kernel packed both operands for a tile a quarter full, 30-50 GFLOP/s).
 * With n the thin side, out is Cᵀ in scratch, added into C after. Tasks split the columns only, so every
 * sum runs in t order whatever the thread count. bf16 operands are widened in registers as they are
 * loaded (the bf16 pair kernel's tiles were as empty: 40-50 GFLOP/s). */
typedef void (*thin_fn)(int hbf, int lbf, int64_t T, int64_t r, const void *h, int64_t ldh, const void *l, int64_t ldl,
                        float *out, int64_t ldo, float alpha, float beta, int64_t c0, int64_t c1);
void serl_thin_cols_avx512(int hbf, int lbf, int64_t T, int64_t r, const void *h, int64_t ldh, const void *l,
                           int64_t ldl, float *out, int64_t ldo, float alpha, float beta, int64_t c0, int64_t c1);

/* 8 elements of a float32 or bf16 (lbf) row, those from cols on zero. */
static inline __m256 thin_ld8(const void *p, int lbf, int cols, __m256i mk) {
    if (!lbf) return _mm256_maskload_ps((const float *)p, mk);
    if (cols >= 8) return serl_bf16x8_to_f32(_mm_loadu_si128((const __m128i *)p));
    uint16_t t[8] = {0};
    memcpy(t, p, sizeof(uint16_t) * (size_t)cols);
    return serl_bf16x8_to_f32(_mm_loadu_si128((const __m128i *)t));
}

/* The AVX2 block: R (≤ 8) rows × 8 columns, the columns past cols masked. */
static inline __attribute__((always_inline)) void thin_block8(const int R, const int hbf, const int lbf, int64_t T,
                                                              const void *h, int64_t ldh, const void *l, int64_t ldl,
                                                              float *out, int64_t ldo, float alpha, float beta, int cols) {
    const size_t hs = hbf ? 2 : 4, ls = lbf ? 2 : 4;
    __m256 acc[8];
    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
#pragma GCC unroll 8
    for (int j = 0; j < R; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t t = 0; t < T; t++) {
        const char *lt = (const char *)l + (size_t)(t * ldl) * ls, *ht = (const char *)h + (size_t)(t * ldh) * hs;
        _mm_prefetch(lt + (size_t)(SERL_THIN_PF * ldl) * ls, _MM_HINT_T0);
        __m256 x = thin_ld8(lt, lbf, cols, mk);
#pragma GCC unroll 8
        for (int j = 0; j < R; j++)
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(hbf ? serl_bf16_to_f32(((const uint16_t *)ht)[j]) : ((const float *)ht)[j]),
                                     x, acc[j]);
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int j = 0; j < R; j++) {
        __m256 y = _mm256_mul_ps(va, acc[j]);
        if (beta != 0.0f) y = _mm256_fmadd_ps(vb, _mm256_maskload_ps(out + j * ldo, mk), y);
        _mm256_maskstore_ps(out + j * ldo, mk, y);
    }
}

static inline __attribute__((always_inline)) void thin_cols8(const int hbf, const int lbf, int64_t T, int64_t r,
                                                             const void *h, int64_t ldh, const void *l, int64_t ldl,
                                                             float *out, int64_t ldo, float alpha, float beta,
                                                             int64_t c0, int64_t c1) {
    const size_t hs = hbf ? 2 : 4, ls = lbf ? 2 : 4;
    for (int64_t c = c0; c < c1; c += 8) {
        const int cols = (int)(c1 - c < 8 ? c1 - c : 8);
        for (int64_t j = 0; j < r; j += 8) {
            const void *hj = (const char *)h + j * hs, *lc = (const char *)l + c * ls;
            float *o = out + j * ldo + c;
#define BLOCK(R) thin_block8(R, hbf, lbf, T, hj, ldh, lc, ldl, o, ldo, alpha, beta, cols)
            SERL_ROWS_1_TO_8(r - j, BLOCK)
#undef BLOCK
        }
    }
}

static void thin_cols_avx2(int hbf, int lbf, int64_t T, int64_t r, const void *h, int64_t ldh, const void *l,
                           int64_t ldl, float *out, int64_t ldo, float alpha, float beta, int64_t c0, int64_t c1) {
#define COLS(HBF, LBF) thin_cols8(HBF, LBF, T, r, h, ldh, l, ldl, out, ldo, alpha, beta, c0, c1)
    SERL_FLAGS2(hbf, lbf, COLS);
#undef COLS
}

typedef struct {
    int64_t T, r, L, ldh, ldl, ldo, parts, blk;
    float alpha, beta;
    const void *h, *l;
    int hbf, lbf;
    float *out;
    thin_fn fn;
} thin_job;

static void thin_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const thin_job *g = arg;
    int64_t lo, hi;
    if (serl_chunk_blocks(g->L, g->blk, g->parts, t, &lo, &hi))
        g->fn(g->hbf, g->lbf, g->T, g->r, g->h, g->ldh, g->l, g->ldl, g->out, g->ldo, g->alpha, g->beta, lo, hi);
}

/* Validated args with trans_a, !trans_b, m or n ≤ THIN_R (or THIN_R_PAIR), float32 or bf16 A and B, a
 * float32 C, k > 0 and alpha ≠ 0. */
static int32_t matmul_thin(serl_ctx *ctx, const serl_matmul_args *a) {
    const int64_t m = a->m, n = a->n, k = a->k;
    const int avx512 = ctx->simd >= SERL_SIMD_AVX512, abf = a->a_dtype == SERL_DTYPE_BF16, bbf = a->b_dtype == SERL_DTYPE_BF16;
    float *ct = NULL; /* Cᵀ when n is the thin side (the smaller one) */
    if (n < m && !(ct = serl_scratch(ctx, 0, sizeof(float) * (size_t)(m * n))))
        return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for a transposed C");
    for (int64_t b = 0; b < a->batch; b++) {
        const void *A = serl_at(a->a, a->a_dtype, b * a->stride_a), *B = serl_at(a->b, a->b_dtype, b * a->stride_b);
        float *C = (float *)a->c + b * a->stride_c;
        thin_job g = {.T = k, .blk = avx512 ? 48 : 8, .alpha = a->alpha, .fn = avx512 ? serl_thin_cols_avx512 : thin_cols_avx2};
        if (!ct) /* out = C: h = A [k, m], l = B [k, n] */
            g.r = m, g.L = n, g.h = A, g.hbf = abf, g.ldh = a->lda, g.l = B, g.lbf = bbf, g.ldl = a->ldb, g.out = C,
            g.ldo = a->ldc, g.beta = a->beta;
        else /* out = Cᵀ [n, m]: h = B [k, n], l = A [k, m] */
            g.r = n, g.L = m, g.h = B, g.hbf = bbf, g.ldh = a->ldb, g.l = A, g.lbf = abf, g.ldl = a->lda, g.out = ct,
            g.ldo = m, g.beta = 0.0f;
        g.parts = block_parts(ctx, m * n * k, ceil_div(g.L, g.blk));
        serl_parallel(ctx, g.parts, thin_task, &g);
        if (ct)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    C[i * a->ldc + j] = a->beta == 0.0f ? ct[j * m + i] : ct[j * m + i] + a->beta * C[i * a->ldc + j];
    }
    return SERL_OK;
}

/* ------------------------------------------------------------------------- short rows of W into a bf16 C
 *
 * C = alpha·x·op(W) + beta·C with k ≤ THIN_K, many rows of x and a bf16 C (a LoRA adapter's u·Bᵀ and du·A
 * in bf16 training, k = rank), on AVX-512: W, small, is laid out in float32 scratch as Wt [k, n], then
 * every row of C is read and rounded once, in registers (serl_shortk_rows_avx512). The pair kernel went
 * through a float32 copy of C, three times the traffic (10 GB/s of C). */
void serl_shortk_rows_avx512(int xbf, int64_t i0, int64_t i1, int64_t n, int64_t k, float alpha, const void *X,
                             int64_t ldx, const float *Wt, float beta, uint16_t *C, int64_t ldc);

typedef struct {
    const serl_matmul_args *a;
    int64_t b, parts;
    const float *wt;
} shortk_job;

static void shortk_task(void *arg, int64_t t, int worker) {
    (void)worker;
    const shortk_job *g = arg;
    const serl_matmul_args *a = g->a;
    int64_t lo, hi;
    if (serl_chunk_blocks(a->m, 4, g->parts, t, &lo, &hi)) /* the kernel's blocks of 4 rows */
        serl_shortk_rows_avx512(a->a_dtype == SERL_DTYPE_BF16, lo, hi, a->n, a->k, a->alpha,
                                serl_at(a->a, a->a_dtype, g->b * a->stride_a), a->lda, g->wt, a->beta,
                                (uint16_t *)a->c + g->b * a->stride_c, a->ldc);
}

/* Wt [k, n] = op(W[b]) in float32: rows widened as they are when W is stored [k, n] (du·A); stored
 * [n, k] (trans_b: u·Bᵀ), widened into tmp (n·k floats) where bf16, then transposed in 8×8 blocks by
 * the packing transpose, rather than element by element with a dtype test each. */
static void shortk_layout(float *wt, float *tmp, const serl_matmul_args *a, int64_t b) {
    const int64_t n = a->n, k = a->k, off = b * a->stride_b, ld = a->ldb;
    if (!a->trans_b) {
        for (int64_t p = 0; p < k; p++) serl_load_f32(wt + p * n, a->b, a->b_dtype, off + p * ld, n);
        return;
    }
    const float *w = (const float *)a->b + off;
    int64_t ldw = ld;
    if (a->b_dtype == SERL_DTYPE_BF16) {
        if (ld == k)
            serl_load_f32(tmp, a->b, a->b_dtype, off, n * k);
        else
            for (int64_t j = 0; j < n; j++) serl_load_f32(tmp + j * k, a->b, a->b_dtype, off + j * ld, k);
        w = tmp, ldw = k;
    }
    serl_pack_t32(wt, w, ldw, (int)n, (int)n, k);
}

/* Validated args with !trans_a, k ≤ THIN_K, k > 0, alpha ≠ 0, a bf16 C, on an AVX-512 context. */
static int32_t matmul_shortk(serl_ctx *ctx, const serl_matmul_args *a) {
    const int64_t m = a->m, n = a->n, k = a->k;
    float *wt = serl_scratch(ctx, 0, sizeof(float) * (size_t)(2 * k * n)); /* Wt, then widened W */
    if (!wt) return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory laying out W");
    for (int64_t b = 0; b < a->batch; b++) {
        shortk_layout(wt, wt + k * n, a, b);
        shortk_job g = {a, b, block_parts(ctx, m * n * k, ceil_div(m, 4)), wt};
        serl_parallel(ctx, g.parts, shortk_task, &g);
    }
    return SERL_OK;
}

/* ------------------------------------------------------------------------- entry */

typedef struct {
    const serl_matmul_args *a;
    int64_t parts;
} batch_job;

/* Small products of a batch, spread over the pool by batch index. */
static void small_batch_task(void *arg, int64_t t, int worker) {
    (void)worker;
    batch_job *bj = arg;
    const serl_matmul_args *a = bj->a;
    int64_t lo, hi;
    serl_chunk(a->batch, bj->parts, t, &lo, &hi);
    for (int64_t b = lo; b < hi; b++)
        gemm_small(a->trans_a, a->trans_b, a->m, a->n, a->k, a->alpha, (const float *)a->a + b * a->stride_a, a->lda,
                   (const float *)a->b + b * a->stride_b, a->ldb, a->beta, (float *)a->c + b * a->stride_c, a->ldc);
}

static void scale_c(float *c, int64_t m, int64_t n, int64_t ldc, float beta) {
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f)
            memset(ci, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            for (int64_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

static int32_t matmul_f32(serl_ctx *ctx, const serl_matmul_args *a, int use_ab);
int32_t serl_matmul_bf16(serl_ctx *ctx, const serl_matmul_args *a);
int32_t serl_matmul_bf16_gemv(serl_ctx *ctx, const serl_matmul_args *a);

/* Elements an operand of `rows`×`cols` (row stride ld, batch stride stride) spans from its base. */
static int64_t span_of(int64_t batch, int64_t stride, int64_t rows, int64_t cols, int64_t ld) {
    if (rows == 0 || cols == 0) return 0;
    return (batch - 1) * stride + (rows - 1) * ld + cols;
}

/* Small products with a bf16 operand, and f32 products into a bf16 C: the bf16 operands are widened
 * into float32 copies (exact), the float32 product runs on them, and a bf16 C is rounded back, its view
 * only (elements between C's rows and matrices are never written). */
static int32_t matmul_mixed(serl_ctx *ctx, const serl_matmul_args *a, int use_ab) {
    const int64_t m = a->m, n = a->n, k = a->k, batch = a->batch;
    serl_matmul_args f = *a;
    f.a_dtype = f.b_dtype = f.c_dtype = SERL_DTYPE_F32;
    float *tmp[2] = {NULL, NULL}, *wc = NULL; /* widened A and B (freed here), C (context scratch) */
    int32_t st = SERL_OK;
    if (use_ab && a->a_dtype == SERL_DTYPE_BF16) {
        int64_t sp = span_of(batch, a->stride_a, a->trans_a ? k : m, a->trans_a ? m : k, a->lda);
        if (!(tmp[0] = serl_aligned_alloc(sizeof(float) * (size_t)sp))) goto nomem;
        serl_bf16_to_f32_n(tmp[0], a->a, sp);
        f.a = tmp[0];
    }
    if (use_ab && a->b_dtype == SERL_DTYPE_BF16) {
        int64_t sp = span_of(batch, a->stride_b, a->trans_b ? n : k, a->trans_b ? k : n, a->ldb);
        if (!(tmp[1] = serl_aligned_alloc(sizeof(float) * (size_t)sp))) goto nomem;
        serl_bf16_to_f32_n(tmp[1], a->b, sp);
        f.b = tmp[1];
    }
    if (a->c_dtype == SERL_DTYPE_BF16) {
        int64_t sp = span_of(batch, a->stride_c, m, n, a->ldc);
        if (!(wc = serl_scratch_shared(ctx, sizeof(float) * (size_t)sp))) goto nomem;
        if (a->beta != 0.0f) serl_bf16_to_f32_n(wc, a->c, sp);
        f.c = wc;
    }
    st = matmul_f32(ctx, &f, use_ab);
    if (st == SERL_OK && wc)
        for (int64_t b = 0; b < batch; b++)
            for (int64_t i = 0; i < m; i++) {
                int64_t off = b * a->stride_c + i * a->ldc;
                serl_f32_to_bf16_n((uint16_t *)a->c + off, wc + off, n);
            }
    for (int i = 0; i < 2; i++) serl_aligned_free(tmp[i]);
    return st;
nomem:
    for (int i = 0; i < 2; i++) serl_aligned_free(tmp[i]);
    return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory widening bf16 operands");
}

/* Products with a bf16 operand and no kernel of their own (CPUs without AVX-512 BF16, mixed f32 × bf16): the
 * blocked driver with the float32 kernels, their packing widening bf16 panels, so no operand is copied whole; a
 * bf16 C is rounded once, from the driver's float32 block. x·Wᵀ with few rows of x (a decode step's
 * products, 17 to XWT_MAX_M sequences) takes the x·Wᵀ path as float32 does, x widened once: the blocked
 * driver packed x as well, for W panels that serve few rows (config S decoding 64 prompts in bf16 ran
 * at 0.60-0.83× f32's tokens/s under AVX2, and runs at 0.99-1.32×). */
static int32_t matmul_widen_blocked(serl_ctx *ctx, const serl_matmul_args *a) {
    const int64_t m = a->m, n = a->n, k = a->k;
    const serl_gemm_kernel *kern = ctx->simd >= SERL_SIMD_AVX512 ? &kern_avx512 : &kern_avx2;
    const int xwt = a->trans_b && !a->trans_a && m <= XWT_MAX_M, xbf = xwt && a->a_dtype == SERL_DTYPE_BF16;
    /* the x·Wᵀ path writes a float32 C: a bf16 one goes through a float32 [m, n] (m ≤ XWT_MAX_M); the
     * blocked driver rounds a bf16 C itself */
    const int cbf = xwt && a->c_dtype == SERL_DTYPE_BF16;
    const int64_t ldc = cbf ? n : a->ldc; /* of the float32 C the x·Wᵀ kernels write */
    const size_t csz = (size_t)serl_dtype_size(a->c_dtype);
    const int wxt = xwt && wxt_fits(ctx, m, n, k); /* W read as it lies */
    xwt_job xj;
    wxt_job wj;
    float *tmp = NULL, *xw = NULL; /* a float32 C [m, n] and x [m, k], one shared scratch */
    if (cbf || xbf) {
        const size_t cn = cbf ? (size_t)(m * n) : 0, xn = xbf ? (size_t)(m * k) : 0;
        float *s = serl_scratch_shared(ctx, sizeof(float) * (cn + xn));
        if (!s) return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for float32 copies of x and C");
        tmp = cbf ? s : NULL;
        xw = xbf ? s + cn : NULL;
    }
    if (xwt) {
        int32_t st = wxt ? wxt_setup(ctx, &wj, m, n, k, a->ldb, ldc, a->alpha, a->beta, a->b_dtype)
                         : xwt_setup(ctx, &xj, m, n, k, xbf ? k : a->lda, a->ldb, ldc, a->alpha, a->beta, a->b_dtype);
        if (st != SERL_OK) return st;
    }
    for (int64_t b = 0; b < a->batch; b++) {
        void *Cb = (char *)a->c + (size_t)(b * a->stride_c) * csz;
        const void *A = serl_at(a->a, a->a_dtype, b * a->stride_a), *B = serl_at(a->b, a->b_dtype, b * a->stride_b);
        if (!xwt) {
            if (serl_gemm_blocked(ctx, kern, a->trans_a, a->trans_b, m, n, k, a->alpha, A, a->a_dtype, a->lda, B,
                                  a->b_dtype, a->ldb, a->beta, Cb, a->c_dtype, a->ldc) != 0)
                return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for packing buffers");
            continue;
        }
        float *C = cbf ? tmp : Cb;
        if (cbf && a->beta != 0.0f)
            for (int64_t i = 0; i < m; i++) serl_bf16_to_f32_n(tmp + i * n, (const uint16_t *)Cb + i * a->ldc, n);
        if (xbf)
            for (int64_t i = 0; i < m; i++) serl_bf16_to_f32_n(xw + i * k, (const uint16_t *)A + i * a->lda, k);
        if (wxt)
            wxt_run(ctx, &wj, xbf ? xw : A, xbf ? k : a->lda, B, C);
        else
            xwt_run(ctx, &xj, xbf ? xw : A, B, C);
        if (cbf)
            for (int64_t i = 0; i < m; i++) serl_f32_to_bf16_n((uint16_t *)Cb + i * a->ldc, tmp + i * n, n);
    }
    return SERL_OK;
}

SERL_API int32_t serl_matmul(void *ctxp, const serl_matmul_args *a) {
    SERL_ENTER(ctxp, a, serl_matmul_args);
    SERL_CHECK(serl_check_matmul(ctx, a));
    const int64_t m = a->m, n = a->n, k = a->k;
    int use_ab = k > 0 && a->alpha != 0.0f;
    const int pair = a->a_dtype == SERL_DTYPE_BF16 && a->b_dtype == SERL_DTYPE_BF16 && ctx->simd >= SERL_SIMD_AVX512BF16;
    /* Aᵀ·B with few rows or columns into a float32 C (a LoRA adapter's weight gradients, from float32 or
     * bf16 activations) */
    const int64_t thin_r = pair ? THIN_R_PAIR : THIN_R;
    if (use_ab && a->trans_a && !a->trans_b && (m <= thin_r || n <= thin_r) && a->c_dtype == SERL_DTYPE_F32 &&
        m * n * k >= SMALL_MNK)
        return matmul_thin(ctx, a);
    /* short rows of W and many rows of x into a bf16 C (a LoRA adapter's u·Bᵀ and du·A in training) */
    if (use_ab && !a->trans_a && k <= THIN_K && m > XWT_MAX_M && a->c_dtype == SERL_DTYPE_BF16 &&
        ctx->simd >= SERL_SIMD_AVX512 && m * n * k >= SMALL_MNK)
        return matmul_shortk(ctx, a);
    const int few_xwt = a->trans_b && !a->trans_a && m <= XWT_MAX_M;
    /* Few rows against short W rows with a bf16 operand (a LoRA adapter's u·Bᵀ in generation, k = rank):
     * every operand is small, so widened to float32 copies for the x·Wᵀ kernel; the bf16 kernels' packing
     * and horizontal sums were most of their time (2.4-3.8× slower at 64 and 4 rows). */
    if (use_ab && (a->a_dtype != SERL_DTYPE_F32 || a->b_dtype != SERL_DTYPE_F32) && few_xwt && k <= THIN_K)
        return matmul_mixed(ctx, a, use_ab);
    /* bf16 weights for few rows (generation), or few bf16 W rows (a LoRA adapter's x·Aᵀ, n = rank): W
     * streamed once (matmul_bf16.c), as pairs with bf16 x on AVX-512 BF16, widened in registers otherwise.
     * The pairs also take x·Wᵀ and x·W with few W columns for x of any height (x·Aᵀ and dy·B in
     * training), split over x's rows: the pair kernel's tiles were a quarter full. */
    const int64_t gemv_m = pair                            ? (k >= LONG_K ? BF16_GEMV_MAX_M_LONG_K : BF16_GEMV_MAX_M)
                           : ctx->simd >= SERL_SIMD_AVX512 ? (k >= LONG_K ? WIDEN_GEMV_MAX_M_LONG_K : WIDEN_GEMV_MAX_M)
                                                           : WIDEN_GEMV_MAX_M_AVX2;
    if (use_ab && a->b_dtype == SERL_DTYPE_BF16 && !a->trans_a && m * n * k >= SMALL_MNK &&
        ((few_xwt && (m <= gemv_m || n <= SKINNY_MAX_N)) ||
         (pair && n <= SKINNY_MAX_N && k > THIN_K)))
        return serl_matmul_bf16_gemv(ctx, a);
    /* bf16 × bf16 on AVX-512 BF16: the pair kernel (matmul_bf16.c); products too small to pay for its
     * packing, other CPUs and mixed operands: widened to float32 */
    if (use_ab && pair && m * n * k >= SMALL_MNK)
        return serl_matmul_bf16(ctx, a);
    if (use_ab && (a->a_dtype != SERL_DTYPE_F32 || a->b_dtype != SERL_DTYPE_F32) && m * n * k >= SMALL_MNK)
        return matmul_widen_blocked(ctx, a);
    if (a->a_dtype != SERL_DTYPE_F32 || a->b_dtype != SERL_DTYPE_F32 || a->c_dtype != SERL_DTYPE_F32)
        return matmul_mixed(ctx, a, use_ab);
    return matmul_f32(ctx, a, use_ab);
}

/* The float32 product of validated args. */
static int32_t matmul_f32(serl_ctx *ctx, const serl_matmul_args *a, int use_ab) {
    const int64_t m = a->m, n = a->n, k = a->k;
    if (!use_ab) {
        for (int64_t b = 0; b < a->batch; b++) scale_c((float *)a->c + b * a->stride_c, m, n, a->ldc, a->beta);
        return SERL_OK;
    }
    const serl_gemm_kernel *kern = ctx->simd >= SERL_SIMD_AVX512 ? &kern_avx512 : &kern_avx2;
    int xwt_form = a->trans_b && !a->trans_a;
    int nn_form = !a->trans_a && !a->trans_b;
    int tiny = m * n * k < SMALL_MNK;
    /* x·Wᵀ stays on the vector paths below however small, on one thread: the plain loops' dot products
     * are serial chains (a decode step's LoRA x·Aᵀ, 4×8×256, took 4 µs there) */
    int small = tiny && !xwt_form;
    /* W rows shorter than THIN_K (a LoRA adapter's u·Bᵀ: k = rank) go to the x·Wᵀ microkernel, which
     * broadcasts x against a packed W panel; the GEMV would spend most of its time on horizontal sums */
    const int64_t gemv_m = ctx->simd < SERL_SIMD_AVX512 ? GEMV_MAX_M
                           : k >= LONG_K                ? GEMV_MAX_M_AVX512_LONG_K
                                                        : GEMV_MAX_M_AVX512;
    int gemv = xwt_form && k > THIN_K && m <= gemv_m;
    /* x·Wᵀ with few W rows (a LoRA adapter's x·Aᵀ: n = rank) and many x rows: the GEMV, split over x's
     * rows; the blocked kernel would fill at most 8 of its 32 (AVX-512) columns. x·W with W [k, n] of as
     * few columns (du = dy·B) too, W transposed into scratch first (n·k floats). */
    int skinny_nn = !tiny && nn_form && n <= SKINNY_MAX_N && k > THIN_K;
    int skinny = (xwt_form && !gemv && k > THIN_K && n <= SKINNY_MAX_N) || skinny_nn;
    gemv |= skinny;
    int xwt = xwt_form && !gemv && (m <= XWT_MAX_M || tiny);
    if (small) {
        batch_job bj = {a, 1};
        if (ctx->threads > 1 && a->batch > 1 && m * n * k * a->batch >= 4 * SMALL_MNK)
            bj.parts = a->batch < ctx->threads ? a->batch : ctx->threads;
        serl_parallel(ctx, bj.parts, small_batch_task, &bj);
        return SERL_OK;
    }
    const int wxt = xwt && wxt_fits(ctx, m, n, k); /* W read as it lies */
    xwt_job xj;
    wxt_job wj;
    if (xwt) {
        int32_t st = wxt ? wxt_setup(ctx, &wj, m, n, k, a->ldb, a->ldc, a->alpha, a->beta, SERL_DTYPE_F32)
                         : xwt_setup(ctx, &xj, m, n, k, a->lda, a->ldb, a->ldc, a->alpha, a->beta, SERL_DTYPE_F32);
        if (st != SERL_OK) return st;
    }
    float *wt = NULL; /* W transposed for skinny_nn */
    if (skinny_nn && !(wt = serl_scratch(ctx, 0, sizeof(float) * (size_t)(k * n))))
        return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory transposing W");
    for (int64_t b = 0; b < a->batch; b++) {
        const float *A = (const float *)a->a + b * a->stride_a, *B = (const float *)a->b + b * a->stride_b;
        float *C = (float *)a->c + b * a->stride_c;
        int64_t ldb = a->ldb;
        if (skinny_nn) { /* wt[j·k + p] = B[p·ldb + j]: the packing transpose with k lanes of n deep */
            serl_pack_t32(wt, B, ldb, (int)k, (int)k, n);
            B = wt, ldb = k;
        }
        if (gemv) {
            gemv_job g = {m, n, k, a->lda, ldb, a->ldc, tiny ? 1 : serl_gemv_parts(ctx->threads, n, k), a->alpha, a->beta,
                          A, B, C, ctx->simd >= SERL_SIMD_AVX512 ? serl_gemv_rows_avx512 : gemv_rows_avx2};
            if (skinny) {
                g.parts = serl_skinny_parts(tiny ? 1 : ctx->threads, m);
                serl_parallel(ctx, g.parts, skinny_task, &g);
            } else {
                serl_parallel(ctx, g.parts, gemv_task, &g);
            }
            continue;
        }
        if (wxt) {
            wxt_run(ctx, &wj, A, a->lda, B, C);
            continue;
        }
        if (xwt) {
            xwt_run(ctx, &xj, A, B, C);
            continue;
        }
        if (serl_gemm_blocked(ctx, kern, a->trans_a, a->trans_b, m, n, k, a->alpha, A, SERL_DTYPE_F32, a->lda, B,
                              SERL_DTYPE_F32, a->ldb, a->beta, C, SERL_DTYPE_F32, a->ldc) != 0)
            return serl_fail(ctx, SERL_E_NOMEM, "matmul: out of memory for packing buffers");
    }
    return SERL_OK;
}
