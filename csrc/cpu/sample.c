/* Token sampling: presence penalty, bans, temperature, greedy or top-k → top-p → inverse-CDF draw, with
 * a counter-based generator (Philox4x32-10) keyed by (seed, sequence, step) so a row's token depends on
 * that row alone: not on the batch, the thread count or the order rows run in.
 *
 * Truncation never sorts the vocabulary. Tokens fall into buckets of width 1/64 by m − z (a monotone map
 * of the logit, so buckets respect the order); one histogram pass of counts and masses locates the bucket
 * where top-k's count or top-p's mass is reached, and only that bucket's members are sorted. The kept set
 * is then a prefix of the order (z descending, index ascending), i.e. a threshold on (z, index), and the
 * draw walks kept tokens in index order with double cumulative sums. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expf_avx2.h"
#include "internal.h"
#include "../philox.h"

#define BPU 64                 /* buckets per unit of logit */
#define DMAX 32                /* m − z beyond this (weight < e^-32) goes to the overflow bucket */
#define NB (BPU * DMAX + 1)    /* buckets, the last one the overflow */
#define BLK 64                 /* draw walk block */

/* ------------------------------------------------------------------------- helpers */

static inline __m256i tail_mask(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static float vmax(const float *x, int v) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int j = 0;
    for (; j + 16 <= v; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    }
    float m = serl_hmax8(_mm256_max_ps(m0, m1));
    for (; j < v; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* w[j] = e^(z[j] − m) (w may be NULL: sum only); returns Σ in double. */
static double vexp_sum(const float *z, float *w, int v, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int j = 0;
    for (; j + 16 <= v; j += 16) {
        __m256 e0 = serl_exp8(_mm256_sub_ps(_mm256_loadu_ps(z + j), vm));
        __m256 e1 = serl_exp8(_mm256_sub_ps(_mm256_loadu_ps(z + j + 8), vm));
        if (w) _mm256_storeu_ps(w + j, e0), _mm256_storeu_ps(w + j + 8, e1);
        s0 = serl_acc8d(s0, e0);
        s1 = serl_acc8d(s1, e1);
    }
    for (; j < v; j += 8) {
        __m256i k = tail_mask(v - j);
        __m256 e = _mm256_and_ps(serl_exp8(_mm256_sub_ps(_mm256_maskload_ps(z + j, k), vm)), _mm256_castsi256_ps(k));
        if (w) _mm256_maskstore_ps(w + j, k, e);
        s0 = serl_acc8d(s0, e);
    }
    return serl_hsum4d(_mm256_add_pd(s0, s1));
}

static inline int bucket_of(float m, float z) {
    float d = m - z;
    return d < (float)DMAX ? (int)(d * (float)BPU) : NB - 1; /* NaN → overflow */
}

/* bucket_of for 8 lanes, bit-identical to the scalar one. */
static inline __m256i bucket8(__m256 vm, __m256 z) {
    __m256 d = _mm256_sub_ps(vm, z);
    __m256i b = _mm256_cvttps_epi32(_mm256_mul_ps(d, _mm256_set1_ps((float)BPU)));
    __m256 in = _mm256_cmp_ps(d, _mm256_set1_ps((float)DMAX), _CMP_LT_OQ);
    return _mm256_blendv_epi8(_mm256_set1_epi32(NB - 1), b, _mm256_castps_si256(in));
}

typedef struct {
    float z;
    int32_t i;
} cand;

/* z descending, index ascending: the order that top-k and top-p prefixes are taken in. */
static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->z != b->z) return a->z > b->z ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Sorted members of bucket b into c; returns their count. */
static int gather(const float *z, int v, float m, int b, cand *c) {
    const __m256 vm = _mm256_set1_ps(m);
    const __m256i vb = _mm256_set1_epi32(b);
    int n = 0, j = 0;
    for (; j + 8 <= v; j += 8) {
        __m256 zz = _mm256_loadu_ps(z + j);
        unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bucket8(vm, zz), vb)));
        while (bits) {
            int l = __builtin_ctz(bits);
            bits &= bits - 1;
            c[n].z = z[j + l], c[n].i = j + l, n++;
        }
    }
    for (; j < v; j++)
        if (bucket_of(m, z[j]) == b) c[n].z = z[j], c[n].i = j, n++;
    qsort(c, (size_t)n, sizeof(cand), cand_cmp);
    return n;
}

