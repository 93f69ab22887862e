/* Rotary position embeddings, Hugging Face half-split layout (rotate_half), forward and transpose.
 *
 * The angle is pos·inv_freq rounded to float32, exactly as HF forms it (`pos.float() @ inv_freq`); its
 * cosine and sine are evaluated in double and rounded to float32, i.e. to within an ulp of torch's float32
 * cos/sin. They are the expensive part, so each worker computes one (cos, sin) row per token and reuses it
 * across all heads; the evaluation is vectorised (4 doubles) with a Cody–Waite reduction by π/2. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "internal.h"

#define PAR_MIN 32768 /* elements below which one thread beats waking the pool */
#define ROPE_MIXED_MAX_HD 4096 /* head_dim limit of bf16 tensors (two stack buffers of it per worker) */

/* π/2 = PIO2_HI + PIO2_LO to about 2⁻¹⁶⁰ relative; with FMA the reduction is accurate for |a| < 2³⁰. */
#define PIO2_HI 1.5707963267948966192e+00
#define PIO2_LO 6.1232339957367660359e-17
#define BIG_ANGLE 1.0e9 /* beyond this the quadrant no longer fits the int32 conversion: use libm */

/* sin and cos of 4 doubles. Taylor series on [−π/4, π/4] to r¹³ and r¹⁴: truncation below 3e-14,
 * far under the float32 rounding that follows. */
static inline void sincos4(__m256d a, __m256d *sn, __m256d *cs) {
    __m256d k = _mm256_round_pd(_mm256_mul_pd(a, _mm256_set1_pd(0.63661977236758134308)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(PIO2_HI), a);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(PIO2_LO), r);
    __m256d r2 = _mm256_mul_pd(r, r);
    __m256d ps = _mm256_set1_pd(-1.0 / 6227020800.0); /* −1/13! */
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(1.0 / 39916800.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(-1.0 / 362880.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(1.0 / 5040.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(-1.0 / 120.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(1.0 / 6.0));
    /* sin r = r − r³·(1/6 − r²/120 + …) */
    __m256d s = _mm256_fnmadd_pd(_mm256_mul_pd(r, r2), ps, r);
    __m256d pc = _mm256_set1_pd(1.0 / 87178291200.0); /* 1/14! */
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(-1.0 / 479001600.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(1.0 / 3628800.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(-1.0 / 40320.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(1.0 / 720.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(-1.0 / 24.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(0.5));
    /* cos r = 1 − r²·(1/2 − r²/24 + …) */
    __m256d c = _mm256_fnmadd_pd(r2, pc, _mm256_set1_pd(1.0));
    /* quadrant q = k mod 4: sin a = (s, c, −s, −c)[q], cos a = (c, −s, −c, s)[q] */
    __m256i q = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    __m256i one = _mm256_set1_epi64x(1), two = _mm256_set1_epi64x(2);
    __m256d swap = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(q, one), one));
    __m256d s2 = _mm256_blendv_pd(s, c, swap), c2 = _mm256_blendv_pd(c, s, swap);
    __m256d sign_s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_and_si256(q, two), 62));
    __m256d sign_c = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_and_si256(_mm256_add_epi64(q, one), two), 62));
    *sn = _mm256_xor_pd(s2, sign_s);
    *cs = _mm256_xor_pd(c2, sign_c);
}

/* cos/sin rows for one token: angle_i = (float)pos · inv_freq[i]; sb holds −sin for the transpose. */
static void trig_row(float *cb, float *sb, int32_t pos, const float *inv_freq, int half, int bwd) {
    const float p = (float)pos;
    const __m256d neg = _mm256_set1_pd(bwd ? -1.0 : 1.0);
    for (int i = 0; i < half; i += 4) {
        float ang[4] = {0, 0, 0, 0};
        int m = half - i < 4 ? half - i : 4;
        for (int l = 0; l < m; l++) ang[l] = p * inv_freq[i + l]; /* float32 product, as HF */
        __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(ang));
        __m256d s, c;
        __m256d mag = _mm256_andnot_pd(_mm256_set1_pd(-0.0), a);
        if (_mm256_movemask_pd(_mm256_cmp_pd(mag, _mm256_set1_pd(BIG_ANGLE), _CMP_GT_OQ)) ||
            _mm256_movemask_pd(_mm256_cmp_pd(a, a, _CMP_UNORD_Q))) {
            double sd[4], cd[4];
            for (int l = 0; l < 4; l++) sd[l] = sin((double)ang[l]), cd[l] = cos((double)ang[l]);
            s = _mm256_loadu_pd(sd);
            c = _mm256_loadu_pd(cd);
        } else {
            sincos4(a, &s, &c);
        }
        float cf[4], sf[4];
        _mm_storeu_ps(cf, _mm256_cvtpd_ps(c));
        _mm_storeu_ps(sf, _mm256_cvtpd_ps(_mm256_mul_pd(s, neg)));
        for (int l = 0; l < m; l++) cb[i + l] = cf[l], sb[i + l] = sf[l];
    }
}

