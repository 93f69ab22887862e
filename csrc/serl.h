/*
 * serl.h — the one C ABI that every serl native library (CPU, CUDA) exports.
 *
 * Rules (see docs/ARCHITECTURE.md, "The native ABI"):
 *  - Every op is `int32_t serl_<op>(void *ctx, const serl_<op>_args *a)`: two pointers in, a status out.
 *    Floats, long argument lists and structs by value never cross the boundary, because purego cannot
 *    pass them reliably.
 *  - Every args struct starts with `uint32_t size` = sizeof(struct). A Go/C layout mismatch is caught on
 *    the first call (SERL_E_ABI). serl_layout() reports every field's offset and size so that the Go
 *    mirrors are tested field by field.
 *  - All tensors are row-major and contiguous unless a leading dimension is given. Pointers are device
 *    pointers from serl_alloc. The library never keeps a pointer after returning, never prints, never
 *    exits, never installs a signal handler.
 *  - Gradient outputs ACCUMULATE (+=) unless the op says otherwise, as in llm.c: the caller zeroes them.
 *  - Dtypes: a tensor that may be bf16 has an int32 `<name>_dtype` field beside it (SERL_DTYPE_F32 = 0,
 *    so a zeroed field means float32 and float32 callers need set nothing). Compute and accumulation are
 *    float32 (or wider) whatever the storage; a bf16 result is rounded to nearest even once, when stored.
 *    Weights' gradients, norm statistics (rstd), log-sum-exp and everything of the optimizer stay F32.
 *    An unsupported dtype or combination is SERL_E_UNSUPPORTED.
 *  - Constants are generated for Go from this file (tools/genlayout -consts): dtypes, statuses, copy
 *    kinds, group modes, whiten modes and SIMD levels keep one numbering on both sides.
 *  - On failure an op returns a negative status and serl_last_error(ctx) says why.
 */
#ifndef SERL_H
#define SERL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SERL_ABI_VERSION 5

#if defined(_WIN32)
#define SERL_API __declspec(dllexport)
#else
#define SERL_API __attribute__((visibility("default")))
#endif

/* statuses */
#define SERL_OK 0
#define SERL_E_ARG (-1)      /* invalid argument: shape, null pointer, out-of-range index */
#define SERL_E_ABI (-2)      /* args struct size mismatch */
#define SERL_E_NOMEM (-3)    /* allocation failed */
#define SERL_E_DEVICE (-4)   /* device/driver failure */
#define SERL_E_UNSUPPORTED (-5)
#define SERL_E_STATE (-6)    /* not allowed in the context's state (e.g. while capturing a graph) */

/* dtypes (values are part of the ABI) */
#define SERL_DTYPE_F32 0
#define SERL_DTYPE_I32 1
#define SERL_DTYPE_U64 2
#define SERL_DTYPE_BF16 3
#define SERL_DTYPE_F16 4

/* CPU vector ISA in use (serl_device_info_args.simd) */
#define SERL_SIMD_AVX2 2
#define SERL_SIMD_AVX512 3
#define SERL_SIMD_AVX512BF16 4

/* ---------------------------------------------------------------- context, memory, introspection */

SERL_API int32_t serl_abi_version(void);

/* Backend name, "cpu" or "cuda". */
SERL_API const char *serl_backend(void);

/* Creates a context; threads <= 0 means SERL_THREADS or the number of CPUs. Returns NULL on failure,
 * among them a CPU without AVX2 and FMA (the CPU library has no scalar path) or an unknown SERL_SIMD. */
SERL_API void *serl_context_create(int32_t threads);
SERL_API void serl_context_destroy(void *ctx);

/* The message of the last failed call on ctx (empty string if none). Valid until the next call.
 * serl_last_error(NULL) says why the last serl_context_create returned NULL. */
SERL_API const char *serl_last_error(void *ctx);

typedef struct {
    uint32_t size;
    int32_t threads;        /* out: worker threads (CPU) */
    int64_t total_memory;   /* out: bytes of device memory (CPU: physical RAM) */
    int64_t free_memory;    /* out: bytes available now */
    int32_t simd;           /* out: CPU vector ISA in use: SERL_SIMD_* (0 on GPUs) */
    int32_t simd_cpu;       /* out: the best one the CPU has, which simd may pass over (0 on GPUs) */
    char name[128];         /* out: device name, NUL-terminated */
} serl_device_info_args;
SERL_API int32_t serl_device_info(void *ctx, serl_device_info_args *a);

/* Device memory, 64-byte aligned, committed when allocated (the CPU library faults in a tensor of 2 MiB
 * or more before returning it, as cudaMalloc commits GPU memory). NULL on failure (then serl_last_error
 * says why). */
SERL_API void *serl_alloc(void *ctx, int64_t bytes);
SERL_API void serl_free(void *ctx, void *p);

#define SERL_COPY_H2D 0
#define SERL_COPY_D2H 1
#define SERL_COPY_D2D 2
typedef struct {
    uint32_t size;
    int32_t kind;   /* SERL_COPY_* */
    int64_t bytes;
    void *dst;
    const void *src;
} serl_copy_args;
SERL_API int32_t serl_copy(void *ctx, const serl_copy_args *a);

