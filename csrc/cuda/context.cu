/* Context, errors, memory, copies and introspection exports of the CUDA library. A context owns one
 * device (cudaSetDevice at creation: the runtime's primary context is shared by every host thread),
 * one non-blocking stream that every op of the context is queued on, a caching allocator and a cuBLAS
 * handle. Ops are asynchronous; serl_copy to the host and serl_sync wait. */
#include <dlfcn.h>
#include <stdlib.h>

#include "common.cuh"
#include "cublas_loader.cuh"
#include "../graph.h"
#include "graph.cuh"
#include "pool.cuh"

extern "C" {

SERL_API int32_t serl_abi_version(void) { return SERL_ABI_VERSION; }

SERL_API const char *serl_backend(void) { return "cuda"; }

}

int32_t serl_fail(serl_cuda_ctx *ctx, int32_t status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    if (ctx->capturing && !ctx->cap_status) { /* a failure during capture spoils the graph (graph.cu) */
        ctx->cap_status = status;
        snprintf(ctx->cap_err, sizeof ctx->cap_err, "%s", ctx->err);
    }
    return status;
}

int32_t serl_cuda_fail(serl_cuda_ctx *ctx, cudaError_t e, const char *what) {
    cudaGetLastError(); /* clear a non-sticky error so that later calls start clean */
    return serl_fail(ctx, e == cudaErrorMemoryAllocation ? SERL_E_NOMEM : SERL_E_DEVICE, "%s: %s (%s)", what,
                     cudaGetErrorString(e), cudaGetErrorName(e));
}

int32_t serl_use_device(serl_cuda_ctx *ctx) {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == ctx->device) return SERL_OK;
    cudaError_t e = cudaSetDevice(ctx->device);
    if (e != cudaSuccess) return serl_cuda_fail(ctx, e, "cudaSetDevice");
    return SERL_OK;
}

/* Why the last serl_context_create failed; serl_last_error(NULL) returns it. */
static char create_err[1024];

/* The device error word and its pinned host copy, zeroed. */
static int32_t serl_derr_init(serl_cuda_ctx *ctx) {
    void *h = NULL, *d = NULL;
    CUDA_TRY(cudaMallocHost(&h, sizeof(serl_dev_err)));
    memset(h, 0, sizeof(serl_dev_err));
    ctx->derr_host = (serl_dev_err *)h;
    CUDA_TRY(cudaMalloc(&d, sizeof(serl_dev_err)));
    ctx->derr = (serl_dev_err *)d;
    CUDA_TRY(cudaMemsetAsync(d, 0, sizeof(serl_dev_err), ctx->stream));
    return SERL_OK;
}