typedef struct {
    const serl_rope_args *a;
    int64_t parts;
    float *buf[SERL_MAX_THREADS]; /* per worker: cos[half] then sin[half] */
    float *table;                 /* or, when positions repeat: [max_pos+1][cos, sin rows] */
    int half_pad;
    int mixed; /* x or y is not F32: heads go through float32 buffers on the stack */
} rope_job;

/* y1 = x1·c − x2·s, y2 = x2·c + x1·s over one head's rotated half-pairs. x and y may be the same
 * memory (accumulate = 0): each pair is loaded before it is stored. */
static inline void rotate_head(float *y, const float *x, const float *cb, const float *sb, int half, int acc) {
    int i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 x1 = _mm256_loadu_ps(x + i), x2 = _mm256_loadu_ps(x + half + i);
        __m256 c = _mm256_loadu_ps(cb + i), s = _mm256_loadu_ps(sb + i);
        __m256 y1 = _mm256_fmsub_ps(x1, c, _mm256_mul_ps(x2, s));
        __m256 y2 = _mm256_fmadd_ps(x2, c, _mm256_mul_ps(x1, s));
        if (acc) {
            y1 = _mm256_add_ps(y1, _mm256_loadu_ps(y + i));
            y2 = _mm256_add_ps(y2, _mm256_loadu_ps(y + half + i));
        }
        _mm256_storeu_ps(y + i, y1);
        _mm256_storeu_ps(y + half + i, y2);
    }
    for (; i < half; i++) {
        float x1 = x[i], x2 = x[half + i];
        float y1 = x1 * cb[i] - x2 * sb[i], y2 = x2 * cb[i] + x1 * sb[i];
        if (acc) y1 += y[i], y2 += y[half + i];
        y[i] = y1;
        y[half + i] = y2;
    }
}

static void rope_task(void *arg, int64_t ti, int w) {
    rope_job *j = arg;
    const serl_rope_args *a = j->a;
    int64_t lo, hi;
    serl_chunk(a->n_tokens, j->parts, ti, &lo, &hi);
    const int half = a->rot_dim / 2, hd = a->head_dim, nh = a->n_heads, acc = a->accumulate;
    const int pass = hd - a->rot_dim;
    float *cb = j->buf[w], *sb = cb + j->half_pad;
    for (int64_t t = lo; t < hi; t++) {
        if (j->table) {
            cb = j->table + (int64_t)a->pos[t] * 2 * j->half_pad;
            sb = cb + j->half_pad;
        } else {
            trig_row(cb, sb, a->pos[t], a->inv_freq, half, a->bwd);
        }
        if (j->mixed) {
            float xb[ROPE_MIXED_MAX_HD], yb[ROPE_MIXED_MAX_HD];
            for (int h = 0; h < nh; h++) {
                const int64_t off = (t * nh + h) * (int64_t)hd;
                serl_load_f32(xb, a->x, a->x_dtype, off, hd);
                if (acc) serl_load_f32(yb, a->y, a->y_dtype, off, hd);
                rotate_head(yb, xb, cb, sb, half, acc);
                for (int d = a->rot_dim; d < hd; d++) yb[d] = acc ? yb[d] + xb[d] : xb[d];
                serl_store_f32(a->y, a->y_dtype, off, yb, hd);
            }
            continue;
        }
        for (int h = 0; h < nh; h++) {
            const int64_t off = (t * nh + h) * (int64_t)hd;
            const float *x = (const float *)a->x + off;
            float *y = (float *)a->y + off;
            rotate_head(y, x, cb, sb, half, acc);
            if (pass > 0) {
                if (acc) {
                    for (int d = a->rot_dim; d < hd; d++) y[d] += x[d];
                } else if (y != x) {
                    memcpy(y + a->rot_dim, x + a->rot_dim, sizeof(float) * (size_t)pass);
                }
            }
        }
    }
}

