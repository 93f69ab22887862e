/* Argument checks of every op both libraries implement, one copy so that CPU and CUDA accept the same
 * arguments and report the same errors. Only what needs no tensor contents is here: a check that reads
 * an index array (ids, slots, targets, cu_seqlens) runs where the library can read it (the CUDA library
 * copies it back first). Include after the library's context header (SERL_CTX, serl_fail). */
#ifndef SERL_CHECK_H
#define SERL_CHECK_H

#include <math.h>

#include "common.h"

/* A check's "valid, and there is nothing to do" (an empty tensor): the op returns SERL_OK at once. */
#define SERL_DONE 1

/* Runs a check from an op: returns its error, or SERL_OK when it found nothing to do. */
#define SERL_CHECK(call)                                                                                \
    do {                                                                                                \
        int32_t st_ = (call);                                                                           \
        if (st_ != SERL_OK) return st_ == SERL_DONE ? SERL_OK : st_;                                    \
    } while (0)

static inline int32_t serl_check_memset(SERL_CTX *ctx, const serl_memset_args *a) {
    SERL_REQUIRE(a->bytes >= 0, "serl_memset: negative size %lld", (long long)a->bytes);
    if (a->bytes == 0) return SERL_DONE;
    SERL_REQUIRE(a->dst, "serl_memset: NULL pointer");
    return SERL_OK;
}

static inline int32_t serl_check_copy(SERL_CTX *ctx, const serl_copy_args *a) {
    SERL_REQUIRE(a->kind >= SERL_COPY_H2D && a->kind <= SERL_COPY_D2D, "serl_copy: unknown kind %d", a->kind);
    SERL_REQUIRE(a->bytes >= 0, "serl_copy: negative size %lld", (long long)a->bytes);
    if (a->bytes == 0) return SERL_DONE;
    SERL_REQUIRE(a->dst && a->src, "serl_copy: NULL pointer");
    return SERL_OK;
}

/* Whether n elements of dtype at at a and n of bt at b share memory. */
static inline int serl_overlap(const void *a, int32_t at, const void *b, int32_t bt, int64_t n) {
    const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + (uintptr_t)n * serl_dtype_size(bt) && b0 < a0 + (uintptr_t)n * serl_dtype_size(at);
}

/* Whether they share memory other than as one tensor in place (the same address and dtype). */
static inline int serl_partial_overlap(const void *a, int32_t at, const void *b, int32_t bt, int64_t n) {
    return serl_overlap(a, at, b, bt, n) && !(a == b && at == bt);
}

static inline int32_t serl_check_cast(SERL_CTX *ctx, const serl_cast_args *a) {
    SERL_REQUIRE_DTYPE("cast", "src", a->src_dtype);
    SERL_REQUIRE_DTYPE("cast", "dst", a->dst_dtype);
    SERL_REQUIRE(a->n >= 0, "cast: n = %lld", (long long)a->n);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->src && a->dst, "cast: NULL pointer");
    SERL_REQUIRE(!serl_partial_overlap(a->src, a->src_dtype, a->dst, a->dst_dtype, a->n), "cast: dst overlaps src");
    return SERL_OK;
}