/* Counts and masses per bucket, over the tokens of buckets < lim only (the rest cannot matter). */
static void histogram(const float *z, const float *w, int v, float m, int lim, int32_t *hc, double *hw) {
    const __m256 vm = _mm256_set1_ps(m);
    const __m256i vlim = _mm256_set1_epi32(lim);
    int32_t bb[8];
    int j = 0;
    for (; j + 8 <= v; j += 8) {
        __m256i b = bucket8(vm, _mm256_loadu_ps(z + j));
        unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(vlim, b)));
        if (!bits) continue;
        _mm256_storeu_si256((__m256i *)bb, b);
        while (bits) {
            int l = __builtin_ctz(bits);
            bits &= bits - 1;
            hc[bb[l]]++, hw[bb[l]] += w[j + l];
        }
    }
    for (; j < v; j++) {
        int b = bucket_of(m, z[j]);
        if (b < lim) hc[b]++, hw[b] += w[j];
    }
}

/* Prefilter statistics from the exponential pass: for each depth D[i], how many tokens lie within it
 * (m − z < D) and the mass of those beyond it (float: only used with a safety factor). */
#define ND 4
static const float depth[ND] = {2, 4, 8, 16};

static double vexp_stats(const float *z, float *w, int v, float m, int32_t cnt[ND], float tail[ND]) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256d s0 = _mm256_setzero_pd();
    __m256i c[ND];
    __m256 t[ND], nd[ND];
    for (int i = 0; i < ND; i++) c[i] = _mm256_setzero_si256(), t[i] = _mm256_setzero_ps(), nd[i] = _mm256_set1_ps(-depth[i]);
    for (int j = 0; j < v; j += 8) {
        /* masked loads/stores only for the tail: AMD cores microcode vmaskmovps stores */
        const int full = j + 8 <= v;
        __m256i live = full ? _mm256_set1_epi32(-1) : tail_mask(v - j);
        __m256 d = _mm256_sub_ps(full ? _mm256_loadu_ps(z + j) : _mm256_maskload_ps(z + j, live), vm);
        __m256 e = _mm256_and_ps(serl_exp8(d), _mm256_castsi256_ps(live));
        if (full)
            _mm256_storeu_ps(w + j, e);
        else
            _mm256_maskstore_ps(w + j, live, e);
        s0 = serl_acc8d(s0, e);
        for (int i = 0; i < ND; i++) {
            __m256 in = _mm256_and_ps(_mm256_cmp_ps(d, nd[i], _CMP_GT_OQ), _mm256_castsi256_ps(live));
            c[i] = _mm256_sub_epi32(c[i], _mm256_castps_si256(in));
            t[i] = _mm256_add_ps(t[i], _mm256_andnot_ps(in, e));
        }
    }
    for (int i = 0; i < ND; i++) {
        int32_t cc[8];
        float tt[8];
        _mm256_storeu_si256((__m256i *)cc, c[i]);
        _mm256_storeu_ps(tt, t[i]);
        cnt[i] = 0, tail[i] = 0;
        for (int l = 0; l < 8; l++) cnt[i] += cc[l], tail[i] += tt[l];
    }
    return serl_hsum4d(s0);
}

/* Index of the first element equal to m (there is one). */
static int first_eq(const float *z, int v, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    int j = 0;
    for (; j + 8 <= v; j += 8) {
        unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z + j), vm, _CMP_EQ_OQ));
        if (bits) return j + __builtin_ctz(bits);
    }
    for (; j < v; j++)
        if (z[j] == m) return j;
    return 0;
}

