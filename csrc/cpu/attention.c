/* Causal self-attention over packed variable-length sequences, grouped-query heads: forward with online
 * softmax (flash-style, key blocks of ATT_BK) and backward (query blocks outer, key blocks inner).
 *
 * Every product is one small dense kernel, C (+)= A·B with A read through two strides (so Aᵀ costs
 * nothing) and B row-major with a width that is a multiple of 16: the query heads of one kv head are
 * stacked as the rows of A (rows = tokens × group), so each key/value block read from memory serves
 * the whole group. head_dim is zero-padded to Dp (a multiple of 16). The keys and values are staged
 * once per call in float32, transposed where a product reads them as B columns (stage()); queries and
 * output gradients go through per-worker scratch. The kernel and the softmax's row passes have AVX2
 * bodies here and AVX-512 ones in attention_avx512.c, chosen per call from ctx->simd (att_simd).
 *
 * Forward tasks are (seq, kv head, query block), costed by their key count and run longest first, so
 * the causal triangle balances over workers. Backward tasks are (seq, kv head): a task owns its dk/dv
 * rows (all query heads of the group write them) and its dq rows, so nothing races and nothing needs a
 * reduction afterwards; each gradient sums in float32 scratch and is added to its tensor once. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expf_avx2.h"
#include "internal.h"

#define ATT_BK 64  /* keys per block */
#define ATT_ROWS 64 /* target rows (query tokens × group heads) per block */

/* C[m·ldc + n] (+)= Σ_k A[m·am + k·ak] · B[k·ldb + n] for m < M, n < N, k < K; N % 16 == 0.
 * zero: C starts from 0 instead of its contents. */
typedef void (*att_gemm_fn)(int M, int N, int K, const float *A, ptrdiff_t am, ptrdiff_t ak, const float *B,
                            ptrdiff_t ldb, float *C, ptrdiff_t ldc, int zero);

void serl_att_gemm_avx512(int M, int N, int K, const float *A, ptrdiff_t am, ptrdiff_t ak, const float *B,
                          ptrdiff_t ldb, float *C, ptrdiff_t ldc, int zero);
double serl_att_softmax_row_avx512(float *x, int n, float m);
float serl_att_row_max_avx512(const float *x, int n);


/* ------------------------------------------------------------------------- AVX2 kernel */

/* mr rows × 16 columns; mr is a literal at every call site so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void gemm_tile_avx2(int mr, int K, const float *A, ptrdiff_t am,
                                                                 ptrdiff_t ak, const float *B, ptrdiff_t ldb,
                                                                 float *C, ptrdiff_t ldc, int zero) {
    __m256 c0[6], c1[6];
    for (int r = 0; r < mr; r++) {
        c0[r] = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(C + r * ldc);
        c1[r] = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(C + r * ldc + 8);
    }
    for (int k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(B + k * ldb), b1 = _mm256_loadu_ps(B + k * ldb + 8);
        const float *ak_ = A + k * ak;
        for (int r = 0; r < mr; r++) {
            __m256 x = _mm256_broadcast_ss(ak_ + r * am);
            c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(C + r * ldc, c0[r]);
        _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
    }
}

static void gemm_avx2(int M, int N, int K, const float *A, ptrdiff_t am, ptrdiff_t ak, const float *B, ptrdiff_t ldb,
                      float *C, ptrdiff_t ldc, int zero) {
    for (int n = 0; n < N; n += 16) {
        int m = 0;
        for (; m + 6 <= M; m += 6) gemm_tile_avx2(6, K, A + m * am, am, ak, B + n, ldb, C + m * ldc + n, ldc, zero);
        const float *Am = A + m * am;
        float *Cm = C + m * ldc + n;
        switch (M - m) {
        case 5: gemm_tile_avx2(5, K, Am, am, ak, B + n, ldb, Cm, ldc, zero); break;
        case 4: gemm_tile_avx2(4, K, Am, am, ak, B + n, ldb, Cm, ldc, zero); break;
        case 3: gemm_tile_avx2(3, K, Am, am, ak, B + n, ldb, Cm, ldc, zero); break;
        case 2: gemm_tile_avx2(2, K, Am, am, ak, B + n, ldb, Cm, ldc, zero); break;
        case 1: gemm_tile_avx2(1, K, Am, am, ak, B + n, ldb, Cm, ldc, zero); break;
        default: break;
        }
    }
}


/* x[j] = e^(x[j] − m) in place for j < n (n % 8 == 0; −inf entries become 0); returns Σ in double. */
static double softmax_row_avx2(float *x, int n, float m) {
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    double sum = 0;
    for (int j = 0; j < n; j += 8) {
        __m256 p = serl_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm));
        _mm256_storeu_ps(x + j, p);
        acc = _mm256_add_ps(acc, p);
        /* flush to double every 64 terms: float partial sums of ≤ 8 values each stay exact enough */
        if ((j & 63) == 56) {
            sum += serl_hsum8d(acc);
            acc = _mm256_setzero_ps();
        }
    }
    return sum + serl_hsum8d(acc);
}