static inline int32_t serl_check_add(SERL_CTX *ctx, const serl_add_args *a) {
    SERL_REQUIRE(a->n >= 0, "add: n = %lld", (long long)a->n);
    SERL_REQUIRE_DTYPE("add", "x", a->x_dtype);
    SERL_REQUIRE_DTYPE("add", "y", a->y_dtype);
    SERL_REQUIRE_DTYPE("add", "out", a->out_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->x && a->y && a->out, "add: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_scale(SERL_CTX *ctx, const serl_scale_args *a) {
    SERL_REQUIRE(a->n >= 0, "scale: n = %lld", (long long)a->n);
    SERL_REQUIRE_DTYPE("scale", "x", a->x_dtype);
    SERL_REQUIRE_DTYPE("scale", "out", a->out_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->x && a->out, "scale: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_swiglu_fwd(SERL_CTX *ctx, const serl_swiglu_fwd_args *a) {
    SERL_REQUIRE(a->n >= 0, "swiglu_fwd: n = %lld", (long long)a->n);
    SERL_REQUIRE_DTYPE("swiglu_fwd", "gate", a->gate_dtype);
    SERL_REQUIRE_DTYPE("swiglu_fwd", "up", a->up_dtype);
    SERL_REQUIRE_DTYPE("swiglu_fwd", "out", a->out_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->gate && a->up && a->out, "swiglu_fwd: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_swiglu_bwd(SERL_CTX *ctx, const serl_swiglu_bwd_args *a) {
    SERL_REQUIRE(a->n >= 0, "swiglu_bwd: n = %lld", (long long)a->n);
    SERL_REQUIRE_DTYPE("swiglu_bwd", "gate", a->gate_dtype);
    SERL_REQUIRE_DTYPE("swiglu_bwd", "up", a->up_dtype);
    SERL_REQUIRE_DTYPE("swiglu_bwd", "dout", a->dout_dtype);
    SERL_REQUIRE_DTYPE("swiglu_bwd", "dgate", a->dgate_dtype);
    SERL_REQUIRE_DTYPE("swiglu_bwd", "dup", a->dup_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->gate && a->up && a->dout && a->dgate && a->dup, "swiglu_bwd: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_bias_add(SERL_CTX *ctx, const serl_bias_add_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->dim >= 0, "bias_add: n = %d, dim = %d", a->n, a->dim);
    SERL_REQUIRE_DTYPE("bias_add", "bias", a->bias_dtype);
    SERL_REQUIRE_DTYPE("bias_add", "y", a->y_dtype);
    if (a->n == 0 || a->dim == 0) return SERL_DONE;
    SERL_REQUIRE(a->bias && a->y, "bias_add: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_bias_bwd(SERL_CTX *ctx, const serl_bias_bwd_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->dim >= 0, "bias_bwd: n = %d, dim = %d", a->n, a->dim);
    SERL_REQUIRE_DTYPE("bias_bwd", "dy", a->dy_dtype);
    if (a->n == 0 || a->dim == 0) return SERL_DONE;
    SERL_REQUIRE(a->dy && a->dbias, "bias_bwd: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_matmul(SERL_CTX *ctx, const serl_matmul_args *a) {
    SERL_REQUIRE(a->trans_a == 0 || a->trans_a == 1, "matmul: trans_a = %d (want 0 or 1)", a->trans_a);
    SERL_REQUIRE(a->trans_b == 0 || a->trans_b == 1, "matmul: trans_b = %d (want 0 or 1)", a->trans_b);
    SERL_REQUIRE(a->m >= 0 && a->n >= 0 && a->k >= 0, "matmul: negative size m=%d n=%d k=%d", a->m, a->n, a->k);
    SERL_REQUIRE(a->batch >= 1, "matmul: batch = %d (want ≥ 1)", a->batch);
    const int64_t m = a->m, n = a->n, k = a->k;
    /* stored shapes: A is m×k (k×m with trans_a), B is k×n (n×k with trans_b), C is m×n */
    int64_t a_cols = a->trans_a ? m : k, b_cols = a->trans_b ? k : n;
    SERL_REQUIRE(a->lda >= (a_cols > 1 ? a_cols : 1), "matmul: lda = %d is less than the %lld columns of stored A",
                 a->lda, (long long)a_cols);
    SERL_REQUIRE(a->ldb >= (b_cols > 1 ? b_cols : 1), "matmul: ldb = %d is less than the %lld columns of stored B",
                 a->ldb, (long long)b_cols);
    SERL_REQUIRE(a->ldc >= (n > 1 ? n : 1), "matmul: ldc = %d is less than n = %lld", a->ldc, (long long)n);
    SERL_REQUIRE(a->stride_a >= 0 && a->stride_b >= 0 && a->stride_c >= 0,
                 "matmul: negative batch stride (a %lld, b %lld, c %lld)", (long long)a->stride_a,
                 (long long)a->stride_b, (long long)a->stride_c);
    if (m == 0 || n == 0) return SERL_DONE;
    SERL_REQUIRE(a->batch == 1 || a->stride_c >= (m - 1) * (int64_t)a->ldc + n,
                 "matmul: stride_c = %lld makes the batch's C matrices overlap (needs ≥ %lld)",
                 (long long)a->stride_c, (long long)((m - 1) * (int64_t)a->ldc + n));
    SERL_REQUIRE(a->c, "matmul: C is NULL");
    int use_ab = k > 0 && a->alpha != 0.0f;
    SERL_REQUIRE(!use_ab || (a->a && a->b), "matmul: %s is NULL", a->a ? "B" : "A");
    SERL_REQUIRE_DTYPE("matmul", "A", a->a_dtype);
    SERL_REQUIRE_DTYPE("matmul", "B", a->b_dtype);
    SERL_REQUIRE_DTYPE("matmul", "C", a->c_dtype);
    return SERL_OK;
}

static inline int32_t serl_check_embedding_fwd(SERL_CTX *ctx, const serl_embedding_fwd_args *a) {
    SERL_REQUIRE(a->n_tokens >= 0 && a->dim >= 0 && a->vocab >= 0, "embedding_fwd: n_tokens = %d, dim = %d, vocab = %d",
                 a->n_tokens, a->dim, a->vocab);
    if (a->n_tokens == 0 || a->dim == 0) return SERL_DONE;
    SERL_REQUIRE_DTYPE("embedding_fwd", "table", a->table_dtype);
    SERL_REQUIRE_DTYPE("embedding_fwd", "out", a->out_dtype);
    SERL_REQUIRE(a->vocab > 0, "embedding_fwd: empty vocabulary with %d tokens", a->n_tokens);
    SERL_REQUIRE(a->ids && a->table && a->out, "embedding_fwd: NULL tensor (ids %p, table %p, out %p)",
                 (const void *)a->ids, (const void *)a->table, (void *)a->out);
    return SERL_OK;
}

static inline int32_t serl_check_embedding_bwd(SERL_CTX *ctx, const serl_embedding_bwd_args *a) {
    SERL_REQUIRE(a->n_tokens >= 0 && a->dim >= 0 && a->vocab >= 0, "embedding_bwd: n_tokens = %d, dim = %d, vocab = %d",
                 a->n_tokens, a->dim, a->vocab);
    if (a->n_tokens == 0 || a->dim == 0) return SERL_DONE;
    SERL_REQUIRE_DTYPE("embedding_bwd", "dout", a->dout_dtype);
    SERL_REQUIRE(a->vocab > 0, "embedding_bwd: empty vocabulary with %d tokens", a->n_tokens);
    SERL_REQUIRE(a->ids && a->dout && a->dtable, "embedding_bwd: NULL tensor (ids %p, dout %p, dtable %p)",
                 (const void *)a->ids, (const void *)a->dout, (void *)a->dtable);
    return SERL_OK;
}

static inline int32_t serl_check_rmsnorm_fwd(SERL_CTX *ctx, const serl_rmsnorm_fwd_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->dim > 0, "rmsnorm_fwd: n = %d, dim = %d (dim must be positive)", a->n, a->dim);
    SERL_REQUIRE(a->eps >= 0 && isfinite(a->eps), "rmsnorm_fwd: eps = %g", (double)a->eps);
    SERL_REQUIRE_DTYPE("rmsnorm_fwd", "x", a->x_dtype);
    SERL_REQUIRE_DTYPE("rmsnorm_fwd", "y", a->y_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->x && a->w && a->y, "rmsnorm_fwd: NULL tensor (x %p, w %p, y %p)", (const void *)a->x,
                 (const void *)a->w, (void *)a->y);
    if (!a->res) return SERL_OK;
    SERL_REQUIRE_DTYPE("rmsnorm_fwd", "res", a->res_dtype);
    SERL_REQUIRE_DTYPE("rmsnorm_fwd", "sum", a->sum_dtype);
    SERL_REQUIRE(a->sum, "rmsnorm_fwd: res without sum (the residual stream x + res is stored)");
    /* sum may be x or res itself (in place, one dtype); y is read from sum after the row's Σs², so it
     * must not overlap any of them */
    const int64_t n = (int64_t)a->n * a->dim;
    SERL_REQUIRE(!serl_partial_overlap(a->sum, a->sum_dtype, a->x, a->x_dtype, n),
                 "rmsnorm_fwd: sum overlaps x (only sum = x with one dtype is allowed)");
    SERL_REQUIRE(!serl_partial_overlap(a->sum, a->sum_dtype, a->res, a->res_dtype, n),
                 "rmsnorm_fwd: sum overlaps res (only sum = res with one dtype is allowed)");
    SERL_REQUIRE(!serl_overlap(a->y, a->y_dtype, a->x, a->x_dtype, n) && !serl_overlap(a->y, a->y_dtype, a->res, a->res_dtype, n) &&
                     !serl_overlap(a->y, a->y_dtype, a->sum, a->sum_dtype, n),
                 "rmsnorm_fwd: y overlaps x, res or sum (with res, y is separate)");
    return SERL_OK;
}

static inline int32_t serl_check_rmsnorm_bwd(SERL_CTX *ctx, const serl_rmsnorm_bwd_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->dim > 0, "rmsnorm_bwd: n = %d, dim = %d (dim must be positive)", a->n, a->dim);
    SERL_REQUIRE_DTYPE("rmsnorm_bwd", "x", a->x_dtype);
    SERL_REQUIRE_DTYPE("rmsnorm_bwd", "dy", a->dy_dtype);
    SERL_REQUIRE_DTYPE("rmsnorm_bwd", "dx", a->dx_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->x && a->w && a->rstd && a->dy && a->dx && a->dw,
                 "rmsnorm_bwd: NULL tensor (x %p, w %p, rstd %p, dy %p, dx %p, dw %p)", (const void *)a->x,
                 (const void *)a->w, (const void *)a->rstd, (const void *)a->dy, (void *)a->dx, (void *)a->dw);
    return SERL_OK;
}

static inline int32_t serl_check_rope(SERL_CTX *ctx, const serl_rope_args *a) {
    SERL_REQUIRE(a->n_tokens >= 0 && a->n_heads >= 0 && a->head_dim > 0,
                 "rope: n_tokens = %d, n_heads = %d, head_dim = %d", a->n_tokens, a->n_heads, a->head_dim);
    SERL_REQUIRE(a->rot_dim > 0 && a->rot_dim % 2 == 0 && a->rot_dim <= a->head_dim,
                 "rope: rot_dim = %d must be even and in [2, head_dim = %d]", a->rot_dim, a->head_dim);
    SERL_REQUIRE(a->bwd == 0 || a->bwd == 1, "rope: bwd = %d, want 0 or 1", a->bwd);
    SERL_REQUIRE(a->accumulate == 0 || a->accumulate == 1, "rope: accumulate = %d, want 0 or 1", a->accumulate);
    SERL_REQUIRE_DTYPE("rope", "x", a->x_dtype);
    SERL_REQUIRE_DTYPE("rope", "y", a->y_dtype);
    /* y is x itself (in place, not accumulating) or disjoint from it */
    SERL_REQUIRE(!serl_overlap(a->x, a->x_dtype, a->y, a->y_dtype, (int64_t)a->n_tokens * a->n_heads * a->head_dim) ||
                     (a->x == a->y && !a->accumulate && a->x_dtype == a->y_dtype),
                 "rope: y overlaps x (%s)", a->accumulate ? "accumulate = 1 needs a separate y" : "partial overlap");
    return SERL_OK;
}

/* rope_append: the checks of the bias adds, rope and kv_append it stands for (those needing pos and
 * slots' contents run where the op runs). */
static inline int32_t serl_check_rope_append(SERL_CTX *ctx, const serl_rope_append_args *a) {
    SERL_REQUIRE(a->n_tokens >= 0 && a->n_heads >= 1 && a->n_kv_heads >= 1 && a->head_dim >= 1,
                 "rope_append: n_tokens = %d, n_heads = %d, n_kv_heads = %d, head_dim = %d", a->n_tokens, a->n_heads,
                 a->n_kv_heads, a->head_dim);
    SERL_REQUIRE(a->rot_dim > 0 && a->rot_dim % 2 == 0 && a->rot_dim <= a->head_dim,
                 "rope_append: rot_dim = %d must be even and in [2, head_dim = %d]", a->rot_dim, a->head_dim);
    SERL_REQUIRE(a->block_size >= 1 && a->n_blocks >= 1, "rope_append: block_size = %d, n_blocks = %d", a->block_size,
                 a->n_blocks);
    SERL_REQUIRE(((int64_t)a->n_heads + a->n_kv_heads) * a->head_dim <= INT32_MAX,
                 "rope_append: (n_heads + n_kv_heads) · head_dim = %lld per token (at most %d)",
                 ((long long)a->n_heads + a->n_kv_heads) * a->head_dim, INT32_MAX);
    SERL_REQUIRE_DTYPE("rope_append", "q", a->q_dtype);
    SERL_REQUIRE_DTYPE("rope_append", "k/v", a->kv_dtype);
    SERL_REQUIRE_DTYPE("rope_append", "cache", a->cache_dtype);
    SERL_REQUIRE(!a->bq == !a->bk && !a->bk == !a->bv, "rope_append: bq, bk and bv must be given together (bq %p, bk %p, bv %p)",
                 a->bq, a->bk, a->bv);
    if (a->bq) SERL_REQUIRE_DTYPE("rope_append", "bias", a->bias_dtype);
    if (a->n_tokens == 0) return SERL_DONE;
    SERL_REQUIRE(a->pos && a->inv_freq && a->slots && a->q && a->k && a->v && a->k_cache && a->v_cache,
                 "rope_append: NULL tensor");
    return SERL_OK;
}

/* attention_fwd/bwd: the shape (T tokens in S sequences, H query and KVH key/value heads of D). */
static inline int32_t serl_check_attention_shape(SERL_CTX *ctx, const char *op, int T, int S, int H, int KVH, int D,
                                                 const int32_t *cu) {
    SERL_REQUIRE(T >= 0 && S >= 0, "%s: n_tokens = %d, n_seqs = %d", op, T, S);
    SERL_REQUIRE(H >= 1 && KVH >= 1 && D >= 1, "%s: n_heads = %d, n_kv_heads = %d, head_dim = %d", op, H, KVH, D);
    SERL_REQUIRE(H % KVH == 0, "%s: n_heads = %d is not a multiple of n_kv_heads = %d", op, H, KVH);
    SERL_REQUIRE(cu, "%s: cu_seqlens is NULL", op);
    return SERL_OK;
}

/* attention_fwd/bwd: max_len, the caller's bound on every sequence's length (it sizes a GPU's launch): at
 * least 1 when there are tokens (and never negative); a bound larger than needed is allowed. */
static inline int32_t serl_check_attention_max_len(SERL_CTX *ctx, const char *op, int max_len, int n_tokens) {
    SERL_REQUIRE(max_len >= 0 && (max_len >= 1 || n_tokens == 0), "%s: max_len = %d with n_tokens = %d (want ≥ 1, the longest sequence's length)",
                 op, max_len, n_tokens);
    return SERL_OK;
}

/* attention_fwd/bwd: cu_seqlens (host memory, n_seqs + 1 entries) runs from 0 to n_tokens without
 * decreasing, and no sequence is longer than max_len; *longest = the longest sequence. The CUDA library
 * checks the same on the device, with the same messages (csrc/cuda/attention.cu, context.cu). */
static inline int32_t serl_check_seqlens(SERL_CTX *ctx, const char *op, const int32_t *cu, int n_seqs, int n_tokens,
                                         int max_len, int *longest) {
    SERL_REQUIRE(cu[0] == 0, "%s: cu_seqlens[0] = %d, want 0", op, cu[0]);
    SERL_REQUIRE(cu[n_seqs] == n_tokens, "%s: cu_seqlens[%d] = %d, want n_tokens = %d", op, n_seqs, cu[n_seqs], n_tokens);
    int mx = 0;
    for (int s = 0; s < n_seqs; s++) {
        SERL_REQUIRE(cu[s + 1] >= cu[s], "%s: cu_seqlens decreases at %d (%d > %d)", op, s, cu[s], cu[s + 1]);
        SERL_REQUIRE(cu[s + 1] - cu[s] <= max_len, "%s: sequence %d has %d tokens, more than max_len = %d", op, s,
                     cu[s + 1] - cu[s], max_len);
        if (cu[s + 1] - cu[s] > mx) mx = cu[s + 1] - cu[s];
    }
    *longest = mx;
    return SERL_OK;
}

/* attention_fwd/bwd with n_tokens > 0: the tensors. */
static inline int32_t serl_check_attention_fwd_tensors(SERL_CTX *ctx, const serl_attention_fwd_args *a) {
    SERL_REQUIRE(a->q && a->k && a->v && a->out, "attention_fwd: NULL q, k, v or out");
    SERL_REQUIRE_DTYPE("attention_fwd", "q", a->q_dtype);
    SERL_REQUIRE_DTYPE("attention_fwd", "k", a->k_dtype);
    SERL_REQUIRE_DTYPE("attention_fwd", "v", a->v_dtype);
    SERL_REQUIRE_DTYPE("attention_fwd", "out", a->out_dtype);
    return SERL_OK;
}

static inline int32_t serl_check_attention_bwd_tensors(SERL_CTX *ctx, const serl_attention_bwd_args *a) {
    SERL_REQUIRE(a->q && a->k && a->v && a->out && a->lse && a->dout && a->dq && a->dk && a->dv,
                 "attention_bwd: NULL tensor (q, k, v, out, lse, dout, dq, dk and dv are all required)");
    SERL_REQUIRE_DTYPE("attention_bwd", "q", a->q_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "k", a->k_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "v", a->v_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "out", a->out_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "dout", a->dout_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "dq", a->dq_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "dk", a->dk_dtype);
    SERL_REQUIRE_DTYPE("attention_bwd", "dv", a->dv_dtype);
    return SERL_OK;
}

/* attention_fwd/bwd: every check that needs no tensor contents (what a graph capture runs); cu_seqlens
 * itself is checked by the op (serl_check_seqlens on the CPU, on the device on a GPU), also when
 * n_tokens = 0. */
static inline int32_t serl_check_attention_fwd(SERL_CTX *ctx, const serl_attention_fwd_args *a) {
    int32_t st = serl_check_attention_shape(ctx, "attention_fwd", a->n_tokens, a->n_seqs, a->n_heads, a->n_kv_heads,
                                            a->head_dim, a->cu_seqlens);
    if (!st) st = serl_check_attention_max_len(ctx, "attention_fwd", a->max_len, a->n_tokens);
    if (!st && a->n_tokens > 0) st = serl_check_attention_fwd_tensors(ctx, a);
    return st;
}

static inline int32_t serl_check_attention_bwd(SERL_CTX *ctx, const serl_attention_bwd_args *a) {
    int32_t st = serl_check_attention_shape(ctx, "attention_bwd", a->n_tokens, a->n_seqs, a->n_heads, a->n_kv_heads,
                                            a->head_dim, a->cu_seqlens);
    if (!st) st = serl_check_attention_max_len(ctx, "attention_bwd", a->max_len, a->n_tokens);
    if (!st && a->n_tokens > 0) st = serl_check_attention_bwd_tensors(ctx, a);
    return st;
}

static inline int32_t serl_check_kv_append(SERL_CTX *ctx, const serl_kv_append_args *a) {
    SERL_REQUIRE(a->n_tokens >= 0, "kv_append: n_tokens = %d", a->n_tokens);
    SERL_REQUIRE(a->n_kv_heads >= 1 && a->head_dim >= 1 && a->block_size >= 1 && a->n_blocks >= 0,
                 "kv_append: n_kv_heads = %d, head_dim = %d, block_size = %d, n_blocks = %d", a->n_kv_heads,
                 a->head_dim, a->block_size, a->n_blocks);
    SERL_REQUIRE_DTYPE("kv_append", "k/v", a->kv_dtype);
    SERL_REQUIRE_DTYPE("kv_append", "cache", a->cache_dtype);
    if (a->n_tokens == 0) return SERL_DONE;
    SERL_REQUIRE(a->slots && a->k && a->v && a->k_cache && a->v_cache, "kv_append: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_decode_attention(SERL_CTX *ctx, const serl_decode_attention_args *a) {
    SERL_REQUIRE(a->n_seqs >= 0, "decode_attention: n_seqs = %d", a->n_seqs);
    SERL_REQUIRE(a->n_heads >= 1 && a->n_kv_heads >= 1 && a->head_dim >= 1,
                 "decode_attention: n_heads = %d, n_kv_heads = %d, head_dim = %d", a->n_heads, a->n_kv_heads,
                 a->head_dim);
    SERL_REQUIRE(a->n_heads % a->n_kv_heads == 0, "decode_attention: n_heads = %d is not a multiple of n_kv_heads = %d",
                 a->n_heads, a->n_kv_heads);
    SERL_REQUIRE(a->block_size >= 1 && a->n_blocks >= 0 && a->max_blocks >= 1,
                 "decode_attention: block_size = %d, n_blocks = %d, max_blocks = %d", a->block_size, a->n_blocks,
                 a->max_blocks);
    SERL_REQUIRE_DTYPE("decode_attention", "q", a->q_dtype);
    SERL_REQUIRE_DTYPE("decode_attention", "cache", a->cache_dtype);
    SERL_REQUIRE_DTYPE("decode_attention", "out", a->out_dtype);
    if (a->n_seqs == 0) return SERL_DONE;
    SERL_REQUIRE(a->block_table && a->seq_lens && a->q && a->k_cache && a->v_cache && a->out,
                 "decode_attention: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_logprob_fwd(SERL_CTX *ctx, const serl_logprob_fwd_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->vocab >= 1 && a->ld >= a->vocab, "logprob_fwd: n = %d, vocab = %d, ld = %d (want n ≥ 0, vocab ≥ 1, ld ≥ vocab)",
                 a->n, a->vocab, a->ld);
    SERL_REQUIRE(a->inv_temp > 0 && isfinite(a->inv_temp), "logprob_fwd: inv_temp = %g (want finite > 0)", (double)a->inv_temp);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->logits && a->targets, "logprob_fwd: NULL logits or targets");
    SERL_REQUIRE(a->logp || a->entropy || a->lse, "logprob_fwd: no output (logp, entropy and lse all NULL)");
    SERL_REQUIRE_DTYPE("logprob_fwd", "logits", a->logits_dtype);
    return SERL_OK;
}

static inline int32_t serl_check_logprob_bwd(SERL_CTX *ctx, const serl_logprob_bwd_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->vocab >= 1 && a->ld >= a->vocab, "logprob_bwd: n = %d, vocab = %d, ld = %d (want n ≥ 0, vocab ≥ 1, ld ≥ vocab)",
                 a->n, a->vocab, a->ld);
    SERL_REQUIRE(a->inv_temp > 0 && isfinite(a->inv_temp), "logprob_bwd: inv_temp = %g (want finite > 0)", (double)a->inv_temp);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->logits && a->targets && a->lse && a->coef && a->dlogits, "logprob_bwd: NULL tensor");
    SERL_REQUIRE_DTYPE("logprob_bwd", "logits", a->logits_dtype);
    SERL_REQUIRE_DTYPE("logprob_bwd", "dlogits", a->dlogits_dtype);
    SERL_REQUIRE(a->logits != a->dlogits || a->logits_dtype == a->dlogits_dtype,
                 "logprob_bwd: dlogits aliases logits with another dtype");
    return SERL_OK;
}

static inline int32_t serl_check_sample(SERL_CTX *ctx, const serl_sample_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->vocab >= 1 && a->ld >= a->vocab,
                 "sample: n = %d, vocab = %d, ld = %d (want n ≥ 0, vocab ≥ 1, ld ≥ vocab)", a->n, a->vocab, a->ld);
    SERL_REQUIRE(a->n_ban >= 0 && a->ld_hist >= 0, "sample: n_ban = %d, ld_hist = %d", a->n_ban, a->ld_hist);
    SERL_REQUIRE_DTYPE("sample", "logits", a->logits_dtype);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->logits && a->temperature && a->top_k && a->top_p && a->presence_penalty && a->seeds &&
                     a->seq_ids && a->steps && a->tokens,
                 "sample: NULL tensor");
    SERL_REQUIRE((a->hist == NULL) == (a->hist_len == NULL), "sample: hist and hist_len must both be given or both NULL");
    SERL_REQUIRE(a->n_ban == 0 || a->ban_ids, "sample: n_ban = %d with NULL ban_ids", a->n_ban);
    return SERL_OK;
}

