/* Paged KV cache: append new tokens' keys/values at their slots, and decode attention (one query token
 * per sequence against its cached tokens, found through the block table).
 *
 * Decode is the generation hot path and is bound by reading the cache, so a task is one (sequence,
 * kv head): every cached K/V row is read once and serves all the query heads that share it (GQA).
 * Scores of a task are kept whole (seq_len floats per head), so the softmax is exact two-pass rather
 * than online; head_dim tails are read with masked loads, never past a row. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "internal.h"

/* From attention.c: x[j] = e^(x[j] − m) for j < n (n % 8 == 0, −inf → 0), returns Σ in double. */
double serl_att_softmax_row(float *x, int n, float m);

/* ------------------------------------------------------------------------- kv_append */

#define APPEND_PAR_MIN 65536 /* floats copied below which one thread beats waking the pool */

typedef struct {
    const serl_kv_append_args *a;
    int64_t parts;
} append_job;

static void append_task(void *arg, int64_t i, int w) {
    const append_job *j = arg;
    const serl_kv_append_args *a = j->a;
    const int64_t row = (int64_t)a->n_kv_heads * a->head_dim;
    int64_t lo, hi;
    serl_chunk(a->n_tokens, j->parts, i, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        int64_t slot = a->slots[t];
        if (slot < 0) continue;
        memcpy(a->k_cache + slot * row, a->k + t * row, sizeof(float) * (size_t)row);
        memcpy(a->v_cache + slot * row, a->v + t * row, sizeof(float) * (size_t)row);
    }
}

SERL_API int32_t serl_kv_append(void *ctxp, const serl_kv_append_args *a) {
    SERL_ENTER(ctxp, a, serl_kv_append_args);
    SERL_REQUIRE(a->n_tokens >= 0, "kv_append: n_tokens = %d", a->n_tokens);
    SERL_REQUIRE(a->n_kv_heads >= 1 && a->head_dim >= 1 && a->block_size >= 1 && a->n_blocks >= 0,
                 "kv_append: n_kv_heads = %d, head_dim = %d, block_size = %d, n_blocks = %d", a->n_kv_heads,
                 a->head_dim, a->block_size, a->n_blocks);
    if (a->n_tokens == 0) return SERL_OK;
    SERL_REQUIRE(a->slots && a->k && a->v && a->k_cache && a->v_cache, "kv_append: NULL tensor");
    /* every slot first, so a bad one leaves the cache untouched */
    const int64_t n_slots = (int64_t)a->n_blocks * a->block_size;
    for (int t = 0; t < a->n_tokens; t++)
        SERL_REQUIRE(a->slots[t] < n_slots, "kv_append: slots[%d] = %d is out of range (cache has %lld slots)", t,
                     a->slots[t], (long long)n_slots);
    int64_t total = (int64_t)a->n_tokens * a->n_kv_heads * a->head_dim * 2;
    int64_t parts = total < APPEND_PAR_MIN ? 1 : total / (APPEND_PAR_MIN / 2);
    if (parts > ctx->threads) parts = ctx->threads;
    if (parts > a->n_tokens) parts = a->n_tokens;
    append_job j = {a, parts};
    serl_parallel(ctx, parts, append_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- decode attention */

typedef struct {
    const serl_decode_attention_args *a;
    int G, Dp, Lp;
    float *scratch[SERL_MAX_THREADS];
} decode_job;

static inline __m256i tail_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

static inline float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

static void decode_task(void *arg, int64_t t, int w) {
    const decode_job *j = arg;
    const serl_decode_attention_args *a = j->a;
    const int G = j->G, D = a->head_dim, Dp = j->Dp, Lp = j->Lp, H = a->n_heads, KVH = a->n_kv_heads;
    const int bs = a->block_size, s = (int)(t / KVH), kvh = (int)(t % KVH), L = a->seq_lens[s];
    const int32_t *bt = a->block_table + (int64_t)s * a->max_blocks;
    const int64_t row = (int64_t)KVH * D; /* floats between consecutive slots */
    const int Dv = D & ~7;                /* columns done by full vectors; the rest by one masked load */
    const __m256i tm = tail_mask(D - Dv);

    float *qs = j->scratch[w], *acc = qs + (size_t)G * Dp, *sc = acc + (size_t)G * Dp;
    for (int g = 0; g < G; g++) {
        const float *src = a->q + ((int64_t)s * H + kvh * G + g) * D;
        for (int d = 0; d < D; d++) qs[g * Dp + d] = a->scale * src[d];
        for (int d = D; d < Dp; d++) qs[g * Dp + d] = 0;
    }

    /* scores: one pass over the keys, each row read once for all G heads */
    for (int j0 = 0, b = 0; j0 < L; j0 += bs, b++) {
        const float *kb = a->k_cache + (int64_t)bt[b] * bs * row + (int64_t)kvh * D;
        const int n = L - j0 < bs ? L - j0 : bs;
        for (int o = 0; o < n; o++) {
            const float *kr = kb + o * row;
            for (int g = 0; g < G; g++) {
                const float *qg = qs + (size_t)g * Dp;
                __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
                int d = 0;
                for (; d + 16 <= Dv; d += 16) {
                    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(kr + d), s0);
                    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d + 8), _mm256_loadu_ps(kr + d + 8), s1);
                }
                if (d < Dv) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(kr + d), s0);
                if (Dv < D) s1 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + Dv), _mm256_maskload_ps(kr + Dv, tm), s1);
                sc[(size_t)g * Lp + j0 + o] = hsum8(_mm256_add_ps(s0, s1));
            }
        }
    }

    float *inv = sc + (size_t)G * Lp;
    for (int g = 0; g < G; g++) {
        float *r = sc + (size_t)g * Lp;
        for (int jj = L; jj < Lp; jj++) r[jj] = -INFINITY;
        __m256 mv = _mm256_set1_ps(-INFINITY);
        for (int jj = 0; jj < Lp; jj += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(r + jj));
        __m128 x = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
        x = _mm_max_ps(x, _mm_movehl_ps(x, x));
        x = _mm_max_ss(x, _mm_movehdup_ps(x));
        inv[g] = (float)(1.0 / serl_att_softmax_row(r, Lp, _mm_cvtss_f32(x)));
    }

    /* out = Σ p·v: second pass over the values; the G accumulator rows stay in L1 */
    memset(acc, 0, sizeof(float) * (size_t)G * Dp);
    for (int j0 = 0, b = 0; j0 < L; j0 += bs, b++) {
        const float *vb = a->v_cache + (int64_t)bt[b] * bs * row + (int64_t)kvh * D;
        const int n = L - j0 < bs ? L - j0 : bs;
        for (int o = 0; o < n; o++) {
            const float *vr = vb + o * row;
            for (int d = 0; d < D; d += 8) {
                __m256 v = d < Dv ? _mm256_loadu_ps(vr + d) : _mm256_maskload_ps(vr + d, tm);
                for (int g = 0; g < G; g++) {
                    float *ag = acc + (size_t)g * Dp + d;
                    _mm256_storeu_ps(ag, _mm256_fmadd_ps(_mm256_set1_ps(sc[(size_t)g * Lp + j0 + o]), v,
                                                         _mm256_loadu_ps(ag)));
                }
            }
        }
    }
    for (int g = 0; g < G; g++) {
        float *dst = a->out + ((int64_t)s * H + kvh * G + g) * D;
        for (int d = 0; d < D; d++) dst[d] = acc[(size_t)g * Dp + d] * inv[g];
    }
}