typedef struct {
    uint32_t size;
    int32_t value;  /* byte value */
    int64_t bytes;
    void *dst;
} serl_memset_args;
SERL_API int32_t serl_memset(void *ctx, const serl_memset_args *a);

/* Waits for all queued work on ctx (a no-op on CPU, where every op is synchronous). */
SERL_API int32_t serl_sync(void *ctx);

/* Field layout of every args struct, for the Go mirror test. */
typedef struct {
    const char *type;   /* e.g. "serl_matmul_args" */
    const char *field;  /* e.g. "trans_a" */
    int32_t offset;
    int32_t size;
} serl_field;
SERL_API const serl_field *serl_layout(int32_t *count);

/* ---------------------------------------------------------------- matrix products */

/* C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b], b = 0..batch-1, row-major.
 * op(A) is m×k, op(B) is k×n, C is m×n. trans_a: A is stored k×m. trans_b: B is stored n×k.
 * lda/ldb/ldc are row strides (elements); stride_* are batch strides (elements; 0 broadcasts).
 * beta == 0 means C is not read (it may hold NaN).
 * A, B and C are each F32 or BF16, in any combination; products and sums are float32 (a bf16 × bf16
 * product is exact in float32), so a weight gradient accumulates into an F32 C with beta = 1. A bf16 C is
 * rounded once, after the whole depth. (The CPU's AVX-512 BF16 kernel, like vdpbf16ps, flushes subnormal
 * values to zero in bf16 × bf16 products.) */
typedef struct {
    uint32_t size;
    int32_t trans_a, trans_b;
    int32_t m, n, k;
    int32_t lda, ldb, ldc;
    int32_t batch;
    float alpha, beta;
    int32_t a_dtype, b_dtype, c_dtype;
    int32_t reserved;
    int64_t stride_a, stride_b, stride_c;
    const void *a;
    const void *b;
    void *c;
} serl_matmul_args;
SERL_API int32_t serl_matmul(void *ctx, const serl_matmul_args *a);

/* ---------------------------------------------------------------- embedding */

/* out[t,:] = table[ids[t],:]; ids outside [0,vocab) → SERL_E_ARG. table and out: F32 or BF16. */
typedef struct {
    uint32_t size;
    int32_t n_tokens, dim, vocab;
    int32_t table_dtype, out_dtype;
    const int32_t *ids;     /* [n_tokens] */
    const void *table;      /* [vocab, dim] */
    void *out;              /* [n_tokens, dim] */
} serl_embedding_fwd_args;
SERL_API int32_t serl_embedding_fwd(void *ctx, const serl_embedding_fwd_args *a);

/* dtable[ids[t],:] += dout[t,:] (scatter-add; repeated ids accumulate). dout F32 or BF16; dtable F32. */
typedef struct {
    uint32_t size;
    int32_t n_tokens, dim, vocab;
    int32_t dout_dtype;
    int32_t reserved;
    const int32_t *ids;
    const void *dout;       /* [n_tokens, dim] */
    float *dtable;          /* [vocab, dim] */
} serl_embedding_bwd_args;
SERL_API int32_t serl_embedding_bwd(void *ctx, const serl_embedding_bwd_args *a);

/* ---------------------------------------------------------------- RMSNorm */

/* y[i,:] = x[i,:] · rstd[i] · w, rstd[i] = 1/sqrt(mean(x[i,:]²) + eps). rstd may be NULL (inference).
 * With res (a residual add fused in front, as a decoder layer's x + attn·Woᵀ then its norm): the row
 * normalised is s = x + res, rounded to sum_dtype and stored in sum, and the norm reads the rounded s,
 * so the result has the bits of serl_add (alpha 1) followed by serl_rmsnorm_fwd of its output.
 * x, y, res and sum: F32 or BF16; w and rstd: F32. */
typedef struct {
    uint32_t size;
    int32_t n, dim;
    float eps;
    int32_t x_dtype, y_dtype;
    int32_t res_dtype, sum_dtype; /* with res */
    const void *x;      /* [n, dim] */
    const float *w;     /* [dim] */
    void *y;            /* [n, dim]; may alias x (same dtype) without res, must not overlap x, res or sum with it */
    float *rstd;        /* [n] or NULL */
    const void *res;    /* [n, dim] or NULL */
    void *sum;          /* [n, dim] with res; may alias x or res (same dtype) */
} serl_rmsnorm_fwd_args;
SERL_API int32_t serl_rmsnorm_fwd(void *ctx, const serl_rmsnorm_fwd_args *a);

/* dx += ∂L/∂x, dw += ∂L/∂w, from dy and the saved rstd. x, dy and dx: F32 or BF16; w, rstd, dw: F32. */
typedef struct {
    uint32_t size;
    int32_t n, dim;
    int32_t x_dtype, dy_dtype, dx_dtype;
    const void *x;
    const float *w;
    const float *rstd;
    const void *dy;
    void *dx;
    float *dw;
} serl_rmsnorm_bwd_args;
SERL_API int32_t serl_rmsnorm_bwd(void *ctx, const serl_rmsnorm_bwd_args *a);

/* ---------------------------------------------------------------- rotary embeddings (HF half-split layout) */