/* Σ w over kept tokens j in [j0, j1): z > zb, or z == zb and j ≤ ib. In double. */
static double kept_sum(const float *z, const float *w, int j0, int j1, float zb, int ib) {
    const __m256 vzb = _mm256_set1_ps(zb);
    const __m256i lim = _mm256_set1_epi32(ib + 1), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256d acc = _mm256_setzero_pd();
    for (int j = j0; j < j1; j += 8) {
        const int full = j + 8 <= j1;
        __m256i live = full ? _mm256_set1_epi32(-1) : tail_mask(j1 - j);
        __m256 zz = full ? _mm256_loadu_ps(z + j) : _mm256_maskload_ps(z + j, live);
        __m256 ww = full ? _mm256_loadu_ps(w + j) : _mm256_maskload_ps(w + j, live);
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(j), lane);
        __m256 tie = _mm256_and_ps(_mm256_cmp_ps(zz, vzb, _CMP_EQ_OQ), _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, idx)));
        __m256 keep = _mm256_or_ps(_mm256_cmp_ps(zz, vzb, _CMP_GT_OQ), tie);
        acc = serl_acc8d(acc, _mm256_and_ps(ww, _mm256_and_ps(keep, _mm256_castsi256_ps(live))));
    }
    return serl_hsum4d(acc);
}

/* ------------------------------------------------------------------------- one row */

typedef struct {
    const serl_sample_args *a;
    void *scratch[SERL_MAX_THREADS];
    int bad_row; /* 1 + a row whose every logit is −inf or NaN, else 0 */
} sample_job;

static size_t scratch_bytes(int v) {
    size_t fv = ((size_t)v * sizeof(float) + 63) & ~(size_t)63;
    size_t cv = ((size_t)v * sizeof(cand) + 63) & ~(size_t)63;
    return 3 * fv + cv + NB * (sizeof(double) + sizeof(int32_t)) + 64; /* the third row: bf16 logits widened */
}