SERL_API int32_t serl_decode_attention(void *ctxp, const serl_decode_attention_args *a) {
    SERL_ENTER(ctxp, a, serl_decode_attention_args);
    SERL_REQUIRE(a->n_seqs >= 0, "decode_attention: n_seqs = %d", a->n_seqs);
    SERL_REQUIRE(a->n_heads >= 1 && a->n_kv_heads >= 1 && a->head_dim >= 1,
                 "decode_attention: n_heads = %d, n_kv_heads = %d, head_dim = %d", a->n_heads, a->n_kv_heads,
                 a->head_dim);
    SERL_REQUIRE(a->n_heads % a->n_kv_heads == 0, "decode_attention: n_heads = %d is not a multiple of n_kv_heads = %d",
                 a->n_heads, a->n_kv_heads);
    SERL_REQUIRE(a->block_size >= 1 && a->n_blocks >= 0 && a->max_blocks >= 1,
                 "decode_attention: block_size = %d, n_blocks = %d, max_blocks = %d", a->block_size, a->n_blocks,
                 a->max_blocks);
    if (a->n_seqs == 0) return SERL_OK;
    SERL_REQUIRE(a->block_table && a->seq_lens && a->q && a->k_cache && a->v_cache && a->out,
                 "decode_attention: NULL tensor");
    const int64_t cap = (int64_t)a->max_blocks * a->block_size;
    int max_len = 0;
    for (int s = 0; s < a->n_seqs; s++) {
        int L = a->seq_lens[s];
        SERL_REQUIRE(L >= 1 && L <= cap, "decode_attention: seq_lens[%d] = %d, want 1..%lld (max_blocks · block_size)",
                     s, L, (long long)cap);
        if (L > max_len) max_len = L;
        for (int b = 0; b < (L + a->block_size - 1) / a->block_size; b++) {
            int32_t id = a->block_table[(int64_t)s * a->max_blocks + b];
            SERL_REQUIRE(id >= 0 && id < a->n_blocks, "decode_attention: block_table[%d][%d] = %d, want 0..%d", s, b,
                         id, a->n_blocks - 1);
        }
    }
    decode_job j = {.a = a, .G = a->n_heads / a->n_kv_heads, .Dp = (a->head_dim + 15) & ~15, .Lp = (max_len + 7) & ~7};
    size_t bytes = sizeof(float) * ((size_t)2 * j.G * j.Dp + (size_t)j.G * j.Lp + (size_t)j.G);
    for (int w = 0; w < ctx->threads; w++) {
        j.scratch[w] = serl_scratch(ctx, w, bytes);
        if (!j.scratch[w]) return serl_fail(ctx, SERL_E_NOMEM, "decode_attention: out of memory for scratch");
    }
    serl_parallel(ctx, (int64_t)a->n_seqs * a->n_kv_heads, decode_task, &j);
    return SERL_OK;
}