static inline int32_t serl_check_adamw(SERL_CTX *ctx, const serl_adamw_args *a) {
    SERL_REQUIRE(a->n >= 0, "adamw: n = %lld", (long long)a->n);
    SERL_REQUIRE(a->step >= 1, "adamw: step = %d (want ≥ 1)", a->step);
    SERL_REQUIRE(a->beta1 >= 0 && a->beta1 < 1 && a->beta2 >= 0 && a->beta2 < 1,
                 "adamw: beta1 = %g, beta2 = %g (want [0, 1))", (double)a->beta1, (double)a->beta2);
    SERL_REQUIRE(isfinite(a->lr) && a->lr >= 0 && isfinite(a->weight_decay) && a->weight_decay >= 0 && a->eps >= 0 &&
                     isfinite(a->grad_scale),
                 "adamw: lr = %g, weight_decay = %g, eps = %g, grad_scale = %g", (double)a->lr,
                 (double)a->weight_decay, (double)a->eps, (double)a->grad_scale);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->p && a->g && a->m && a->v, "adamw: NULL tensor");
    SERL_REQUIRE(!(a->max_norm < 0) && isfinite(a->max_norm), "adamw: max_norm = %g (want ≥ 0; 0 disables clipping)",
                 (double)a->max_norm);
    return SERL_OK;
}