/* For each token t, head h, i < half = rot_dim/2, angle = pos[t] · inv_freq[i] (float32, as HF):
 *   y[i]      = x[i]·cos − x[i+half]·sin
 *   y[i+half] = x[i+half]·cos + x[i]·sin
 * dims ≥ rot_dim pass through. x/y are [n_tokens, n_heads, head_dim]; y may alias x.
 * Backward (bwd = 1): y = Rᵀ·x, i.e. the same with −sin; used as dx (+)= rope_bwd(dy) by accumulate = 1.
 * x and y: F32 or BF16 (in place: the same dtype). */
typedef struct {
    uint32_t size;
    int32_t n_tokens, n_heads, head_dim, rot_dim;
    int32_t bwd;            /* 0 forward rotation, 1 transpose (gradient) */
    int32_t accumulate;     /* 1: y += result (y must not alias x) */
    int32_t x_dtype, y_dtype;
    int32_t reserved;
    const int32_t *pos;     /* [n_tokens] */
    const float *inv_freq;  /* [rot_dim/2] */
    const void *x;
    void *y;
} serl_rope_args;
SERL_API int32_t serl_rope(void *ctx, const serl_rope_args *a);

/* ---------------------------------------------------------------- causal attention over packed sequences */

/* Sequences s = 0..n_seqs-1 occupy tokens [cu_seqlens[s], cu_seqlens[s+1]) of the packed batch.
 * q: [T, n_heads, head_dim], k/v: [T, n_kv_heads, head_dim], out: [T, n_heads, head_dim],
 * lse: [T, n_heads] logsumexp of the scaled scores (saved for backward; may be NULL in inference).
 * Head h uses kv head h / (n_heads / n_kv_heads). scale is usually 1/sqrt(head_dim).
 * max_len: at least the longest sequence's length (≥ 1 when n_tokens > 0; larger is allowed), known to
 * the caller that packed the batch. It sizes the launch, so a GPU never reads cu_seqlens back on the host
 * (the op can be captured in a graph); a GPU checks cu_seqlens on the device and reports a violation at
 * the next synchronisation, the CPU at the call.
 * q, k, v and out: F32 or BF16 each; lse F32. */
typedef struct {
    uint32_t size;
    int32_t n_tokens, n_seqs, n_heads, n_kv_heads, head_dim;
    float scale;
    int32_t q_dtype, k_dtype, v_dtype, out_dtype;
    int32_t max_len;        /* ≥ every cu_seqlens[s+1] − cu_seqlens[s] */
    const int32_t *cu_seqlens;  /* [n_seqs+1], cu_seqlens[0] = 0, cu_seqlens[n_seqs] = n_tokens */
    const void *q;
    const void *k;
    const void *v;
    void *out;
    float *lse;
} serl_attention_fwd_args;
SERL_API int32_t serl_attention_fwd(void *ctx, const serl_attention_fwd_args *a);

/* dq, dk, dv += gradients, from dout, the forward's out and lse. Every tensor but lse (F32): F32 or BF16. */
typedef struct {
    uint32_t size;
    int32_t n_tokens, n_seqs, n_heads, n_kv_heads, head_dim;
    float scale;
    int32_t q_dtype, k_dtype, v_dtype, out_dtype, dout_dtype, dq_dtype, dk_dtype, dv_dtype;
    int32_t max_len;        /* as the forward's */
    const int32_t *cu_seqlens;
    const void *q;
    const void *k;
    const void *v;
    const void *out;
    const float *lse;
    const void *dout;
    void *dq;
    void *dk;
    void *dv;
} serl_attention_bwd_args;
SERL_API int32_t serl_attention_bwd(void *ctx, const serl_attention_bwd_args *a);

/* ---------------------------------------------------------------- paged KV cache */

/* A layer's cache is [n_blocks, block_size, n_kv_heads, head_dim] for keys and the same for values.
 * Token t is written at slot slots[t] = block · block_size + offset. slots[t] < 0 skips the token.
 * k and v (kv_dtype) and the cache blocks (cache_dtype): F32 or BF16. */
typedef struct {
    uint32_t size;
    int32_t n_tokens, n_kv_heads, head_dim, block_size, n_blocks;
    int32_t kv_dtype, cache_dtype;
    const int32_t *slots;   /* [n_tokens] */
    const void *k;          /* [n_tokens, n_kv_heads, head_dim] */
    const void *v;
    void *k_cache;
    void *v_cache;
} serl_kv_append_args;
SERL_API int32_t serl_kv_append(void *ctx, const serl_kv_append_args *a);

/* The attention inputs of a generation step (prefill or decode) in one op, with the bits of the ops it
 * replaces in this order: the biases added (serl_bias_add; bq, bk and bv all given or all NULL), q and k
 * rotated in place (serl_rope forward: pos, inv_freq, rot_dim as there), then k and v appended to the
 * cache at slots (serl_kv_append: a negative slot skips the token). q, k and v are updated in place
 * (prefill attends over them). One kernel on a GPU, where the six ops were six launches a layer.
 * q (q_dtype), k and v (kv_dtype), the biases (bias_dtype) and the cache (cache_dtype): F32 or BF16. */
