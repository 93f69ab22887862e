/* Shared by every translation unit of the CUDA library: the context (one device, one stream, a caching
 * allocator, cuBLAS loaded at run time), error reporting, argument checks and bf16 load/store. Nothing
 * here is exported. The CPU library (csrc/cpu) is the reference for every op's semantics and messages. */
#ifndef SERL_CUDA_COMMON_CUH
#define SERL_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <initializer_list>

#include "../common.h"

struct serl_pool;
struct serl_cublas;

/* An error a kernel finds in tensor contents (an index out of range): the first one is kept in a small
 * device buffer, copied to pinned host memory in the same wait as the next synchronisation (serl_sync,
 * a copy to or from the host), and reported then with the op's message. So an op that
 * checks indices needs no host round trip of its own, and can run inside a CUDA graph. code:
 * SERL_DERR_*. */
typedef struct {
    int code;
    int i, j;
    int pad;
    long long v, lim;
    double f;
} serl_dev_err;

enum {
    SERL_DERR_NONE = 0,
    SERL_DERR_EMBEDDING_ID, /* j: 0 embedding_fwd, 1 embedding_bwd */
    SERL_DERR_KV_SLOT, /* j: 0 kv_append, 1 rope_append */
    SERL_DERR_DECODE_LEN,
    SERL_DERR_DECODE_BLOCK,
    SERL_DERR_ROPE_POS, /* j: 0 rope, 1 rope_append */
    SERL_DERR_LOGPROB_FWD_TARGET,
    SERL_DERR_LOGPROB_BWD_TARGET,
    SERL_DERR_SAMPLE_BAN,
    SERL_DERR_SAMPLE_TEMPERATURE,
    SERL_DERR_SAMPLE_TOP_P,
    SERL_DERR_SAMPLE_PENALTY,
    SERL_DERR_SAMPLE_HIST_LEN,
    SERL_DERR_SAMPLE_HIST,
    SERL_DERR_SAMPLE_NO_FINITE,
    SERL_DERR_RL_ACTIONS, /* j: the op (SERL_RL_OP_*); v, f: the sequence's action range; lim: n_actions */
    SERL_DERR_RL_POS,     /* j: the op; v, f: the packed range; lim: n_tokens */
    /* attention's cu_seqlens (j: 0 attention_fwd, 1 attention_bwd): cu_seqlens[0] = v; cu_seqlens[i] = v
     * with n_tokens = lim; cu_seqlens[i] = v > cu_seqlens[i+1] = lim; sequence i of v tokens, max_len lim */
    SERL_DERR_ATTN_CU_FIRST,
    SERL_DERR_ATTN_CU_LAST,
    SERL_DERR_ATTN_CU_DECREASE,
    SERL_DERR_ATTN_MAX_LEN,
    SERL_DERR_WHITEN_MASK, /* f: Σ mask (0 or not finite) */
};

/* The RL step's ops, named in their errors (rl.cu, context.cu). */
enum { SERL_RL_OP_GATHER_ACTIONS, SERL_RL_OP_KL_RETURNS, SERL_RL_OP_PPO_COEF };

typedef struct serl_cuda_ctx {
    int device;
    cudaStream_t stream;
    struct serl_pool *pool;     /* caching device allocator (pool.cu) */
    struct serl_cublas *blas;   /* NULL until the first matmul (cublas_loader.cu) */
    /* scratch: device memory reused across ops (grown on demand, kept; stream-ordered, so one op's
     * use ends before the next op's starts) */
    void *scratch;
    size_t scratch_bytes;
    int32_t scratch_status; /* why the last serl_scratch failed: what the op returns */
    char err[1024];
    /* the device error word (serl_dev_err): device memory, and its pinned host copy */
    serl_dev_err *derr;
    serl_dev_err *derr_host;
    /* graph capture (graph.cu): capturing the stream; the first failure during capture; graphs alive;
     * scratch buffers outgrown while graphs may still name them (freed when none is left) */
    int capturing;
    int32_t cap_status;
    char cap_err[1024];
    int graphs;
    void **retired;
    int n_retired;
    void *blas_workspace; /* cuBLAS's fixed workspace, so that it never allocates inside a capture */
    int fast_fp64;        /* float64 at ≥ 1/4 of the float32 rate (A100, H100, H200; not L4, A10, RTX) */
    int sms;              /* multiprocessors */
    int attn_mma;         /* bf16 attention with head_dim 64 or 128 on tensor cores (SERL_CUDA_ATTN, read at creation) */
} serl_cuda_ctx;
#define SERL_CTX serl_cuda_ctx /* for ../common.h */