static inline int32_t serl_check_grad_norm(SERL_CTX *ctx, const serl_grad_norm_args *a) {
    SERL_REQUIRE(a->n >= 0, "grad_norm: n = %lld", (long long)a->n);
    SERL_REQUIRE(a->out, "grad_norm: NULL out");
    SERL_REQUIRE(a->n == 0 || a->g, "grad_norm: NULL g");
    SERL_REQUIRE(!(a->max_norm < 0) && !isnan(a->max_norm), "grad_norm: max_norm = %g (want ≥ 0; 0 disables clipping)",
                 (double)a->max_norm);
    return SERL_OK;
}

static inline int32_t serl_check_whiten(SERL_CTX *ctx, const serl_whiten_args *a) {
    SERL_REQUIRE(a->mode >= SERL_WHITEN_FULL && a->mode <= SERL_WHITEN_APPLY,
                 "whiten: mode = %d (want 0 full, 1 stats, 2 apply)", a->mode);
    SERL_REQUIRE(a->n >= 1, "whiten: n = %lld (want ≥ 1)", (long long)a->n);
    SERL_REQUIRE(a->x && a->mask && a->stats && (a->y || a->mode == SERL_WHITEN_STATS), "whiten: NULL tensor");
    SERL_REQUIRE(a->eps >= 0, "whiten: eps = %g (want ≥ 0)", (double)a->eps);
    return SERL_OK;
}