static float row_max_avx2(const float *x, int n) {
    __m256 v = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(x + j));
    return serl_hmax8(v);
}

/* The vector bodies of a call, from ctx->simd: the product kernel and the row passes of the softmax
 * (rows of ATT_BK scores; the AVX-512 ones give the AVX2 ones' bits). */
typedef struct {
    att_gemm_fn gemm;
    double (*softmax_row)(float *x, int n, float m);
    float (*row_max)(const float *x, int n);
} att_simd;

/* ------------------------------------------------------------------------- shared setup */

typedef struct {
    int32_t seq, i0, i1, kvh;
    int64_t cost;
} att_task;

static int task_cmp(const void *x, const void *y) {
    int64_t a = ((const att_task *)x)->cost, b = ((const att_task *)y)->cost;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Query tokens per block: a power of two (so blocks align with key blocks) with tokens × group ≈ 64. */
static int query_block(int G) {
    int bq = 1;
    while (bq * 2 * G <= ATT_ROWS) bq *= 2;
    return bq;
}

static int pad16(int d) { return (d + 15) & ~15; }

static att_simd pick_simd(const serl_ctx *ctx) {
    if (ctx->simd >= SERL_SIMD_AVX512)
        return (att_simd){serl_att_gemm_avx512, serl_att_softmax_row_avx512, serl_att_row_max_avx512};
    return (att_simd){gemm_avx2, softmax_row_avx2, row_max_avx2};
}

/* ------------------------------------------------------------------------- staged keys and values */

/* The keys and values of the whole batch in the layouts the products read, float32, made once per call
 * by all workers (before, each task transposed every key block it visited, which cost as much as its
 * products):
 *   kt, vt  [KVH][Dp][tp]  transposed: column j is token j, rows D..Dp zero; tp = T + BK, so a key block
 *                          read whole past the last token stays inside (its columns are masked)
 *   kr, vr  [T][KVH][Dp]   rows: the input itself when it is float32 with D = Dp, else a padded copy
 * Row (j, kvh) of kr is kr + (j·KVH + kvh)·Dp; its stride between tokens is KVH·Dp. The forward reads kt
 * and vr, the backward kt, vt and kr; what a direction does not read is not made (NULL). */
typedef struct {
    float *kt, *vt;
    const float *kr, *vr;
    int64_t tp;
} att_stage;

typedef struct {
    const void *k, *v;
    int32_t k_dtype, v_dtype;
    int T, KVH, D, Dp;
    att_stage st;
    float *krw, *vrw; /* the copies behind kr/vr, NULL where the input serves */
} stage_job;

#define STAGE_TOKENS 64 /* tokens per staging task */

static void stage_task(void *arg, int64_t t, int w) {
    (void)w;
    const stage_job *j = arg;
    const int KVH = j->KVH, D = j->D, Dp = j->Dp;
    const int64_t tp = j->st.tp, chunks = (tp + STAGE_TOKENS - 1) / STAGE_TOKENS;
    const int kvh = (int)(t / chunks);
    const int64_t c0 = t % chunks * STAGE_TOKENS, c1 = c0 + STAGE_TOKENS < tp ? c0 + STAGE_TOKENS : tp;
    for (int which = 0; which < 2; which++) {
        float *xt = which ? j->st.vt : j->st.kt, *xr = which ? j->vrw : j->krw;
        const void *src = which ? j->v : j->k;
        const int32_t dt = which ? j->v_dtype : j->k_dtype;
        if (!xt && !xr) continue;
        for (int64_t jj = c0; jj < c1; jj++) {
            const int64_t at = jj * KVH + kvh;
            if (jj >= j->T) { /* the padding columns past the last token */
                if (xt)
                    for (int d = 0; d < Dp; d++) xt[((int64_t)kvh * Dp + d) * tp + jj] = 0;
                continue;
            }
            if (xr) { /* the padded float32 row, then its transpose from there */
                float *dst = xr + at * Dp;
                serl_load_f32(dst, src, dt, at * D, D);
                for (int d = D; d < Dp; d++) dst[d] = 0;
                if (xt)
                    for (int d = 0; d < Dp; d++) xt[((int64_t)kvh * Dp + d) * tp + jj] = dst[d];
                continue;
            }
            for (int d = 0; d < Dp; d++) /* the transpose straight from the input */
                xt[((int64_t)kvh * Dp + d) * tp + jj] = d < D ? serl_ld(src, dt, at * D + d) : 0;
        }
    }
}

/* Stages the layouts the caller reads (want_kt, want_vt: the transposes; want_kr, want_vr: the rows) in
 * the context's shared scratch. Returns a status. */
static int32_t stage(serl_ctx *ctx, const char *op, const void *k, int32_t k_dtype, const void *v, int32_t v_dtype, int T,
                     int KVH, int D, int want_kt, int want_vt, int want_kr, int want_vr, att_stage *out) {
    const int Dp = pad16(D);
    stage_job j = {.k = k, .v = v, .k_dtype = k_dtype, .v_dtype = v_dtype, .T = T, .KVH = KVH, .D = D, .Dp = Dp};
    j.st.tp = (int64_t)T + ATT_BK;
    const int64_t tsz = (int64_t)KVH * Dp * j.st.tp, rsz = (int64_t)T * KVH * Dp;
    const int copy_k = want_kr && (k_dtype != SERL_DTYPE_F32 || D != Dp);
    const int copy_v = want_vr && (v_dtype != SERL_DTYPE_F32 || D != Dp);
    const int64_t floats = (want_kt + want_vt) * tsz + (copy_k + copy_v) * rsz;
    float *p = floats ? serl_scratch_shared(ctx, sizeof(float) * (size_t)floats) : NULL;
    if (floats && !p) return serl_fail(ctx, SERL_E_NOMEM, "%s: out of memory staging keys and values (%lld bytes)", op,
                                       (long long)(sizeof(float) * floats));
    if (want_kt) j.st.kt = p, p += tsz;
    if (want_vt) j.st.vt = p, p += tsz;
    if (copy_k) j.krw = p, p += rsz;
    if (copy_v) j.vrw = p;
    j.st.kr = copy_k ? j.krw : want_kr ? (const float *)k : NULL;
    j.st.vr = copy_v ? j.vrw : want_vr ? (const float *)v : NULL;
    if (want_kt || want_vt || copy_k || copy_v)
        serl_parallel(ctx, (int64_t)KVH * ((j.st.tp + STAGE_TOKENS - 1) / STAGE_TOKENS), stage_task, &j);
    *out = j.st;
    return SERL_OK;
}

/* ------------------------------------------------------------------------- forward */

typedef struct {
    const serl_attention_fwd_args *a;
    att_simd v;
    const att_task *tasks;
    att_stage st;
    int G, Dp, rmax;
    float *scratch[SERL_MAX_THREADS];
} fwd_job;

static size_t fwd_scratch_floats(int rmax, int Dp) {
    /* Qs, O: rmax×Dp; S: rmax×BK; m: rmax; l: rmax doubles */
    return (size_t)2 * rmax * Dp + (size_t)rmax * ATT_BK + (size_t)rmax * 3 + 64;
}

static void fwd_task(void *arg, int64_t t, int w) {
    fwd_job *j = arg;
    const serl_attention_fwd_args *a = j->a;
    const att_task tk = j->tasks[t];
    const int G = j->G, D = a->head_dim, Dp = j->Dp, H = a->n_heads, KVH = a->n_kv_heads, BK = ATT_BK;
    const int s0 = a->cu_seqlens[tk.seq], i0 = tk.i0, i1 = tk.i1, kvh = tk.kvh, R = (i1 - i0) * G;
    const float scale = a->scale;
    const float *kt = j->st.kt + (int64_t)kvh * Dp * j->st.tp;
    const int64_t ldr = (int64_t)KVH * Dp;

    float *Qs = j->scratch[w], *O = Qs + (size_t)j->rmax * Dp, *S = O + (size_t)j->rmax * Dp;
    float *mrow = S + (size_t)j->rmax * BK;
    double *lrow = (double *)(((uintptr_t)(mrow + j->rmax) + 7) & ~(uintptr_t)7);

    /* rows r = (i − i0)·G + g, query head kvh·G + g; the scale is folded into the queries */
    for (int i = i0; i < i1; i++) {
        for (int g = 0; g < G; g++) {
            const int64_t src = ((int64_t)i * H + kvh * G + g) * D;
            float *dst = Qs + (size_t)((i - i0) * G + g) * Dp;
            serl_load_f32(dst, a->q, a->q_dtype, src, D);
            for (int d = 0; d < D; d++) dst[d] *= scale;
            for (int d = D; d < Dp; d++) dst[d] = 0;
        }
    }
    memset(O, 0, sizeof(float) * (size_t)R * Dp);
    for (int r = 0; r < R; r++) mrow[r] = -INFINITY, lrow[r] = 0;

    for (int j0 = s0; j0 < i1; j0 += BK) {
        const int nk = i1 - j0 < BK ? i1 - j0 : BK;
        j->v.gemm(R, pad16(nk), Dp, Qs, Dp, 1, kt + j0, j->st.tp, S, BK, 1); /* columns past nk are masked below */

        for (int r = 0; r < R; r++) {
            float *row = S + (size_t)r * BK;
            int lim = i0 + r / G - j0 + 1; /* keys j ≤ i of this block */
            if (lim > nk) lim = nk;
            for (int jj = lim < 0 ? 0 : lim; jj < BK; jj++) row[jj] = -INFINITY;
            float mx = j->v.row_max(row, BK);
            if (mx == -INFINITY) {
                /* no key of this block is visible to the row: contributes nothing */
                memset(row, 0, sizeof(float) * BK);
                continue;
            }
            float mnew = mx > mrow[r] ? mx : mrow[r];
            float alpha = expf(mrow[r] - mnew);
            double sum = j->v.softmax_row(row, BK, mnew);
            lrow[r] = lrow[r] * alpha + sum;
            if (alpha != 1.0f) {
                float *o = O + (size_t)r * Dp;
                for (int d = 0; d < Dp; d++) o[d] *= alpha;
            }
            mrow[r] = mnew;
        }

        j->v.gemm(R, Dp, nk, S, BK, 1, j->st.vr + ((int64_t)j0 * KVH + kvh) * Dp, ldr, O, Dp, 0);
    }

    for (int i = i0; i < i1; i++) {
        for (int g = 0; g < G; g++) {
            int r = (i - i0) * G + g, h = kvh * G + g;
            float *o = O + (size_t)r * Dp;
            float inv = (float)(1.0 / lrow[r]);
            for (int d = 0; d < D; d++) o[d] *= inv;
            serl_store_f32(a->out, a->out_dtype, ((int64_t)i * H + h) * D, o, D);
            if (a->lse) a->lse[(int64_t)i * H + h] = mrow[r] + (float)log(lrow[r]);
        }
    }
}

/* Tasks: (seq, kv head, query block of bq tokens), cost = keys seen by the block's last row × rows. */
static int64_t build_tasks(att_task *tasks, const int32_t *cu, int S, int KVH, int bq) {
    int64_t n = 0;
    for (int s = 0; s < S; s++)
        for (int i0 = cu[s]; i0 < cu[s + 1]; i0 += bq) {
            int i1 = i0 + bq < cu[s + 1] ? i0 + bq : cu[s + 1];
            for (int kvh = 0; kvh < KVH; kvh++) tasks[n++] = (att_task){s, i0, i1, kvh, (int64_t)(i1 - cu[s]) * (i1 - i0)};
        }
    qsort(tasks, (size_t)n, sizeof *tasks, task_cmp);
    return n;
}

SERL_API int32_t serl_attention_fwd(void *ctxp, const serl_attention_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_attention_fwd_args);
    int32_t st = serl_check_attention_fwd(ctx, a);
    if (st) return st;
    int max_len = 0; /* the longest sequence (set by the check; the initialiser keeps -Wmaybe-uninitialized quiet) */
    if ((st = serl_check_seqlens(ctx, "attention_fwd", a->cu_seqlens, a->n_seqs, a->n_tokens, a->max_len, &max_len)))
        return st;
    if (a->n_tokens == 0) return SERL_OK;

    const int G = a->n_heads / a->n_kv_heads, Dp = pad16(a->head_dim), bq = query_block(G);
    fwd_job j = {.a = a, .v = pick_simd(ctx), .G = G, .Dp = Dp, .rmax = bq * G};
    if ((st = stage(ctx, "attention_fwd", a->k, a->k_dtype, a->v, a->v_dtype, a->n_tokens, a->n_kv_heads, a->head_dim, 1, 0,
                    0, 1, &j.st)))
        return st;
    size_t per = sizeof(float) * fwd_scratch_floats(j.rmax, Dp);
    per = (per + 63) & ~(size_t)63;
    int64_t max_tasks = ((int64_t)a->n_tokens / bq + a->n_seqs) * a->n_kv_heads;
    for (int w = 0; w < ctx->threads; w++) {
        size_t bytes = per + (w == 0 ? sizeof(att_task) * (size_t)max_tasks : 0);
        j.scratch[w] = serl_scratch(ctx, w, bytes);
        if (!j.scratch[w]) return serl_fail(ctx, SERL_E_NOMEM, "attention_fwd: out of memory for scratch");
    }
    att_task *tasks = (att_task *)((char *)j.scratch[0] + per);
    int64_t n = build_tasks(tasks, a->cu_seqlens, a->n_seqs, a->n_kv_heads, bq);
    j.tasks = tasks;
    serl_parallel(ctx, n, fwd_task, &j);
    return SERL_OK;
}