typedef struct {
    uint32_t size;
    int32_t n_tokens, n_heads, n_kv_heads, head_dim, rot_dim, block_size, n_blocks;
    int32_t q_dtype, kv_dtype, bias_dtype, cache_dtype;
    const int32_t *pos;     /* [n_tokens] */
    const float *inv_freq;  /* [rot_dim/2] */
    const int32_t *slots;   /* [n_tokens] */
    void *q;                /* [n_tokens, n_heads, head_dim] */
    void *k;                /* [n_tokens, n_kv_heads, head_dim] */
    void *v;
    const void *bq;         /* [n_heads·head_dim] or NULL */
    const void *bk;         /* [n_kv_heads·head_dim] or NULL */
    const void *bv;
    void *k_cache;          /* [n_blocks, block_size, n_kv_heads, head_dim] */
    void *v_cache;
} serl_rope_append_args;
SERL_API int32_t serl_rope_append(void *ctx, const serl_rope_append_args *a);

/* One query token per sequence against its cached keys/values (the new token's own K/V must already be
 * appended). Sequence s has seq_lens[s] cached tokens, held in blocks block_table[s·max_blocks + j].
 * q, the cache and out: F32 or BF16 each. */
typedef struct {
    uint32_t size;
    int32_t n_seqs, n_heads, n_kv_heads, head_dim, block_size, n_blocks, max_blocks;
    float scale;
    int32_t q_dtype, cache_dtype, out_dtype;
    const int32_t *block_table; /* [n_seqs, max_blocks] */
    const int32_t *seq_lens;    /* [n_seqs] */
    const void *q;              /* [n_seqs, n_heads, head_dim] */
    const void *k_cache;
    const void *v_cache;
    void *out;                  /* [n_seqs, n_heads, head_dim] */
} serl_decode_attention_args;
SERL_API int32_t serl_decode_attention(void *ctx, const serl_decode_attention_args *a);

/* ---------------------------------------------------------------- elementwise */

/* The elementwise ops below take F32 or BF16 for every tensor, each with its own dtype field, except
 * the bias gradient, which is F32. In-place aliasing needs the same dtype. */

/* out = silu(gate) · up, all [n]. */
typedef struct {
    uint32_t size;
    int32_t gate_dtype, up_dtype, out_dtype;
    int64_t n;
    const void *gate;
    const void *up;
    void *out;
} serl_swiglu_fwd_args;
SERL_API int32_t serl_swiglu_fwd(void *ctx, const serl_swiglu_fwd_args *a);

/* dgate = dout · up · silu'(gate), dup = dout · silu(gate): written, not accumulated (since ABI 4), as
 * their only producer is this op; the old contents are never read, so a training step needs no memset
 * of the two [tokens, intermediate] tensors and no pass reading them back. */
typedef struct {
    uint32_t size;
    int32_t gate_dtype, up_dtype, dout_dtype, dgate_dtype, dup_dtype;
    int64_t n;
    const void *gate;
    const void *up;
    const void *dout;
    void *dgate;
    void *dup;
} serl_swiglu_bwd_args;
SERL_API int32_t serl_swiglu_bwd(void *ctx, const serl_swiglu_bwd_args *a);

/* y[i,:] += bias (rows n, cols dim). */
typedef struct {
    uint32_t size;
    int32_t n, dim;
    int32_t bias_dtype, y_dtype;
    int32_t reserved;
    const void *bias;
    void *y;
} serl_bias_add_args;
SERL_API int32_t serl_bias_add(void *ctx, const serl_bias_add_args *a);

/* dbias += Σ_i dy[i,:] (dbias F32). */
typedef struct {
    uint32_t size;
    int32_t n, dim;
    int32_t dy_dtype;
    const void *dy;
    float *dbias;
} serl_bias_bwd_args;
SERL_API int32_t serl_bias_bwd(void *ctx, const serl_bias_bwd_args *a);

/* out = x + alpha · y (residual add with alpha = 1; out may alias x or y). */
typedef struct {
    uint32_t size;
    float alpha;
    int32_t x_dtype, y_dtype, out_dtype;
    int32_t reserved;
    int64_t n;
    const void *x;
    const void *y;
    void *out;
} serl_add_args;
SERL_API int32_t serl_add(void *ctx, const serl_add_args *a);

/* out = alpha · x (out may alias x). */
typedef struct {
    uint32_t size;
    float alpha;
    int32_t x_dtype, out_dtype;
    int64_t n;
    const void *x;
    void *out;
} serl_scale_args;
SERL_API int32_t serl_scale(void *ctx, const serl_scale_args *a);

/* dst = src converted between F32 and BF16 (or copied when the dtypes are equal), n elements. F32 → BF16
 * rounds to nearest even; a NaN stays a quiet NaN with its sign. dst must not partly overlap src. */
typedef struct {
    uint32_t size;
    int32_t src_dtype, dst_dtype;
    int32_t reserved;
    int64_t n;
    const void *src;
    void *dst;
} serl_cast_args;
SERL_API int32_t serl_cast(void *ctx, const serl_cast_args *a);

/* ---------------------------------------------------------------- log-probabilities */

/* Per row t of logits [n, vocab] (row stride ld), with z = logits·inv_temp:
 *   logp[t]    = z[targets[t]] − logsumexp(z)
 *   entropy[t] = −Σ p log p           (entropy may be NULL)
 *   lse[t]     = logsumexp(z)          (saved for backward; may be NULL)
 * Stable for logits of any magnitude. targets outside [0,vocab) → SERL_E_ARG; targets[t] < 0 with
 * ignore_negative = 1 gives logp 0. logits: F32 or BF16; the outputs F32. */