/* Records a formatted message on ctx and returns status. */
int32_t serl_fail(serl_cuda_ctx *ctx, int32_t status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Makes ctx's device current on the calling thread (a no-op for device 0 threads that never changed it). */
int32_t serl_use_device(serl_cuda_ctx *ctx);

/* A failed CUDA status as SERL_E_DEVICE (SERL_E_NOMEM for out-of-memory), with where and why. */
int32_t serl_cuda_fail(serl_cuda_ctx *ctx, cudaError_t e, const char *what);

#define SERL_ENTER(ctxp, a, T)                                                                          \
    SERL_ENTER_ARGS(ctxp, a, T);                                                                        \
    /* the current device is per host thread, and Go calls from any thread */                          \
    if (serl_use_device(ctx) != SERL_OK) return SERL_E_DEVICE;                                          \
    if (ctx->capturing && serl_graph_admit(ctx, #T) != SERL_OK) return SERL_E_STATE

/* During capture: SERL_OK when the op (args type name) may be captured, else the refusal (graph.cu). */
int32_t serl_graph_admit(serl_cuda_ctx *ctx, const char *type);

/* Waits for the context's stream and reports (and clears) an error the kernels left in the device error
 * word: SERL_OK when there is none. what names the wait for a CUDA failure. */
int32_t serl_sync_stream(serl_cuda_ctx *ctx, const char *what);

/* A kernel's report of bad tensor contents: the first one wins (see serl_dev_err). */
__device__ __forceinline__ void serl_report(serl_dev_err *e, int code, int i, int j, long long v, long long lim,
                                            double f = 0) {
    if (atomicCAS(&e->code, 0, -1) == 0) {
        e->i = i, e->j = j, e->v = v, e->lim = lim, e->f = f;
        __threadfence_system();
        atomicExch(&e->code, code);
    }
}

/* Checks a CUDA call; returns from the op on failure. */
#define CUDA_TRY(call)                                                                                  \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) return serl_cuda_fail(ctx, e_, #call);                                   \
    } while (0)

/* After a kernel launch: a launch error (bad configuration, no kernel image for the device). */
#define LAUNCH_CHECK(name)                                                                              \
    do {                                                                                                \
        cudaError_t e_ = cudaGetLastError();                                                            \
        if (e_ != cudaSuccess) return serl_cuda_fail(ctx, e_, name ": kernel launch");                 \
    } while (0)

/* Device scratch of at least bytes (256-byte aligned), valid until the next op. NULL on failure (the
 * message is set, and ctx->scratch_status says which: SERL_E_STATE inside a capture, SERL_E_NOMEM, ...). */
void *serl_scratch(serl_cuda_ctx *ctx, size_t bytes);

/* Whether every pointer is 16-byte aligned: the kernels that load 16-byte vectors (uint4, cp.async)
 * take them only then. */
static inline bool serl_aligned16(std::initializer_list<const void *> ps) {
    for (const void *p : ps)
        if ((uintptr_t)p & 15) return false;
    return true;
}

/* Blocks for 1-D grids over n elements. */
static inline unsigned serl_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 65535LL * 32) b = 65535LL * 32; /* kernels loop grid-stride past this */
    return (unsigned)(b > 0 ? b : 1);
}

/* Rows per chunk of a column reduction whose chunks are grid.y (at most 65535): want, or more for
 * tall inputs (≥ 4,194,241 rows at 64). */
