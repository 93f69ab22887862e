/* Paged KV cache: append new tokens' keys/values at their slots, and decode attention (one query token
 * per sequence against its cached tokens, found through the block table).
 *
 * Decode is the generation hot path. A task is one sequence (or a range of its kv heads when sequences
 * are few): every cached K/V row is read once and serves all the query heads that share it (GQA), and
 * whole slots are read contiguously. Rows past the caches are read at the memory's rate; rows in them
 * (a prompt's blocks, shared by its samples) at the rate of the score and value passes, which run on
 * 16 lanes where the CPU has AVX-512 (kvcache_avx512.c), with the AVX2 passes' bits.
 * Scores of a task are kept whole (seq_len floats per head), so the softmax is exact two-pass rather
 * than online; head_dim tails are read with masked loads, never past a row. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "expf_avx2.h"
#include "internal.h"

/* From kvcache_avx512bf16.c: scores of bf16 queries against a bf16 slot on vdpbf16ps. */
void serl_decode_scores_avx512bf16(int NH, int G, int D, const uint16_t *q, int64_t ldq, const uint16_t *k, float scale,
                                   float *sc);
/* From kvcache_avx512.c: the score and value passes over a chunk of slots on 16 lanes, with the bits of
 * scores_avx2 and values_avx2 below. */
void serl_decode_scores_avx512(int NH, int G, int D, const float *qs, int Dp, const float *const *kr, int nt,
                               float *sc, int NHp);
void serl_decode_values_avx512(int NH, int G, int D, float *acc, int Dp, const float *const *vr, const float *sc,
                               int NHp, int nt);

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
        if (a->kv_dtype == a->cache_dtype) {
            size_t es = serl_dtype_size(a->kv_dtype), bytes = es * (size_t)row;
            memcpy((char *)a->k_cache + slot * (int64_t)bytes, (const char *)a->k + t * (int64_t)bytes, bytes);
            memcpy((char *)a->v_cache + slot * (int64_t)bytes, (const char *)a->v + t * (int64_t)bytes, bytes);
        } else if (a->cache_dtype == SERL_DTYPE_BF16) {
            serl_f32_to_bf16_n((uint16_t *)a->k_cache + slot * row, (const float *)a->k + t * row, row);
            serl_f32_to_bf16_n((uint16_t *)a->v_cache + slot * row, (const float *)a->v + t * row, row);
        } else {
            serl_bf16_to_f32_n((float *)a->k_cache + slot * row, (const uint16_t *)a->k + t * row, row);
            serl_bf16_to_f32_n((float *)a->v_cache + slot * row, (const uint16_t *)a->v + t * row, row);
        }
    }
}