typedef struct {
    uint32_t size;
    int32_t n, vocab, ld;
    float inv_temp;
    int32_t ignore_negative;
    int32_t logits_dtype;
    int32_t reserved;
    const void *logits;
    const int32_t *targets;
    float *logp;
    float *entropy;
    float *lse;
} serl_logprob_fwd_args;
SERL_API int32_t serl_logprob_fwd(void *ctx, const serl_logprob_fwd_args *a);

/* dlogits[t,:] = coef[t] · inv_temp · (onehot(targets[t]) − softmax(z)), the gradient of
 * Σ_t coef[t]·logp[t]. OVERWRITES dlogits, which may alias logits (no second vocab-sized buffer; the
 * same dtype then). logits and dlogits: F32 or BF16 each. */
typedef struct {
    uint32_t size;
    int32_t n, vocab, ld;
    float inv_temp;
    int32_t ignore_negative;
    int32_t logits_dtype, dlogits_dtype;
    const void *logits;
    const int32_t *targets;
    const float *lse;       /* from the forward */
    const float *coef;      /* [n] */
    void *dlogits;
} serl_logprob_bwd_args;
SERL_API int32_t serl_logprob_bwd(void *ctx, const serl_logprob_bwd_args *a);

/* ---------------------------------------------------------------- sampling */

/* One token per row of logits [n, vocab] (row stride ld). Per row r:
 *   1. z = logits − presence_penalty[r] for every distinct token in hist[r·ld_hist .. + hist_len[r]]
 *   2. banned ids (ban_ids) get −inf in rows with ban_rows[r] ≠ 0 (EOS before min_tokens)
 *   3. temperature[r] == 0: greedy (lowest index among equal maxima); logp = log-softmax(z) there
 *   4. else z /= temperature; keep the top_k[r] largest (≤0: all), then the smallest set whose
 *      probability reaches top_p[r] (≥1: all); sample with a uniform from the counter-based generator
 *      keyed by (seeds[r], seq_ids[r], steps[r]) — independent of batch composition.
 * tokens[r] = the token; logp[r] = its log-probability under the temperature-scaled, penalised
 * distribution before top-k/top-p truncation (NULL: not written). logits: F32 or BF16. */
typedef struct {
    uint32_t size;
    int32_t n, vocab, ld;
    int32_t ld_hist, n_ban;
    int32_t logits_dtype;
    int32_t reserved;
    const void *logits;
    const float *temperature;       /* [n] */
    const int32_t *top_k;           /* [n] */
    const float *top_p;             /* [n] */
    const float *presence_penalty;  /* [n] */
    const int32_t *hist;            /* [n, ld_hist] or NULL */
    const int32_t *hist_len;        /* [n] or NULL */
    const int32_t *ban_ids;         /* [n_ban] or NULL */
    const int32_t *ban_rows;        /* [n] or NULL */
    const uint64_t *seeds;          /* [n] */
    const uint64_t *seq_ids;        /* [n] */
    const int32_t *steps;           /* [n] */
    int32_t *tokens;                /* [n] out */
    float *logp;                    /* [n] out or NULL */
} serl_sample_args;
SERL_API int32_t serl_sample(void *ctx, const serl_sample_args *a);

/* ---------------------------------------------------------------- decode step state */

/* Advances a decode batch of n rows by the token each row has just drawn, on the device, so a
 * steady-state decode step uploads nothing (the generation engine's inputs stay where the sampler and
 * the model read them) and its arguments do not change from step to step (a CUDA graph can replay it).
 * First the block-table patches the host uploaded for the blocks it took: k = patch[0] pairs follow
 * (at most max_patch; k ≤ 0: none), table[patch[1+2i]] = patch[2+2i] (indices distinct; one outside
 * [0, n·max_blocks) skipped), and patch[0] is reset to 0, so the next step applies nothing unless the
 * host uploads again. Then per row r, with t = tokens[r] and p = pos[r] + 1:
 *   ids[r] = t; pos[r] = p; seq_lens[r] = p + 1;
 *   slots[r] = table[r·max_blocks + p / block_size] · block_size + p % block_size
 *              (−1 when p < 0 or p / block_size ≥ max_blocks: the row has no block for p);
 *   hist[r·ld_hist + steps[r]] = t when hist is given and steps[r] < ld_hist; then steps[r] += 1;
 *   ban_rows[r] = steps[r] < min_new[r] when ban_rows is given.
 * Every tensor is I32. */
typedef struct {
    uint32_t size;
    int32_t n, block_size, max_blocks;
    int32_t ld_hist, max_patch;
    const int32_t *tokens;  /* [n] */
    int32_t *patch;         /* [1 + 2·max_patch] or NULL */
    int32_t *table;         /* [n, max_blocks] */
    int32_t *ids;           /* [n] */
    int32_t *pos;           /* [n] */
    int32_t *seq_lens;      /* [n] */
    int32_t *slots;         /* [n] */
    int32_t *steps;         /* [n] */
    int32_t *hist;          /* [n, ld_hist] or NULL */
    int32_t *ban_rows;      /* [n] or NULL */
    const int32_t *min_new; /* [n], with ban_rows */
} serl_decode_advance_args;
SERL_API int32_t serl_decode_advance(void *ctx, const serl_decode_advance_args *a);