static void sample_row(void *arg, int64_t r, int worker) {
    sample_job *job = arg;
    const serl_sample_args *a = job->a;
    const int V = a->vocab;
    size_t fv = ((size_t)V * sizeof(float) + 63) & ~(size_t)63;
    size_t cv = ((size_t)V * sizeof(cand) + 63) & ~(size_t)63;
    char *sp = job->scratch[worker];
    float *zs = (float *)sp, *w = (float *)(sp + fv);
    cand *c = (cand *)(sp + 2 * fv);
    double *hw = (double *)(sp + 2 * fv + cv);
    int32_t *hc = (int32_t *)(hw + NB);
    float *xw = (float *)(hc + NB);
    xw = (float *)(((uintptr_t)xw + 63) & ~(uintptr_t)63);

    const float *x;
    if (a->logits_dtype == SERL_DTYPE_BF16) {
        serl_bf16_to_f32_n(xw, (const uint16_t *)a->logits + r * (int64_t)a->ld, V);
        x = xw;
    } else {
        x = (const float *)a->logits + r * (int64_t)a->ld;
    }
    const float T = a->temperature[r];
    const int greedy = T == 0;

    /* 1–2. z = (x − penalty·seen) / T, banned → −inf. Division (not a reciprocal) as the spec reads.
     * Rows with nothing to change read the logits in place. */
    const float pen = a->presence_penalty[r];
    const int penalise = a->hist && pen != 0 && a->hist_len[r] > 0;
    const int ban = a->n_ban > 0 && (!a->ban_rows || a->ban_rows[r]);
    const float *z = x;
    if (greedy || T == 1.0f) {
        if (penalise || ban) {
            memcpy(zs, x, sizeof(float) * (size_t)V);
            z = zs;
        }
    } else {
        const __m256 vt = _mm256_set1_ps(T);
        int j = 0;
        for (; j + 8 <= V; j += 8) _mm256_storeu_ps(zs + j, _mm256_div_ps(_mm256_loadu_ps(x + j), vt));
        for (; j < V; j++) zs[j] = x[j] / T;
        z = zs;
    }
    if (penalise) {
        const int32_t *h = a->hist + r * (int64_t)a->ld_hist;
        /* assigning from x (not z) makes repeats idempotent: each distinct token is penalised once */
        for (int i = 0; i < a->hist_len[r]; i++) zs[h[i]] = greedy ? x[h[i]] - pen : (x[h[i]] - pen) / T;
    }
    if (ban)
        for (int i = 0; i < a->n_ban; i++) zs[a->ban_ids[i]] = -INFINITY;

    float m = vmax(z, V);
    if (!(m > -INFINITY) || isinf(m)) {
        __atomic_store_n(&job->bad_row, (int)r + 1, __ATOMIC_RELAXED);
        a->tokens[r] = -1;
        return;
    }

    int tok;
    double S;
    if (greedy) {
        tok = first_eq(z, V, m);
        S = vexp_sum(z, NULL, V, m);
    } else {
        const int k = a->top_k[r];
        const float p = a->top_p[r];
        const int use_k = k > 0 && k < V, use_p = p < 1.0f;
        float zb = -INFINITY; /* kept ⟺ z > zb or (z == zb and j ≤ ib); at first every token */
        int ib = V;
        int32_t cnt[ND];
        float tail[ND];
        S = use_k || use_p ? vexp_stats(z, w, V, m, cnt, tail) : vexp_sum(z, w, V, m);
        double WF = S;
        if (use_k || use_p) {
            /* Only tokens within depth D of the maximum can be kept when the top-k set fits inside D, or
             * (top-p alone) when the mass beyond D is below 1 − p: histogram those alone. */
            int lim = NB;
            for (int i = 0; i < ND; i++) {
                int fits = use_k ? cnt[i] >= k : tail[i] <= 0.5 * (1.0 - (double)p) * S;
                if (fits) {
                    lim = (int)depth[i] * BPU;
                    break;
                }
            }
        retry:
            memset(hc, 0, sizeof(int32_t) * NB);
            memset(hw, 0, sizeof(double) * NB);
            histogram(z, w, V, m, lim, hc, hw);
            /* top-k: bucket bk holds the k-th token; its first nk sorted members are kept */
            int bk = NB - 1, nk = 0;
            double WK = S;
            if (use_k) {
                int64_t cum = 0;
                double before = 0;
                for (bk = 0; bk < NB - 1 && cum + hc[bk] < k; bk++) cum += hc[bk], before += hw[bk];
                if (bk >= lim) { /* the prefilter was wrong: cannot happen, but stay exact */
                    lim = NB;
                    goto retry;
                }
                int nc = gather(z, V, m, bk, c);
                nk = k - (int)cum < nc ? k - (int)cum : nc;
                WK = before;
                for (int i = 0; i < nk; i++) WK += w[c[i].i];
                if (nk > 0) zb = c[nk - 1].z, ib = c[nk - 1].i;
                WF = WK;
            }
            if (use_p) {
                /* the first bucket where the mass within the top-k set reaches p·WK; inside it, keep
                 * members while the mass before them is below p·WK (the crossing token is kept) */
                const double target = (double)p * WK;
                double cum = 0;
                int bp = 0, last = use_k ? bk : NB - 1;
                for (; bp < last && cum + hw[bp] < target; bp++) cum += hw[bp];
                if (bp >= lim) { /* float tail sums misled the prefilter: redo over every bucket */
                    lim = NB;
                    goto retry;
                }
                int n = use_k && bp == bk ? nk : gather(z, V, m, bp, c);
                int kept = 0;
                for (; kept < n && cum < target; kept++) cum += w[c[kept].i];
                if (kept > 0) zb = c[kept - 1].z, ib = c[kept - 1].i, WF = cum;
            }
        }
        /* 4. inverse CDF over kept tokens in index order, a block sum at a time */
        double u = philox_uniform(a->seeds[r], a->seq_ids[r], (uint32_t)a->steps[r]);
        double target = u * WF, cum = 0;
        tok = -1;
        for (int j0 = 0; j0 < V && tok < 0; j0 += BLK) {
            int j1 = j0 + BLK < V ? j0 + BLK : V;
            double bs = kept_sum(z, w, j0, j1, zb, ib);
            if (cum + bs <= target) {
                cum += bs;
                continue;
            }
            for (int j = j0; j < j1; j++) {
                if (!(z[j] > zb || (z[j] == zb && j <= ib))) continue;
                cum += w[j];
                if (cum > target && w[j] > 0) {
                    tok = j;
                    break;
                }
            }
        }
        /* rounding left the walk's total short of u·WF (probability ~1e-16): the last kept token */
        for (int j = V - 1; tok < 0 && j >= 0; j--)
            if ((z[j] > zb || (z[j] == zb && j <= ib)) && w[j] > 0) tok = j;
        if (tok < 0) { /* cannot happen: the maximum has weight 1 and is always kept */
            tok = 0;
            while (tok < V && !(z[tok] == m)) tok++;
        }
    }
    a->tokens[r] = tok;
    if (a->logp) a->logp[r] = (float)((double)z[tok] - (double)m - log(S));
}