int32_t serl_sync_stream(serl_cuda_ctx *ctx, const char *what) {
    cudaError_t e = cudaMemcpyAsync(ctx->derr_host, ctx->derr, sizeof(serl_dev_err), cudaMemcpyDeviceToHost, ctx->stream);
    if (e != cudaSuccess) return serl_cuda_fail(ctx, e, "cudaMemcpyAsync (the device error word)");
    e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) return serl_cuda_fail(ctx, e, what);
    const serl_dev_err *r = ctx->derr_host;
    int code = r->code;
    if (code == 0) return SERL_OK;
    int i = r->i, j = r->j;
    long long v = r->v, lim = r->lim;
    double f = r->f;
    /* cleared in stream order, before any later kernel can report */
    e = cudaMemsetAsync(ctx->derr, 0, sizeof(serl_dev_err), ctx->stream);
    if (e != cudaSuccess) return serl_cuda_fail(ctx, e, "cudaMemsetAsync (the device error word)");
    memset(ctx->derr_host, 0, sizeof(serl_dev_err));
    switch (code) {
    case SERL_DERR_EMBEDDING_ID:
        return serl_fail(ctx, SERL_E_ARG, "%s: ids[%d] = %lld is outside the vocabulary [0, %lld)",
                         j ? "embedding_bwd" : "embedding_fwd", i, v, lim);
    case SERL_DERR_KV_SLOT:
        return serl_fail(ctx, SERL_E_ARG, "%s: slots[%d] = %lld is out of range (cache has %lld slots)",
                         j ? "rope_append" : "kv_append", i, v, lim);
    case SERL_DERR_DECODE_LEN:
        return serl_fail(ctx, SERL_E_ARG, "decode_attention: seq_lens[%d] = %lld, want 1..%lld (max_blocks · block_size)",
                         i, v, lim);
    case SERL_DERR_DECODE_BLOCK:
        return serl_fail(ctx, SERL_E_ARG, "decode_attention: block_table[%d][%d] = %lld, want 0..%lld", i, j, v, lim);
    case SERL_DERR_ROPE_POS:
        return serl_fail(ctx, SERL_E_ARG, "%s: pos[%d] = %lld is negative", j ? "rope_append" : "rope", i, v);
    case SERL_DERR_LOGPROB_FWD_TARGET:
    case SERL_DERR_LOGPROB_BWD_TARGET:
        return serl_fail(ctx, SERL_E_ARG, "%s: targets[%d] = %lld outside [0, %lld)%s",
                         code == SERL_DERR_LOGPROB_FWD_TARGET ? "logprob_fwd" : "logprob_bwd", i, v, lim,
                         j ? "" : " (ignore_negative is off)");
    case SERL_DERR_SAMPLE_BAN:
        return serl_fail(ctx, SERL_E_ARG, "sample: ban_ids[%d] = %lld outside [0, %lld)", i, v, lim);
    case SERL_DERR_SAMPLE_TEMPERATURE:
        return serl_fail(ctx, SERL_E_ARG, "sample: temperature[%d] = %g (want finite ≥ 0)", i, f);
    case SERL_DERR_SAMPLE_TOP_P: return serl_fail(ctx, SERL_E_ARG, "sample: top_p[%d] = %g (want > 0)", i, f);
    case SERL_DERR_SAMPLE_PENALTY: return serl_fail(ctx, SERL_E_ARG, "sample: presence_penalty[%d] = %g", i, f);
    case SERL_DERR_SAMPLE_HIST_LEN:
        return serl_fail(ctx, SERL_E_ARG, "sample: hist_len[%d] = %lld outside [0, ld_hist = %lld]", i, v, lim);
    case SERL_DERR_SAMPLE_HIST:
        return serl_fail(ctx, SERL_E_ARG, "sample: hist[%d][%d] = %lld outside [0, %lld)", i, j, v, lim);
    case SERL_DERR_SAMPLE_NO_FINITE:
        return serl_fail(ctx, SERL_E_ARG, "sample: row %d has no finite logit (every token banned or −inf)", i);
    case SERL_DERR_RL_ACTIONS:
    case SERL_DERR_RL_POS: {
        static const char *ops[] = {"gather_actions", "kl_returns", "ppo_coef"};
        const char *op = j >= 0 && j < 3 ? ops[j] : "an RL op";
        if (code == SERL_DERR_RL_ACTIONS)
            return serl_fail(ctx, SERL_E_ARG, "%s: sequence %d: actions [%lld, %lld) outside [0, %lld)", op, i, v,
                             (long long)f, lim);
        return serl_fail(ctx, SERL_E_ARG, "%s: sequence %d: packed positions [%lld, %lld) outside [0, %lld)", op, i, v,
                         (long long)f, lim);
    }
    case SERL_DERR_ATTN_CU_FIRST:
    case SERL_DERR_ATTN_CU_LAST:
    case SERL_DERR_ATTN_CU_DECREASE:
    case SERL_DERR_ATTN_MAX_LEN: {
        /* the CPU's messages (serl_check_seqlens, ../check.h) */
        const char *op = j ? "attention_bwd" : "attention_fwd";
        if (code == SERL_DERR_ATTN_CU_FIRST) return serl_fail(ctx, SERL_E_ARG, "%s: cu_seqlens[0] = %lld, want 0", op, v);
        if (code == SERL_DERR_ATTN_CU_LAST)
            return serl_fail(ctx, SERL_E_ARG, "%s: cu_seqlens[%d] = %lld, want n_tokens = %lld", op, i, v, lim);
        if (code == SERL_DERR_ATTN_CU_DECREASE)
            return serl_fail(ctx, SERL_E_ARG, "%s: cu_seqlens decreases at %d (%lld > %lld)", op, i, v, lim);
        return serl_fail(ctx, SERL_E_ARG, "%s: sequence %d has %lld tokens, more than max_len = %lld", op, i, v, lim);
    }
    case SERL_DERR_WHITEN_MASK:
        return serl_fail(ctx, SERL_E_ARG, "whiten: Σ mask = %g (want a non-zero total weight)", f);
    }
    return serl_fail(ctx, SERL_E_DEVICE, "a kernel reported error code %d, which this library does not know", code);
}