SERL_API int32_t serl_kv_append(void *ctxp, const serl_kv_append_args *a) {
    SERL_ENTER(ctxp, a, serl_kv_append_args);
    SERL_CHECK(serl_check_kv_append(ctx, a));
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

/* ------------------------------------------------------------------------- rope_append */

/* The ops it stands for, in order, over the same memory: on the CPU a fused loop would save little
 * (the rows are in cache between the ops), so it is their composition and has their bits by
 * construction. Every position and slot is checked first, so a bad one writes nothing. */
SERL_API int32_t serl_rope_append(void *ctxp, const serl_rope_append_args *a) {
    SERL_ENTER(ctxp, a, serl_rope_append_args);
    SERL_CHECK(serl_check_rope_append(ctx, a));
    const int64_t n_slots = (int64_t)a->n_blocks * a->block_size;
    for (int t = 0; t < a->n_tokens; t++) {
        SERL_REQUIRE(a->pos[t] >= 0, "rope_append: pos[%d] = %d is negative", t, a->pos[t]);
        SERL_REQUIRE(a->slots[t] < n_slots, "rope_append: slots[%d] = %d is out of range (cache has %lld slots)", t,
                     a->slots[t], (long long)n_slots);
    }
    const int32_t T = a->n_tokens, H = a->n_heads, KVH = a->n_kv_heads, D = a->head_dim;
    if (a->bq) {
        const struct { const void *b; void *y; int32_t heads, dt; } bias[3] = {
            {a->bq, a->q, H, a->q_dtype}, {a->bk, a->k, KVH, a->kv_dtype}, {a->bv, a->v, KVH, a->kv_dtype}};
        for (int i = 0; i < 3; i++) {
            serl_bias_add_args b = {.size = sizeof b, .n = T, .dim = bias[i].heads * D, .bias_dtype = a->bias_dtype,
                                    .y_dtype = bias[i].dt, .bias = bias[i].b, .y = bias[i].y};
            SERL_CHECK(serl_bias_add(ctx, &b));
        }
    }
    for (int i = 0; i < 2; i++) { /* q, then k, rotated in place */
        serl_rope_args r = {.size = sizeof r, .n_tokens = T, .n_heads = i ? KVH : H, .head_dim = D, .rot_dim = a->rot_dim,
                            .x_dtype = i ? a->kv_dtype : a->q_dtype, .y_dtype = i ? a->kv_dtype : a->q_dtype,
                            .pos = a->pos, .inv_freq = a->inv_freq, .x = i ? a->k : a->q, .y = i ? a->k : a->q};
        SERL_CHECK(serl_rope(ctx, &r));
    }
    serl_kv_append_args kv = {.size = sizeof kv, .n_tokens = T, .n_kv_heads = KVH, .head_dim = D,
                              .block_size = a->block_size, .n_blocks = a->n_blocks, .kv_dtype = a->kv_dtype,
                              .cache_dtype = a->cache_dtype, .slots = a->slots, .k = a->k, .v = a->v,
                              .k_cache = a->k_cache, .v_cache = a->v_cache};
    return serl_kv_append(ctx, &kv);
}

/* ------------------------------------------------------------------------- decode attention */

/* A task's score pass (sc[u·NHp + n] = qs[n]·k over the chunk's nt slots, qs scaled, rows Dp apart and
 * zero from D) and value pass (acc[n] += Σ_u sc[u·NHp + n]·v): AVX2 bodies here, AVX-512 ones with the
 * same bits in kvcache_avx512.c, chosen per call. A slot row kr[u] / vr[u] is the task's part of the slot
 * in float32; query head n reads its kv head's D floats at (n/G)·D. */
typedef void (*decode_scores_fn)(int NH, int G, int D, const float *qs, int Dp, const float *const *kr, int nt,
                                 float *sc, int NHp);
typedef void (*decode_values_fn)(int NH, int G, int D, float *acc, int Dp, const float *const *vr, const float *sc,
                                 int NHp, int nt);

typedef struct {
    const serl_decode_attention_args *a;
    int G, Dp, parts; /* parts: kv-head ranges per sequence (tasks = n_seqs · parts) */
    int pf;           /* slots prefetched ahead (DECODE_PF_BYTES) */
    size_t span_max;  /* floats of the largest part of a slot: a bf16 cache row is widened into it */
    int dp;           /* bf16 q and cache on AVX-512 BF16: scores on vdpbf16ps from the cache rows */
    decode_scores_fn scores;
    decode_values_fn values;
    float *scratch[SERL_MAX_THREADS];
} decode_job;

static inline __m256i tail_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* The four horizontal sums of a0..a3, in order. */
static inline __m128 hsum4x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* Walks a sequence's slots in order through its block table without a division per token. */
typedef struct {
    const int32_t *bt;
    int bs, b, o;
} slot_cursor;

static inline int64_t cursor_next(slot_cursor *c) {
    int64_t slot = (int64_t)c->bt[c->b] * c->bs + c->o;
    if (++c->o == c->bs) c->o = 0, c->b++;
    return slot;
}

/* How far ahead of use a task's rows are prefetched, in bytes (4 to 64 slots): blocks are scattered over
 * the cache, and the hardware prefetcher stops at every page boundary. The rows go to L2, not L1
 * (prefetcht1): a prefetch into L1 holds one of the core's few L1 miss buffers until its line lands,
 * so the loop stalled on its own prefetches (a fifth of its samples on the instruction after them) and
 * read DRAM at half the rate of a plain stream. Into L2, 64 sequences of 512 tokens decode 2.1-2.3×
 * as fast (BenchmarkDecodeAttention S/ctx=512: 9-10 → 21-22 GB/s on one core, 19-20 → 41-42 on two,
 * where the machine streams 25 and 44; config M's 1 KiB rows 1.35-1.45×). 8 KiB is 16 slots of the
 * built-in model's 512-byte f32 rows; 16 and 32 KiB were no better. */
#define DECODE_PF_BYTES 8192

static inline __attribute__((always_inline)) void prefetch_row(const void *p, int64_t bytes) {
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch((const char *)p + b, _MM_HINT_T1);
}

/* Dot products of the query rows q[n] (n < NH ≤ 4) with the key rows k[n] over D; the four sums. NH is a
 * literal at every call, so the four accumulators stay in registers (a runtime count kept them on the
 * stack, and every sum waited on a store). */
static inline __attribute__((always_inline)) __m128 dot4(const int NH, const float *const q[4], const float *const k[4],
                                                         int D, int Dv, __m256i tm) {
    __m256 c[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
#pragma GCC unroll 4
    for (int n = 0; n < NH; n++) {
        __m256 x0 = _mm256_setzero_ps(), x1 = x0;
        int d = 0;
        for (; d + 16 <= Dv; d += 16) {
            x0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[n] + d), _mm256_loadu_ps(k[n] + d), x0);
            x1 = _mm256_fmadd_ps(_mm256_loadu_ps(q[n] + d + 8), _mm256_loadu_ps(k[n] + d + 8), x1);
        }
        if (d < Dv) x0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[n] + d), _mm256_loadu_ps(k[n] + d), x0);
        if (Dv < D) x1 = _mm256_fmadd_ps(_mm256_loadu_ps(q[n] + Dv), _mm256_maskload_ps(k[n] + Dv, tm), x1);
        c[n] = _mm256_add_ps(x0, x1);
    }
    return hsum4x8(c[0], c[1], c[2], c[3]);
}