/* ------------------------------------------------------------------------- backward */

/* Σ_d x[d]·y[d] for d < n, in double. */
static double dot_f64(const float *x, const float *y, int n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int d = 0;
    for (; d + 8 <= n; d += 8) {
        __m256 a = _mm256_loadu_ps(x + d), b = _mm256_loadu_ps(y + d);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)), _mm256_cvtps_pd(_mm256_castps256_ps128(b)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)), s1);
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; d < n; d++) sum += (double)x[d] * y[d];
    return sum;
}

/* Elements [off, off+D) of dst (dtype dt) += alpha·src, each rounded once; tmp holds D floats. */
static void add_row(void *dst, int32_t dt, int64_t off, const float *src, float alpha, int D, float *tmp) {
    float *x = dt == SERL_DTYPE_F32 ? (float *)dst + off : tmp;
    if (x == tmp) serl_load_f32(tmp, dst, dt, off, D);
    for (int d = 0; d < D; d++) x[d] += alpha * src[d];
    if (x == tmp) serl_store_f32(dst, dt, off, tmp, D);
}

/* A task is (seq, kv head): query blocks outer, key blocks inner. A query block's dQ stays in float32
 * scratch across its key blocks and is added to dq once; the task's dK and dV (its sequence's keys)
 * stay in float32 scratch across all query blocks and are added to dk and dv once: a bf16 gradient is
 * rounded once, as on the GPU, not once per block. */