static inline int32_t serl_check_group_baseline(SERL_CTX *ctx, const serl_group_baseline_args *a) {
    SERL_REQUIRE(a->mode == SERL_GROUP_ZSCORE || a->mode == SERL_GROUP_RLOO || a->mode == SERL_GROUP_CENTER,
                 "group_baseline: mode = %d (want 0 z-score, 1 RLOO, 2 center)", a->mode);
    SERL_REQUIRE(a->n_groups >= 0 && a->group_size >= 1, "group_baseline: n_groups = %d, group_size = %d",
                 a->n_groups, a->group_size);
    SERL_REQUIRE(a->mode == SERL_GROUP_CENTER || a->group_size >= 2,
                 "group_baseline: group_size = %d; z-score and RLOO need ≥ 2", a->group_size);
    SERL_REQUIRE(a->eps >= 0, "group_baseline: eps = %g (want ≥ 0)", (double)a->eps);
    if (a->n_groups == 0) return SERL_DONE;
    SERL_REQUIRE(a->r && a->y, "group_baseline: NULL tensor");
    return SERL_OK;
}


/* ---- RL step ops: shapes only (the CPU library also checks the index arrays, see rl.c) */

static inline int32_t serl_check_gather_actions(SERL_CTX *ctx, const serl_gather_actions_args *a) {
    SERL_REQUIRE(a->n_seqs >= 0 && a->n_tokens >= 0 && a->n_actions >= 0,
                 "gather_actions: n_seqs = %d, n_tokens = %d, n_actions = %d", a->n_seqs, a->n_tokens, a->n_actions);
    if (a->n_seqs == 0) return SERL_DONE;
    SERL_REQUIRE(a->pos && a->act_cu && a->src && a->dst, "gather_actions: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_kl_returns(SERL_CTX *ctx, const serl_kl_returns_args *a) {
    SERL_REQUIRE(a->n_seqs >= 0 && a->n_actions >= 0, "kl_returns: n_seqs = %d, n_actions = %d", a->n_seqs,
                 a->n_actions);
    SERL_REQUIRE(a->beta >= 0 && a->beta <= 3.4e38f, "kl_returns: beta = %g (want a finite value ≥ 0)", (double)a->beta);
    if (a->n_seqs == 0) return SERL_DONE;
    SERL_REQUIRE(a->act_cu && a->logp_old && a->logp_ref && a->reward && a->ret && a->kl, "kl_returns: NULL tensor");
    return SERL_OK;
}

static inline int32_t serl_check_ppo_coef(SERL_CTX *ctx, const serl_ppo_coef_args *a) {
    SERL_REQUIRE(a->n_seqs >= 0 && a->n_tokens >= 0 && a->n_actions >= 0,
                 "ppo_coef: n_seqs = %d, n_tokens = %d, n_actions = %d", a->n_seqs, a->n_tokens, a->n_actions);
    SERL_REQUIRE(a->step_seqs >= a->n_seqs && a->step_seqs >= 1, "ppo_coef: step_seqs = %d for %d sequences (want ≥ both and ≥ 1)",
                 a->step_seqs, a->n_seqs);
    SERL_REQUIRE(a->clip_eps > 0 && a->clip_eps < 1, "ppo_coef: clip_eps = %g (want 0 < ε < 1)", (double)a->clip_eps);
    SERL_REQUIRE(a->kl_coef >= 0 && a->kl_coef <= 3.4e38f, "ppo_coef: kl_coef = %g (want a finite value ≥ 0)",
                 (double)a->kl_coef);
    SERL_REQUIRE(a->tok_lo >= 0 && a->tok_lo <= a->tok_hi && a->tok_hi <= a->n_tokens,
                 "ppo_coef: tokens [%d, %d) outside [0, %d)", a->tok_lo, a->tok_hi, a->n_tokens);
    if (a->tok_lo == a->tok_hi && !a->sums) return SERL_DONE;
    SERL_REQUIRE((a->tok_lo == a->tok_hi || a->coef) &&
                     (a->n_seqs == 0 || (a->pos && a->act_cu && a->logp && a->logp_old && a->logp_ref && a->adv)),
                 "ppo_coef: NULL tensor");
    return SERL_OK;
}

/* ---------------------------------------------------------------- decode step state */

static inline int32_t serl_check_decode_advance(SERL_CTX *ctx, const serl_decode_advance_args *a) {
    SERL_REQUIRE(a->n >= 0 && a->block_size >= 1 && a->max_blocks >= 1 && a->ld_hist >= 0 && a->max_patch >= 0,
                 "decode_advance: n = %d, block_size = %d, max_blocks = %d, ld_hist = %d, max_patch = %d", a->n,
                 a->block_size, a->max_blocks, a->ld_hist, a->max_patch);
    if (a->n == 0) return SERL_DONE;
    SERL_REQUIRE(a->tokens && a->table && a->ids && a->pos && a->seq_lens && a->slots && a->steps,
                 "decode_advance: NULL tensor");
    SERL_REQUIRE(a->max_patch == 0 || a->patch, "decode_advance: NULL patch with max_patch = %d", a->max_patch);
    SERL_REQUIRE(!a->hist || a->ld_hist >= 1, "decode_advance: hist with ld_hist = %d", a->ld_hist);
    SERL_REQUIRE(!a->ban_rows || a->min_new, "decode_advance: ban_rows without min_new");
    return SERL_OK;
}

#endif