/* Four heads at a time, slot after slot; a group short of four writes zeros into sc's padding heads. */
static void scores_avx2(int NH, int G, int D, const float *qs, int Dp, const float *const *kr, int nt, float *sc,
                        int NHp) {
    const int Dv = D & ~7; /* columns done by full vectors; the rest masked */
    const __m256i tm = tail_mask(D - Dv);
    for (int n = 0; n < NH; n += 4) {
        const int nh = NH - n < 4 ? NH - n : 4;
        const float *q4[4];
        int64_t ko[4];
        for (int i = 0; i < nh; i++) q4[i] = qs + (int64_t)(n + i) * Dp, ko[i] = (int64_t)((n + i) / G) * D;
        for (int u = 0; u < nt; u++) {
            const float *k4[4];
            for (int i = 0; i < nh; i++) k4[i] = kr[u] + ko[i];
            __m128 r;
            switch (nh) {
            case 1: r = dot4(1, q4, k4, D, Dv, tm); break;
            case 2: r = dot4(2, q4, k4, D, Dv, tm); break;
            case 3: r = dot4(3, q4, k4, D, Dv, tm); break;
            default: r = dot4(4, q4, k4, D, Dv, tm); break;
            }
            _mm_storeu_ps(sc + (int64_t)u * NHp + n, r);
        }
    }
}

/* an[d] += Σ_u p[u·ldp]·v[u][vo + d] for d < D, u < nt, one slot after another: the same multiply-adds
 * in the same order as slot by slot, but 64 columns' accumulators stay in registers across the chunk
 * instead of a load and a store of each per slot. Columns past the last multiple of 64 go slot by slot. */