/* ------------------------------------------------------------------------- export */

SERL_API int32_t serl_sample(void *ctxp, const serl_sample_args *a) {
    SERL_ENTER(ctxp, a, serl_sample_args);
    SERL_CHECK(serl_check_sample(ctx, a));
    for (int i = 0; i < a->n_ban; i++)
        SERL_REQUIRE(a->ban_ids[i] >= 0 && a->ban_ids[i] < a->vocab, "sample: ban_ids[%d] = %d outside [0, %d)", i,
                     a->ban_ids[i], a->vocab);
    for (int r = 0; r < a->n; r++) {
        float t = a->temperature[r], p = a->top_p[r];
        SERL_REQUIRE(t >= 0 && isfinite(t), "sample: temperature[%d] = %g (want finite ≥ 0)", r, (double)t);
        SERL_REQUIRE(p > 0, "sample: top_p[%d] = %g (want > 0)", r, (double)p);
        SERL_REQUIRE(isfinite(a->presence_penalty[r]), "sample: presence_penalty[%d] = %g", r, (double)a->presence_penalty[r]);
        if (a->hist) {
            int len = a->hist_len[r];
            SERL_REQUIRE(len >= 0 && len <= a->ld_hist, "sample: hist_len[%d] = %d outside [0, ld_hist = %d]", r, len,
                         a->ld_hist);
            const int32_t *h = a->hist + (int64_t)r * a->ld_hist;
            for (int i = 0; i < len; i++)
                SERL_REQUIRE(h[i] >= 0 && h[i] < a->vocab, "sample: hist[%d][%d] = %d outside [0, %d)", r, i, h[i],
                             a->vocab);
        }
    }
    sample_job job = {a, {0}, 0};
    /* any worker may pull any row, so every worker gets scratch */
    for (int w = 0; w < ctx->threads; w++) {
        job.scratch[w] = serl_scratch(ctx, w, scratch_bytes(a->vocab));
        if (!job.scratch[w]) return serl_fail(ctx, SERL_E_NOMEM, "sample: out of memory for scratch");
    }
    serl_parallel(ctx, a->n, sample_row, &job);
    if (job.bad_row)
        return serl_fail(ctx, SERL_E_ARG, "sample: row %d has no finite logit (every token banned or −inf)", job.bad_row - 1);
    return SERL_OK;
}