static inline int serl_chunk_rows(int n, int want) {
    const int64_t most = ((int64_t)n + 65534) / 65535;
    return most > want ? (int)most : want;
}

/* ------------------------------------------------------------------------- device helpers */

/* bf16 ⇄ f32 exactly as the CPU library: the rounding is serl_bf16_round (../common.h). */
__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ uint16_t f32_to_bf16(float f) { return serl_bf16_round(__float_as_uint(f)); }

/* 8 bf16 in 16 bytes (element 2k in the low half of word k) ⇄ 8 floats, for vectorised loads and stores. */
__device__ __forceinline__ void bf16x8_unpack(uint4 q, float *v) {
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; k++) v[2 * k] = __uint_as_float(w[k] << 16), v[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
}
__device__ __forceinline__ uint4 bf16x8_pack(const float *v) {
    uint4 q;
    q.x = f32_to_bf16(v[0]) | (uint32_t)f32_to_bf16(v[1]) << 16;
    q.y = f32_to_bf16(v[2]) | (uint32_t)f32_to_bf16(v[3]) << 16;
    q.z = f32_to_bf16(v[4]) | (uint32_t)f32_to_bf16(v[5]) << 16;
    q.w = f32_to_bf16(v[6]) | (uint32_t)f32_to_bf16(v[7]) << 16;
    return q;
}

/* Element i of p (dtype dt: bf16 or else f32) as float, and the store of a float. */
__device__ __forceinline__ float ld(const void *p, int bf, int64_t i) {
    return bf ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}
__device__ __forceinline__ void st(void *p, int bf, int64_t i, float v) {
    if (bf)
        ((uint16_t *)p)[i] = f32_to_bf16(v);
    else
        ((float *)p)[i] = v;
}

/* v as a store into dtype bf (or else f32) and a load back would give it: an op fused with the one
 * before keeps the intermediate rounding the two ops had. */
__device__ __forceinline__ float rnd(int bf, float v) { return bf ? bf16_to_f32(f32_to_bf16(v)) : v; }

/* Elements i and i + 1 of p as one access where their address allows it (a 4-byte bf16 pair, an 8-byte
 * float2), else as two: an mma fragment's lane holds such pairs, and a warp storing them element by
 * element issues twice the requests over twice the sectors (SERL_SIMT_SECTORS measures it). */
__device__ __forceinline__ bool pair_aligned(const void *p, int bf, int64_t i) {
    return !(((uintptr_t)p + (uintptr_t)i * (bf ? 2 : 4)) & (bf ? 3 : 7));
}
__device__ __forceinline__ float2 ld2(const void *p, int bf, int64_t i) {
    if (!pair_aligned(p, bf, i)) return make_float2(ld(p, bf, i), ld(p, bf, i + 1));
    if (bf) {
        const uint32_t w = *(const uint32_t *)((const uint16_t *)p + i);
        return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xFFFF0000u));
    }
    return *(const float2 *)((const float *)p + i);
}
__device__ __forceinline__ void st2(void *p, int bf, int64_t i, float a, float b) {
    if (!pair_aligned(p, bf, i)) {
        st(p, bf, i, a), st(p, bf, i + 1, b);
    } else if (bf) {
        *(uint32_t *)((uint16_t *)p + i) = f32_to_bf16(a) | (uint32_t)f32_to_bf16(b) << 16;
    } else {
        *(float2 *)((float *)p + i) = make_float2(a, b);
    }
}

/* Deterministic block reductions: a fixed tree over the block, so the result does not depend on
 * scheduling. All threads get the result. sh needs blockDim.x/32 slots. */
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    return v;
}
template <typename T> __device__ T block_sum(T v, T *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    T r = lane < nw ? sh[lane] : (T)0;
    r = warp_sum(r);
    return r;
}
__device__ __forceinline__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(r);
}

#include "../check.h" /* needs the context and serl_fail above */

#endif