static inline void values_chunk(float *an, const float *const *v, int64_t vo, const float *p, int ldp, int nt, int D,
                                int Dv, __m256i tm) {
    int d0 = 0;
    for (; d0 + 64 <= D; d0 += 64) {
        __m256 c[8];
        for (int i = 0; i < 8; i++) c[i] = _mm256_loadu_ps(an + d0 + 8 * i);
        for (int u = 0; u < nt; u++) {
            const __m256 pu = _mm256_set1_ps(p[(size_t)u * ldp]);
            const float *vu = v[u] + vo + d0;
            for (int i = 0; i < 8; i++) c[i] = _mm256_fmadd_ps(pu, _mm256_loadu_ps(vu + 8 * i), c[i]);
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(an + d0 + 8 * i, c[i]);
    }
    if (d0 == D) return;
    for (int u = 0; u < nt; u++) {
        const __m256 pu = _mm256_set1_ps(p[(size_t)u * ldp]);
        const float *vu = v[u] + vo;
        int d = d0;
        for (; d < Dv; d += 8) _mm256_storeu_ps(an + d, _mm256_fmadd_ps(pu, _mm256_loadu_ps(vu + d), _mm256_loadu_ps(an + d)));
        if (d < D) _mm256_storeu_ps(an + d, _mm256_fmadd_ps(pu, _mm256_maskload_ps(vu + d, tm), _mm256_loadu_ps(an + d)));
    }
}

static void values_avx2(int NH, int G, int D, float *acc, int Dp, const float *const *vr, const float *sc, int NHp,
                        int nt) {
    const int Dv = D & ~7;
    const __m256i tm = tail_mask(D - Dv);
    for (int n = 0; n < NH; n++)
        values_chunk(acc + (int64_t)n * Dp, vr, (int64_t)(n / G) * D, sc + n, NHp, nt, D, Dv, tm);
}

/* Slots a chunk of either pass holds: its rows (8 KiB for the built-in model, 64 KiB at head_dim 128 over
 * 8 kv heads) stay in L1 or L2 while every head reads its part. */
#define VCHUNK 16

static void decode_task(void *arg, int64_t t, int w) {
    const decode_job *j = arg;
    const serl_decode_attention_args *a = j->a;
    const int G = j->G, D = a->head_dim, Dp = j->Dp, H = a->n_heads, KVH = a->n_kv_heads;
    const int s = (int)(t / j->parts), L = a->seq_lens[s];
    int64_t k0, k1;
    serl_chunk(KVH, j->parts, t % j->parts, &k0, &k1);
    const int NH = (int)(k1 - k0) * G, h0 = (int)k0 * G; /* query heads of this task */
    const int NHp = (NH + 7) & ~7;                       /* score row stride: heads padded to 8 */
    const int64_t row = (int64_t)KVH * D;                /* floats per slot */
    const int64_t lo = k0 * D, span = (k1 - k0) * D;     /* the task's part of a slot */
    const int64_t sb = span * (int64_t)serl_dtype_size(a->cache_dtype); /* its bytes */
    const slot_cursor start = {a->block_table + (int64_t)s * a->max_blocks, a->block_size, 0, 0};

    /* scratch: scaled queries [NH, Dp], accumulators [NH, Dp], scores token-major [L, NHp], and per
     * head max, 1/sum */
    float *qs = j->scratch[w], *acc = qs + (size_t)NH * Dp, *sc = acc + (size_t)NH * Dp;
    float *mx = sc + (size_t)L * NHp, *inv = mx + NHp, *wide = inv + NHp;
    for (int n = 0; n < NH; n++) {
        serl_load_f32(qs + n * Dp, a->q, a->q_dtype, ((int64_t)s * H + h0 + n) * D, D);
        for (int d = 0; d < D; d++) qs[n * Dp + d] *= a->scale;
        for (int d = D; d < Dp; d++) qs[n * Dp + d] = 0;
    }
    /* A bf16 cache: each chunk's slot parts are widened into float32 (in L1) and read from there — except
     * the keys when the pair instruction can take them as they are. */
    const int bf = a->cache_dtype == SERL_DTYPE_BF16;
    const int64_t ldqb = (D + 31) & ~31; /* bf16 query rows for the pair kernel, zero-padded */
    uint16_t *qb = (uint16_t *)acc;       /* the accumulators are not needed before the values pass */
    if (j->dp)
        for (int n = 0; n < NH; n++) {
            memcpy(qb + n * ldqb, (const uint16_t *)a->q + ((int64_t)s * H + h0 + n) * D, sizeof(uint16_t) * (size_t)D);
            memset(qb + n * ldqb + D, 0, sizeof(uint16_t) * (size_t)(ldqb - D));
        }

    /* Both passes walk the slots in address order (the prefetchers follow it), VCHUNK at a time: the
     * chunk's rows are found (a bf16 cache widened) and handed to the pass. */
    for (int pass = 0; pass < 2; pass++) {
        const void *cache = pass ? a->v_cache : a->k_cache;
        slot_cursor cur = start, pf = start;
        for (int jj = 0; jj < j->pf && jj < L; jj++) prefetch_row(serl_at(cache, a->cache_dtype, cursor_next(&pf) * row + lo), sb);
        if (pass) {
            /* softmax over tokens, eight heads per vector; sums in double */
            for (int n = 0; n < NHp; n += 8) {
                __m256 m = _mm256_set1_ps(-INFINITY);
                for (int jt = 0; jt < L; jt++) m = _mm256_max_ps(m, _mm256_loadu_ps(sc + (size_t)jt * NHp + n));
                __m256d s0 = _mm256_setzero_pd(), s1 = s0;
                for (int jt = 0; jt < L; jt++) {
                    float *p = sc + (size_t)jt * NHp + n;
                    __m256 e = serl_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(p), m));
                    _mm256_storeu_ps(p, e);
                    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
                    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
                }
                _mm_storeu_ps(inv + n, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_set1_pd(1.0), s0)));
                _mm_storeu_ps(inv + n + 4, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_set1_pd(1.0), s1)));
            }
            memset(acc, 0, sizeof(float) * (size_t)NH * Dp);
        }
        for (int t0 = 0; t0 < L; t0 += VCHUNK) {
            const int nt = L - t0 < VCHUNK ? L - t0 : VCHUNK;
            const float *rows[VCHUNK];
            for (int u = 0; u < nt; u++) {
                const int64_t at = cursor_next(&cur) * row + lo;
                if (t0 + u + j->pf < L) prefetch_row(serl_at(cache, a->cache_dtype, cursor_next(&pf) * row + lo), sb);
                if (!pass && j->dp) {
                    serl_decode_scores_avx512bf16(NH, G, D, qb, ldqb, (const uint16_t *)a->k_cache + at, a->scale,
                                                  sc + (size_t)(t0 + u) * NHp);
                } else if (bf) {
                    float *wu = wide + (size_t)u * j->span_max;
                    serl_bf16_to_f32_n(wu, (const uint16_t *)cache + at, span);
                    rows[u] = wu;
                } else {
                    rows[u] = (const float *)cache + at;
                }
            }
            if (pass)
                j->values(NH, G, D, acc, Dp, rows, sc + (size_t)t0 * NHp, NHp, nt);
            else if (!j->dp)
                j->scores(NH, G, D, qs, Dp, rows, nt, sc + (size_t)t0 * NHp, NHp);
        }
    }
    for (int n = 0; n < NH; n++) {
        float *an = acc + (size_t)n * Dp;
        for (int d = 0; d < D; d++) an[d] *= inv[n];
        serl_store_f32(a->out, a->out_dtype, ((int64_t)s * H + h0 + n) * D, an, D);
    }
}