/* Which cuBLAS sonames load here, for the message of a machine without a GPU. */
static void probe_cublas(char *out, size_t n) {
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"};
    for (size_t i = 0; i < 3; i++) {
        void *h = dlopen(names[i], RTLD_LAZY | RTLD_LOCAL);
        if (h) {
            dlclose(h);
            snprintf(out, n, "%s loads", names[i]);
            return;
        }
    }
    snprintf(out, n, "none of %s loads", serl_cublas_sonames_text);
}

extern "C" SERL_API void *serl_context_create(int32_t threads) {
    (void)threads;
    create_err[0] = 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        char blas[160];
        probe_cublas(blas, sizeof blas);
        snprintf(create_err, sizeof create_err,
                 "serl cuda: no GPU answers: the NVIDIA driver (libcuda.so.1) says: %s; cuBLAS: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device", blas);
        cudaGetLastError();
        return NULL;
    }
    int dev = 0;
    const char *env = getenv("SERL_CUDA_DEVICE");
    if (env && *env) {
        dev = atoi(env);
        if (dev < 0 || dev >= count) {
            snprintf(create_err, sizeof create_err, "serl cuda: SERL_CUDA_DEVICE=%.32s, but there are %d devices (0..%d)",
                     env, count, count - 1);
            return NULL;
        }
    }
    /* Causal attention on tensor cores (attention_mma.cu) wherever it applies, or on CUDA cores
     * (attention.cu) everywhere: the second is the first's reference on a GPU (bench/gpu.sh runs both). */
    int attn_mma = 1;
    env = getenv("SERL_CUDA_ATTN");
    if (env && *env) {
        if (!strcmp(env, "cores"))
            attn_mma = 0;
        else if (strcmp(env, "mma")) {
            snprintf(create_err, sizeof create_err,
                     "serl cuda: SERL_CUDA_ATTN=%.32s: want mma (bf16 attention on tensor cores, the default) or cores", env);
            return NULL;
        }
    }
    /* The kernels are built for sm_80 and sm_90 (bf16 tensor cores); an older GPU (a T4, a V100) would
     * fail at the first launch with "no kernel image", so it is refused here, by name. */
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
        snprintf(create_err, sizeof create_err, "serl cuda: device %d: cudaGetDeviceProperties: %s", dev, cudaGetErrorString(e));
        cudaGetLastError();
        return NULL;
    }
    if (prop.major < 8) {
        snprintf(create_err, sizeof create_err,
                 "serl cuda: device %d (%.64s) is compute capability %d.%d; serl's CUDA kernels need 8.0 or newer "
                 "(bf16 tensor cores: A100, A10, L4, RTX 30 series and later)",
                 dev, prop.name, prop.major, prop.minor);
        return NULL;
    }
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)calloc(1, sizeof(serl_cuda_ctx));
    if (!ctx) {
        snprintf(create_err, sizeof create_err, "serl cuda: out of host memory for a context");
        return NULL;
    }
    ctx->device = dev;
    ctx->fast_fp64 = prop.singleToDoublePrecisionPerfRatio <= 4;
    ctx->sms = prop.multiProcessorCount;
    ctx->attn_mma = attn_mma;
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(create_err, sizeof create_err, "serl cuda: device %d: %s", dev, cudaGetErrorString(e));
        cudaGetLastError();
        free(ctx);
        return NULL;
    }
    ctx->pool = serl_pool_create();
    if (!ctx->pool || serl_cublas_init(ctx) != SERL_OK || serl_derr_init(ctx) != SERL_OK) {
        snprintf(create_err, sizeof create_err, "%.1000s", ctx->pool ? ctx->err : "serl cuda: out of host memory");
        serl_cublas_destroy(ctx->blas);
        if (ctx->blas_workspace) cudaFree(ctx->blas_workspace);
        if (ctx->derr_host) cudaFreeHost(ctx->derr_host);
        if (ctx->derr) cudaFree(ctx->derr);
        serl_pool_destroy(ctx->pool);
        cudaStreamDestroy(ctx->stream);
        free(ctx);
        return NULL;
    }
    return ctx;
}