/* ---------------------------------------------------------------- advantages */

/* Masked whitening over a token batch: μ = Σ m·x / Σ m, σ² = Σ m·(x−μ)² / Σ m (biased),
 * y = (x − μ) / sqrt(max(σ², eps)) where mask ≠ 0, else 0 (std_norm = 0: y = x − μ).
 * Accumulates in double. mode (stats is device memory):
 *   SERL_WHITEN_FULL   statistics and whitening in one call: stats[0] = μ, stats[1] = σ² (out, [2]);
 *   SERL_WHITEN_STATS  statistics only: stats[0] = μ, stats[1] = σ², stats[2] = Σ m (out, [3]); y and
 *                      std_norm/eps unused (y may be NULL). Data-parallel callers combine every rank's
 *                      (μ, σ², Σ m) on the host (Chan's parallel formula) ...
 *   SERL_WHITEN_APPLY  ... and whiten with given statistics: μ = stats[0], σ² = stats[1] (in, [2]).
 * Σ m = 0 is an error in FULL and STATS. */
#define SERL_WHITEN_FULL 0
#define SERL_WHITEN_STATS 1
#define SERL_WHITEN_APPLY 2
typedef struct {
    uint32_t size;
    int32_t std_norm;
    int64_t n;
    float eps;
    int32_t mode;       /* SERL_WHITEN_* */
    const float *x;
    const float *mask;
    float *y;           /* may alias x */
    float *stats;       /* [2] */
} serl_whiten_args;
SERL_API int32_t serl_whiten(void *ctx, const serl_whiten_args *a);

/* Per group g of group_size consecutive rewards:
 *   mode 0 (GRPO):  y = (r − mean_g) / (std_g + eps), std Bessel-corrected (÷(G−1))
 *   mode 1 (RLOO):  y = r − (Σ_g r − r) / (G − 1)
 *   mode 2 (mean):  y = r − mean_g */
#define SERL_GROUP_ZSCORE 0
#define SERL_GROUP_RLOO 1
#define SERL_GROUP_CENTER 2
typedef struct {
    uint32_t size;
    int32_t mode;
    int32_t n_groups, group_size;
    float eps;
    int32_t reserved;
    const float *r;     /* [n_groups · group_size] */
    float *y;           /* may alias r */
} serl_group_baseline_args;
SERL_API int32_t serl_group_baseline(void *ctx, const serl_group_baseline_args *a);

/* ---------------------------------------------------------------- RL step (docs/SERL.md §5.2–5.4)
 *
 * A training step keeps its per-token data on the device. Two layouts index it:
 *  - packed: the training arena's positions of one forward batch, [n_tokens]; sequence i's action j
 *    (response token j) is predicted at packed position pos[i] + j (pos[i] = the sequence's packed
 *    offset + its prompt length − 1);
 *  - action-packed: the step's actions back to back, [n_actions]; sequence i's actions occupy
 *    [act_cu[i], act_cu[i+1]) (act_cu non-decreasing, act_cu[n_seqs] ≤ n_actions).
 * pos and act_cu are I32 device arrays; every tensor here is F32. The CPU library rejects indices out of
 * range (SERL_E_ARG) before writing anything; the CUDA library cannot read them before launching: it
 * skips a sequence whose range falls outside and reports it, with the same message, at the next
 * synchronisation or host copy (the device error word). Every op here is deterministic: one sequence's sums are
 * accumulated in double in token order by one thread. */

/* dst[act_cu[i] + j] = src[pos[i] + j] for j < act_cu[i+1] − act_cu[i]: a forward's per-token
 * log-probs (packed) into the step's action-packed buffer. */
typedef struct {
    uint32_t size;
    int32_t n_seqs;
    int32_t n_tokens;   /* elements of src */
    int32_t n_actions;  /* elements of dst */
    const int32_t *pos;     /* [n_seqs] */
    const int32_t *act_cu;  /* [n_seqs + 1] */
    const float *src;       /* [n_tokens] packed */
    float *dst;             /* [n_actions] action-packed */
} serl_gather_actions_args;
SERL_API int32_t serl_gather_actions(void *ctx, const serl_gather_actions_args *a);

/* KL-shaped returns, per sequence i of T = act_cu[i+1] − act_cu[i] actions (γ = 1):
 *   s_u = −beta·(logp_old − logp_ref)_u + reward[i]·[u = T−1],  ret_t = Σ_{u≥t} s_u,
 * summed in double from the last action back (the sum at u adds −beta·k1 first, then the reward);
 * kl[i] = Σ_u (logp_old − logp_ref)_u (k1, double, from the last action back). reward is the
 * reshaped, clipped sequence reward (beta 0: grpo, whose KL is a loss term). */
typedef struct {
    uint32_t size;
    int32_t n_seqs;
    int32_t n_actions;
    float beta;
    const int32_t *act_cu;  /* [n_seqs + 1] */
    const float *logp_old;  /* [n_actions] */
    const float *logp_ref;  /* [n_actions] */
    const float *reward;    /* [n_seqs] */
    float *ret;             /* [n_actions] out (may alias neither input) */
    float *kl;              /* [n_seqs] out */
} serl_kl_returns_args;
SERL_API int32_t serl_kl_returns(void *ctx, const serl_kl_returns_args *a);