typedef struct {
    const serl_attention_bwd_args *a;
    att_simd v;
    const att_task *tasks;
    att_stage st;
    int G, Dp, bq, rmax, max_len;
    float *scratch[SERL_MAX_THREADS];
} bwd_job;

static size_t bwd_scratch_floats(int rmax, int Dp, int max_len) {
    /* Qs, dO, dQ: rmax×Dp; P, dS: rmax×BK; lse, Di: rmax; dK, dV: max_len×Dp; one row: Dp */
    return (size_t)3 * rmax * Dp + (size_t)2 * rmax * ATT_BK + (size_t)2 * rmax + (size_t)2 * max_len * Dp + Dp + 64;
}

static void bwd_task(void *arg, int64_t t, int w) {
    bwd_job *j = arg;
    const serl_attention_bwd_args *a = j->a;
    const att_task tk = j->tasks[t];
    const int G = j->G, D = a->head_dim, Dp = j->Dp, H = a->n_heads, KVH = a->n_kv_heads, BK = ATT_BK, bq = j->bq;
    const int s0 = a->cu_seqlens[tk.seq], s1 = a->cu_seqlens[tk.seq + 1], kvh = tk.kvh, len = s1 - s0;
    const float scale = a->scale;
    const int64_t tp = j->st.tp, ldr = (int64_t)KVH * Dp;
    const float *kt = j->st.kt + (int64_t)kvh * Dp * tp, *vt = j->st.vt + (int64_t)kvh * Dp * tp;

    float *Qs = j->scratch[w], *dO = Qs + (size_t)j->rmax * Dp, *dQ = dO + (size_t)j->rmax * Dp;
    float *P = dQ + (size_t)j->rmax * Dp, *dS = P + (size_t)j->rmax * BK, *lse = dS + (size_t)j->rmax * BK;
    float *Di = lse + j->rmax, *dK = Di + j->rmax, *dV = dK + (size_t)j->max_len * Dp, *tmp = dV + (size_t)j->max_len * Dp;
    memset(dK, 0, sizeof(float) * (size_t)len * Dp);
    memset(dV, 0, sizeof(float) * (size_t)len * Dp);

    for (int i0 = s0; i0 < s1; i0 += bq) {
        const int i1 = i0 + bq < s1 ? i0 + bq : s1, R = (i1 - i0) * G;
        /* rows r = (i − i0)·G + g: scale·q, dout, lse and Di = Σ_d dout·out */
        for (int i = i0; i < i1; i++)
            for (int g = 0; g < G; g++) {
                const int r = (i - i0) * G + g;
                const int64_t off = ((int64_t)i * H + kvh * G + g) * D;
                float *qs = Qs + (size_t)r * Dp, *go = dO + (size_t)r * Dp;
                serl_load_f32(qs, a->q, a->q_dtype, off, D);
                for (int d = 0; d < D; d++) qs[d] *= scale;
                serl_load_f32(go, a->dout, a->dout_dtype, off, D);
                for (int d = D; d < Dp; d++) qs[d] = go[d] = 0;
                serl_load_f32(tmp, a->out, a->out_dtype, off, D);
                Di[r] = (float)dot_f64(tmp, go, D);
                lse[r] = a->lse[(int64_t)i * H + kvh * G + g];
            }
        memset(dQ, 0, sizeof(float) * (size_t)R * Dp);

        /* key blocks up to the block's last token: later keys are masked for every row */
        for (int j0 = s0; j0 < i1; j0 += BK) {
            const int nk = i1 - j0 < BK ? i1 - j0 : BK;
            /* the first nk columns, rounded up to the kernel's 16: P's later ones are masked, and no
             * product below reads a column of P or dS past nk */
            j->v.gemm(R, pad16(nk), Dp, Qs, Dp, 1, kt + j0, tp, P, BK, 1);  /* S = scale·q·kᵀ */
            j->v.gemm(R, pad16(nk), Dp, dO, Dp, 1, vt + j0, tp, dS, BK, 1); /* dP = dout·vᵀ */
            for (int r = 0; r < R; r++) {
                float *p = P + (size_t)r * BK, *ds = dS + (size_t)r * BK;
                int lim = i0 + r / G - j0 + 1;
                if (lim > nk) lim = nk;
                if (lim < 0) lim = 0;
                for (int jj = lim; jj < BK; jj++) p[jj] = -INFINITY;
                j->v.softmax_row(p, BK, lse[r]); /* p = e^(s − lse) */
                const float di = Di[r];
                for (int jj = 0; jj < BK; jj++) ds[jj] = p[jj] * (ds[jj] - di);
            }
            float *dv = dV + (size_t)(j0 - s0) * Dp, *dk = dK + (size_t)(j0 - s0) * Dp;
            j->v.gemm(nk, Dp, R, P, 1, BK, dO, Dp, dv, Dp, 0);                                        /* dV += Pᵀ·dout */
            j->v.gemm(nk, Dp, R, dS, 1, BK, Qs, Dp, dk, Dp, 0);                                       /* dK += dSᵀ·(scale·q) */
            j->v.gemm(R, Dp, nk, dS, BK, 1, j->st.kr + ((int64_t)j0 * KVH + kvh) * Dp, ldr, dQ, Dp, 0); /* dQ += dS·k */
        }

        for (int i = i0; i < i1; i++)
            for (int g = 0; g < G; g++)
                add_row(a->dq, a->dq_dtype, ((int64_t)i * H + kvh * G + g) * D, dQ + (size_t)((i - i0) * G + g) * Dp, scale,
                        D, tmp);
    }

    for (int jj = 0; jj < len; jj++) {
        const int64_t off = ((int64_t)(s0 + jj) * KVH + kvh) * D;
        add_row(a->dk, a->dk_dtype, off, dK + (size_t)jj * Dp, 1, D, tmp);
        add_row(a->dv, a->dv_dtype, off, dV + (size_t)jj * Dp, 1, D, tmp);
    }
}