extern "C" SERL_API void serl_context_destroy(void *p) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    if (!ctx) return;
    cudaSetDevice(ctx->device);
    serl_graph_abandon(ctx);
    cudaStreamSynchronize(ctx->stream);
    serl_cublas_destroy(ctx->blas);
    if (ctx->blas_workspace) cudaFree(ctx->blas_workspace);
    for (int i = 0; i < ctx->n_retired; i++) cudaFree(ctx->retired[i]);
    free(ctx->retired);
    if (ctx->derr_host) cudaFreeHost(ctx->derr_host);
    if (ctx->derr) cudaFree(ctx->derr);
    if (ctx->scratch) cudaFree(ctx->scratch);
    serl_pool_destroy(ctx->pool);
    cudaStreamDestroy(ctx->stream);
    free(ctx);
}

extern "C" SERL_API const char *serl_last_error(void *p) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    return ctx ? ctx->err : create_err;
}

void *serl_scratch(serl_cuda_ctx *ctx, size_t bytes) {
    if (ctx->scratch_bytes >= bytes && ctx->scratch) return ctx->scratch;
    if (ctx->capturing) {
        ctx->scratch_status = serl_fail(ctx, SERL_E_STATE,
                                        "device scratch must grow from %zu to %zu bytes inside a graph capture: run "
                                        "the ops once before capturing them (a warm-up)",
                                        ctx->scratch_bytes, bytes);
        return NULL;
    }
    if (ctx->scratch && ctx->graphs > 0) {
        /* a graph may name the old buffer: keep it until no graph is left (graph.cu) */
        void **r = (void **)realloc(ctx->retired, sizeof(void *) * (size_t)(ctx->n_retired + 1));
        if (!r) {
            ctx->scratch_status = serl_fail(ctx, SERL_E_NOMEM, "scratch: out of host memory");
            return NULL;
        }
        ctx->retired = r;
        ctx->retired[ctx->n_retired++] = ctx->scratch;
        ctx->scratch = NULL;
        ctx->scratch_bytes = 0;
    }
    if (ctx->scratch) {
        /* the old buffer may still be read by queued work */
        cudaStreamSynchronize(ctx->stream);
        cudaFree(ctx->scratch);
        ctx->scratch = NULL;
        ctx->scratch_bytes = 0;
    }
    size_t want = bytes + bytes / 4 + 4096;
    cudaError_t e = cudaMalloc(&ctx->scratch, want);
    if (e != cudaSuccess) {
        ctx->scratch = NULL;
        ctx->scratch_status = serl_cuda_fail(ctx, e, "scratch cudaMalloc");
        return NULL;
    }
    ctx->scratch_bytes = want;
    return ctx->scratch;
}