/* PPO-clip loss coefficients of one packed forward batch (docs/SERL.md §5.4, D15). For sequence i of T
 * actions, with logp its actions' log-probs from the forward (packed, at pos[i] + t), logp_old,
 * logp_ref, adv at act_cu[i] + t, w = 1/(T·step_seqs), lo = 1 − clip_eps, hi = 1 + clip_eps, all in double:
 *   ρ = exp(logp − logp_old), ℓ = −min(ρA, clamp(ρ, lo, hi)·A); d = logp − logp_ref;
 *   g = −ρA, except g = 0 (and the token counts as clipped) when (ρ > hi and A > 0) or (ρ < lo and A < 0)
 *   — PyTorch autograd's tie rules through −min(surr1, surr2): on the closed range [lo, hi] both
 *   arguments carry ρA; A = 0 gives 0 and is never counted;
 *   grpo ≠ 0: ℓ += kl_coef·k3(d), g += kl_coef·(1 − e^−d), KL term k3(d) = e^−d − 1 + d; else KL term d;
 *   coef[pos[i] + t] = (float)(g·w); coef's other positions in the range below are 0;
 *   sums[3i] = Σ_t ℓ · w, sums[3i+1] = clipped tokens, sums[3i+2] = Σ_t KL term (each summed in double,
 *   in token order, stored once as float).
 * coef is what serl_logprob_bwd / the model's backward read as ∂L/∂logp. Only the packed positions
 * [tok_lo, tok_hi) of coef are written (0 ≤ tok_lo ≤ tok_hi ≤ n_tokens), and only their logp read: a
 * token's coefficient depends on nothing else, so the model's head can ask for each chunk's while its
 * logits are still in the buffer. sums may be NULL; when given, they are every sequence's whole sums
 * whatever the range (the range [0, 0) computes the sums alone, once every chunk's logp is known). */
typedef struct {
    uint32_t size;
    int32_t n_seqs;
    int32_t n_tokens;
    int32_t n_actions;
    int32_t step_seqs;      /* sequences of the whole optimizer step (all ranks): the loss divisor */
    int32_t grpo;
    float clip_eps;
    float kl_coef;
    int32_t tok_lo;         /* the packed positions of coef written: [tok_lo, tok_hi) */
    int32_t tok_hi;
    const int32_t *pos;     /* [n_seqs] */
    const int32_t *act_cu;  /* [n_seqs + 1] */
    const float *logp;      /* [n_tokens] packed, from the forward the backward follows */
    const float *logp_old;  /* [n_actions] */
    const float *logp_ref;  /* [n_actions] */
    const float *adv;       /* [n_actions] */
    float *coef;            /* [n_tokens] out, at [tok_lo, tok_hi) */
    float *sums;            /* [n_seqs, 3] out, or NULL */
} serl_ppo_coef_args;
SERL_API int32_t serl_ppo_coef(void *ctx, const serl_ppo_coef_args *a);

/* ---------------------------------------------------------------- optimizer */

/* Global L2 norm of g[0..n) into out[0] (accumulated in double); when max_norm > 0 and the norm
 * exceeds it, g is scaled in place by max_norm / (norm + 1e-6) (DeepSpeed/PyTorch clip_grad_norm_). */
typedef struct {
    uint32_t size;
    float max_norm;
    int64_t n;
    float *g;
    float *out;     /* [1] the norm before clipping */
} serl_grad_norm_args;
SERL_API int32_t serl_grad_norm(void *ctx, const serl_grad_norm_args *a);

/* AdamW (decoupled weight decay), PyTorch semantics, step ≥ 1:
 *   g' = g·grad_scale·clip; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²
 *   p -= lr·wd·p;  p -= lr · (m / (1−β1^step)) / (sqrt(v / (1−β2^step)) + eps)
 * clip reads the gradient norm from device memory, so no host round trip sits between serl_grad_norm
 * (with max_norm 0: measure only) and the update: with grad_norm given and max_norm > 0,
 * clip = max_norm / (norm + 1e-6) when the norm is finite and exceeds max_norm, else 1 — the scale
 * serl_grad_norm would apply. p_bf16, when given, receives the updated p rounded to bf16 (the copy that
 * bf16 matrix products read). Everything else is F32. */
typedef struct {
    uint32_t size;
    int32_t step;
    int64_t n;
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    float max_norm;
    int32_t reserved;
    float *p;
    const float *g;
    float *m;
    float *v;
    uint16_t *p_bf16;           /* [n] BF16 or NULL */
    const float *grad_norm;     /* [1] or NULL */
} serl_adamw_args;
SERL_API int32_t serl_adamw(void *ctx, const serl_adamw_args *a);

/* ---------------------------------------------------------------- NCCL */

/* Multi-GPU collectives through NCCL, which the CUDA library loads at run time (SERL_NCCL_LIB, a path,
 * else the soname libnccl.so.2), never links. The CPU library exports the same entry points and
 * returns SERL_E_UNSUPPORTED. A communicator (comm) is opaque, one per context and process; its
 * collectives run on the context's stream, and serl_nccl_poll says when they are done. Errors name the
 * NCCL call and NCCL's words. */