typedef struct {
    rope_job *j;
    int64_t npos, parts;
} table_job;

static void table_task(void *arg, int64_t i, int w) {
    (void)w;
    table_job *tj = arg;
    rope_job *j = tj->j;
    int64_t lo, hi;
    serl_chunk(tj->npos, tj->parts, i, &lo, &hi);
    for (int64_t p = lo; p < hi; p++) {
        float *cb = j->table + p * 2 * j->half_pad;
        trig_row(cb, cb + j->half_pad, (int32_t)p, j->a->inv_freq, j->a->rot_dim / 2, j->a->bwd);
    }
}

SERL_API int32_t serl_rope(void *ctxp, const serl_rope_args *a) {
    SERL_ENTER(ctxp, a, serl_rope_args);
    SERL_CHECK(serl_check_rope(ctx, a));
    const int mixed = a->x_dtype != SERL_DTYPE_F32 || a->y_dtype != SERL_DTYPE_F32;
    SERL_REQUIRE(!mixed || a->head_dim <= ROPE_MIXED_MAX_HD, "rope: head_dim = %d with bf16 tensors (at most %d)",
                 a->head_dim, ROPE_MIXED_MAX_HD);
    if (a->n_tokens == 0 || a->n_heads == 0) return SERL_OK;
    SERL_REQUIRE(a->pos && a->inv_freq && a->x && a->y, "rope: NULL tensor (pos %p, inv_freq %p, x %p, y %p)",
                 (const void *)a->pos, (const void *)a->inv_freq, (const void *)a->x, (void *)a->y);
    int64_t total = (int64_t)a->n_tokens * a->n_heads * a->head_dim;
    int32_t max_pos = 0;
    for (int32_t t = 0; t < a->n_tokens; t++) {
        SERL_REQUIRE(a->pos[t] >= 0, "rope: pos[%d] = %d is negative", t, a->pos[t]);
        if (a->pos[t] > max_pos) max_pos = a->pos[t];
    }

    rope_job j = {0};
    j.a = a;
    j.mixed = mixed;
    j.half_pad = (a->rot_dim / 2 + 15) & ~15;
    int64_t parts = total < PAR_MIN ? 1 : total / (PAR_MIN / 4);
    if (parts > 4 * (int64_t)ctx->threads) parts = 4 * (int64_t)ctx->threads;
    if (parts > a->n_tokens) parts = a->n_tokens;
    j.parts = parts;
    /* Packed sequences repeat positions (8 × 256 tokens hold 256 distinct ones): then one table of
     * cos/sin rows per position, filled first, replaces a row per token. Same trig_row, same values. */
    int64_t npos = (int64_t)max_pos + 1, table_bytes = npos * 2 * j.half_pad * (int64_t)sizeof(float);
    j.table = NULL;
    if (2 * npos <= a->n_tokens && table_bytes <= (16 << 20)) {
        j.table = serl_scratch(ctx, 0, (size_t)table_bytes);
        if (!j.table) return serl_fail(ctx, SERL_E_NOMEM, "rope: out of memory for %lld cos/sin rows", (long long)npos);
        table_job tj = {&j, npos, npos < 128 ? 1 : (npos / 64 < ctx->threads ? npos / 64 : ctx->threads)};
        serl_parallel(ctx, tj.parts, table_task, &tj);
    } else {
        for (int w = 0; w < ctx->threads; w++) { /* any worker may pull a task */
            j.buf[w] = serl_scratch(ctx, w, sizeof(float) * 2 * (size_t)j.half_pad);
            if (!j.buf[w]) return serl_fail(ctx, SERL_E_NOMEM, "rope: out of memory");
        }
    }
    serl_parallel(ctx, parts, rope_task, &j);
    return SERL_OK;
}