extern "C" SERL_API int32_t serl_device_info(void *ctxp, serl_device_info_args *a) {
    SERL_ENTER(ctxp, a, serl_device_info_args);
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, ctx->device));
    size_t freeb = 0, total = 0;
    CUDA_TRY(cudaSetDevice(ctx->device));
    CUDA_TRY(cudaMemGetInfo(&freeb, &total));
    a->threads = 1; /* host threads driving the device */
    a->simd = 0;
    a->simd_cpu = 0;
    a->total_memory = (int64_t)total;
    a->free_memory = (int64_t)(freeb + serl_pool_cached(ctx->pool));
    snprintf(a->name, sizeof a->name, "%.64s (sm_%d%d, %d SMs, %.20s, %s attention)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, ctx->blas ? ctx->blas->soname : "no cuBLAS", ctx->attn_mma ? "mma" : "cores");
    return SERL_OK;
}

extern "C" SERL_API void *serl_alloc(void *p, int64_t bytes) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    if (!ctx) return NULL;
    if (bytes < 0) {
        serl_fail(ctx, SERL_E_ARG, "serl_alloc: negative size %lld", (long long)bytes);
        return NULL;
    }
    if (ctx->capturing) {
        serl_fail(ctx, SERL_E_STATE, "serl_alloc: cannot allocate while the context captures a graph");
        return NULL;
    }
    cudaSetDevice(ctx->device);
    void *m = NULL;
    cudaError_t e = serl_pool_alloc(ctx->pool, (size_t)bytes, &m);
    if (e != cudaSuccess) {
        serl_fail(ctx, SERL_E_NOMEM, "serl_alloc: cannot allocate %lld bytes of device memory: %s", (long long)bytes,
                  cudaGetErrorString(e));
        return NULL;
    }
    return m;
}

extern "C" SERL_API void serl_free(void *p, void *m) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    if (!ctx || !m) return;
    if (ctx->capturing) {
        /* refused; the buffer stays allocated and the capture fails */
        serl_fail(ctx, SERL_E_STATE, "serl_free: cannot free while the context captures a graph");
        return;
    }
    serl_pool_free(ctx->pool, m);
}

extern "C" SERL_API int32_t serl_copy(void *ctxp, const serl_copy_args *a) {
    SERL_ENTER(ctxp, a, serl_copy_args);
    SERL_CHECK(serl_check_copy(ctx, a));
    if (ctx->capturing) SERL_CHECK(serl_graph_check_copy(ctx, a));
    static const cudaMemcpyKind kinds[] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice};
    const char *s = (const char *)a->src;
    char *d = (char *)a->dst;
    if (a->kind == SERL_COPY_D2D && d < s + a->bytes && s < d + a->bytes) {
        /* overlapping: memmove semantics (as the CPU library) through scratch */
        if (d == s) return SERL_OK;
        void *t = serl_scratch(ctx, (size_t)a->bytes);
        if (!t) return ctx->scratch_status;
        CUDA_TRY(cudaMemcpyAsync(t, s, (size_t)a->bytes, cudaMemcpyDeviceToDevice, ctx->stream));
        CUDA_TRY(cudaMemcpyAsync(d, t, (size_t)a->bytes, cudaMemcpyDeviceToDevice, ctx->stream));
        return SERL_OK;
    }
    CUDA_TRY(cudaMemcpyAsync(a->dst, a->src, (size_t)a->bytes, kinds[a->kind], ctx->stream));
    /* The host side of a copy may be Go memory: it must be done with when serl_copy returns. A
     * device-to-device copy stays queued (stream order keeps it before every later op). */
    if (a->kind != SERL_COPY_D2D) return serl_sync_stream(ctx, "cudaStreamSynchronize");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_memset(void *ctxp, const serl_memset_args *a) {
    SERL_ENTER(ctxp, a, serl_memset_args);
    SERL_CHECK(serl_check_memset(ctx, a));
    CUDA_TRY(cudaMemsetAsync(a->dst, a->value, (size_t)a->bytes, ctx->stream));
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_sync(void *ctxp) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)ctxp;
    if (!ctx) return SERL_E_ARG;
    ctx->err[0] = 0;
    if (serl_use_device(ctx) != SERL_OK) return SERL_E_DEVICE;
    if (ctx->capturing) return serl_fail(ctx, SERL_E_STATE, "serl_sync: cannot wait while the context captures a graph");
    return serl_sync_stream(ctx, "cudaStreamSynchronize");
}