#define SERL_NCCL_ID_BYTES 128

/* Writes a fresh ncclUniqueId (on one rank, then sent to the others by some other means) to id. */
typedef struct {
    uint32_t size;
    int32_t reserved;
    uint8_t *id;        /* [SERL_NCCL_ID_BYTES] host, out */
} serl_nccl_unique_id_args;
SERL_API int32_t serl_nccl_unique_id(void *ctx, const serl_nccl_unique_id_args *a);

/* Joins the communicator of nranks ranks named by id as rank (ncclCommInitRank on the context's
 * device; blocks until every rank has joined). */
typedef struct {
    uint32_t size;
    int32_t rank, nranks;
    int32_t reserved;
    const uint8_t *id;  /* [SERL_NCCL_ID_BYTES] host */
    void **comm;        /* out */
} serl_nccl_init_args;
SERL_API int32_t serl_nccl_init(void *ctx, const serl_nccl_init_args *a);

/* x[0..n) F32 (device) ← the sum of every rank's x, in place; enqueued on the context's stream. */
typedef struct {
    uint32_t size;
    int32_t reserved;
    int64_t n;
    void *comm;
    float *x;
} serl_nccl_all_reduce_args;
SERL_API int32_t serl_nccl_all_reduce(void *ctx, const serl_nccl_all_reduce_args *a);

/* x[0..bytes) (device) ← root's x; enqueued on the context's stream. */
typedef struct {
    uint32_t size;
    int32_t root;
    int64_t bytes;
    void *comm;
    void *x;
} serl_nccl_broadcast_args;
SERL_API int32_t serl_nccl_broadcast(void *ctx, const serl_nccl_broadcast_args *a);

/* done[0] (host) ← 1 when the context's stream has finished its work, else 0; fails with the
 * communicator's asynchronous error (ncclCommGetAsyncError) when it has one. Never blocks. */
typedef struct {
    uint32_t size;
    int32_t reserved;
    void *comm;
    int32_t *done;      /* [1] host, out */
} serl_nccl_poll_args;
SERL_API int32_t serl_nccl_poll(void *ctx, const serl_nccl_poll_args *a);

/* Ends the communicator: ncclCommDestroy, or ncclCommAbort when abort ≠ 0 (after a timeout or an
 * error, when a peer may never join again). */
typedef struct {
    uint32_t size;
    int32_t abort;
    void *comm;
} serl_nccl_free_args;
SERL_API int32_t serl_nccl_free(void *ctx, const serl_nccl_free_args *a);

/* ---------------------------------------------------------------- captured op sequences (graphs) */

/* A graph is a sequence of ops recorded once and replayed by one call: the decode step, hundreds of
 * launches of ~5 µs each through purego on a GPU, becomes one. Semantics are CUDA stream capture's (the
 * CUDA library uses it; the CPU library records the same way, so the engine's use of graphs runs in CI):
 *  - Between serl_graph_begin and serl_graph_end, ops are RECORDED, NOT EXECUTED: each call checks its
 *    arguments (what needs no tensor contents) and returns SERL_OK having done nothing. Its arguments
 *    are frozen by value: pointers, sizes, scalars, dtypes. The contents of memory are not: a launch
 *    reads whatever the device memory holds then, so a replayed step takes its inputs from fixed device
 *    buffers that the caller rewrites between launches (on the device, without an upload in the hot loop).
 *  - During capture, serl_alloc, serl_free, host↔device serl_copy, serl_sync, serl_device_info, NCCL, a
 *    nested begin and serl_graph_launch are refused with SERL_E_STATE, as is an op that cannot be
 *    captured (one that reads device memory back on the host, e.g. serl_whiten; the message names it).
 *    Device-to-device serl_copy and serl_memset are captured like ops.
 *  - Any failure during capture (a refusal or an op's own argument error) spoils it: later calls still
 *    record nothing, and serl_graph_end returns NULL with the first error in serl_last_error; the context
 *    has then left capture mode and holds nothing of it.
 *  - serl_graph_launch replays the ops in order on the context's stream (asynchronous on a GPU, like any
 *    op). An error an op finds in tensor contents (an id, slot, block, target or sampling parameter out
 *    of range) is reported as for the op run directly: on the CPU by the call (a launch names the op and
 *    its place in the graph), before anything is written; on a GPU — for direct calls too, so that no op
 *    waits for the host — at the next serl_sync or serl_copy to or from the host, naming the op, with
 *    the offending rows left unwritten or NaN. A graph may be launched any number of times; the buffers
 *    it names must stay allocated while it may be launched.
 *  - CUDA: run the sequence once outside capture first (a warm-up): an op whose device scratch must grow
 *    is refused during capture, as is any allocation. Graphs belong to the context they were made on. */
SERL_API int32_t serl_graph_begin(void *ctx);
/* Ends the capture: the graph, or NULL (serl_last_error says why; capture mode is left either way). */
SERL_API void *serl_graph_end(void *ctx);
SERL_API int32_t serl_graph_launch(void *ctx, void *graph);
/* Destroys a graph (NULL: nothing). It waits for no launch: one still queued on a GPU completes. */
SERL_API void serl_graph_free(void *ctx, void *graph);

#ifdef __cplusplus
}
#endif
#endif /* SERL_H */