SERL_API int32_t serl_decode_attention(void *ctxp, const serl_decode_attention_args *a) {
    SERL_ENTER(ctxp, a, serl_decode_attention_args);
    SERL_CHECK(serl_check_decode_attention(ctx, a));
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
    /* A task reads whole slot rows (all kv heads: contiguous memory) unless there are too few sequences
     * to feed the workers; then each sequence's kv heads are split over several tasks. */
    int parts = (4 * ctx->threads + a->n_seqs - 1) / a->n_seqs;
    if (parts > a->n_kv_heads) parts = a->n_kv_heads;
    decode_job j = {.a = a, .G = a->n_heads / a->n_kv_heads, .Dp = (a->head_dim + 15) & ~15, .parts = parts,
                    .dp = a->q_dtype == SERL_DTYPE_BF16 && a->cache_dtype == SERL_DTYPE_BF16 &&
                          ctx->simd >= SERL_SIMD_AVX512BF16,
                    .scores = ctx->simd >= SERL_SIMD_AVX512 ? serl_decode_scores_avx512 : scores_avx2,
                    .values = ctx->simd >= SERL_SIMD_AVX512 ? serl_decode_values_avx512 : values_avx2};
    const size_t nh = (size_t)(a->n_kv_heads + parts - 1) / parts * j.G; /* most query heads in one task */
    const size_t nhp = (nh + 7) & ~(size_t)7;
    j.span_max = (size_t)(a->n_kv_heads + parts - 1) / parts * (size_t)a->head_dim;
    j.pf = (int)(DECODE_PF_BYTES / (j.span_max * serl_dtype_size(a->cache_dtype)));
    j.pf = j.pf < 4 ? 4 : j.pf > 64 ? 64 : j.pf;
    size_t bytes = sizeof(float) * (2 * nh * j.Dp + (size_t)max_len * nhp + 2 * nhp + VCHUNK * j.span_max + 8);
    for (int w = 0; w < ctx->threads; w++) {
        j.scratch[w] = serl_scratch(ctx, w, bytes);
        if (!j.scratch[w]) return serl_fail(ctx, SERL_E_NOMEM, "decode_attention: out of memory for scratch");
    }
    serl_parallel(ctx, (int64_t)a->n_seqs * parts, decode_task, &j);
    return SERL_OK;
}