SERL_API int32_t serl_attention_bwd(void *ctxp, const serl_attention_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_attention_bwd_args);
    int32_t st = serl_check_attention_bwd(ctx, a);
    if (st) return st;
    int max_len = 0; /* the longest sequence (set by the check; the initialiser keeps -Wmaybe-uninitialized quiet) */
    if ((st = serl_check_seqlens(ctx, "attention_bwd", a->cu_seqlens, a->n_seqs, a->n_tokens, a->max_len, &max_len)))
        return st;
    if (a->n_tokens == 0) return SERL_OK;

    const int G = a->n_heads / a->n_kv_heads, Dp = pad16(a->head_dim), bq = query_block(G);
    bwd_job j = {.a = a, .v = pick_simd(ctx), .G = G, .Dp = Dp, .bq = bq, .rmax = bq * G, .max_len = max_len};
    if ((st = stage(ctx, "attention_bwd", a->k, a->k_dtype, a->v, a->v_dtype, a->n_tokens, a->n_kv_heads, a->head_dim, 1, 1,
                    1, 0, &j.st)))
        return st;
    size_t per = sizeof(float) * bwd_scratch_floats(j.rmax, Dp, max_len);
    per = (per + 63) & ~(size_t)63;
    int64_t max_tasks = (int64_t)a->n_seqs * a->n_kv_heads;
    for (int w = 0; w < ctx->threads; w++) {
        size_t bytes = per + (w == 0 ? sizeof(att_task) * (size_t)max_tasks : 0);
        j.scratch[w] = serl_scratch(ctx, w, bytes);
        if (!j.scratch[w]) return serl_fail(ctx, SERL_E_NOMEM, "attention_bwd: out of memory for scratch");
    }
    /* one task per non-empty (seq, kv head), longest first: the cost grows as len² */
    att_task *tasks = (att_task *)((char *)j.scratch[0] + per);
    int64_t n = 0;
    for (int s = 0; s < a->n_seqs; s++) {
        int64_t len = a->cu_seqlens[s + 1] - a->cu_seqlens[s];
        if (len == 0) continue;
        for (int kvh = 0; kvh < a->n_kv_heads; kvh++) tasks[n++] = (att_task){s, 0, 0, kvh, len * len};
    }
    qsort(tasks, (size_t)n, sizeof *tasks, task_cmp);
    j.tasks = tasks;
    serl_parallel(ctx, n, bwd_task, &j);
    return SERL_OK;
}
