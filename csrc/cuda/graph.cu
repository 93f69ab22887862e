/* Captured op sequences (serl_graph_*, serl.h) as CUDA graphs: stream capture of the context's stream
 * (relaxed mode: Go calls come from any OS thread), instantiated once, launched on the same stream.
 * While capturing, ops enqueue as usual and the stream records them; what would break the capture — a
 * synchronisation, a host read-back, an allocation, an op not in SERL_GRAPH_OPS — is refused first with
 * SERL_E_STATE, and any failure spoils the capture (serl_fail notes it), so serl_graph_end returns NULL
 * with the first error. */
#include <stdlib.h>

#include "common.cuh"
#include "../graph.h"
#include "graph.cuh"

typedef struct {
    cudaGraphExec_t exec;
} serl_cuda_graph;

int32_t serl_graph_admit(serl_cuda_ctx *ctx, const char *type) {
    if (ctx->cap_status)
        return serl_fail(ctx, SERL_E_STATE, "%s: the graph capture already failed: %s", type, ctx->cap_err);
    if (!serl_graph_capturable(type))
        return serl_fail(ctx, SERL_E_STATE,
                         "%.*s cannot be captured in a graph (the context is capturing; see SERL_GRAPH_OPS in csrc/graph.h)",
                         (int)strlen(type) - 5, type);
    return SERL_OK;
}

/* Ends the stream capture, whatever state it is in; the graph it made, or NULL. */
static cudaGraph_t end_capture(serl_cuda_ctx *ctx, cudaError_t *err) {
    cudaGraph_t g = NULL;
    *err = cudaStreamEndCapture(ctx->stream, &g);
    ctx->capturing = 0;
    if (*err != cudaSuccess) {
        cudaGetLastError();
        if (g) cudaGraphDestroy(g);
        return NULL;
    }
    return g;
}

void serl_graph_abandon(serl_cuda_ctx *ctx) {
    if (!ctx->capturing) return;
    cudaError_t e;
    cudaGraph_t g = end_capture(ctx, &e);
    if (g) cudaGraphDestroy(g);
}

extern "C" SERL_API int32_t serl_graph_begin(void *p) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    if (!ctx) return SERL_E_ARG;
    ctx->err[0] = 0;
    if (serl_use_device(ctx) != SERL_OK) return SERL_E_DEVICE;
    if (ctx->capturing) return serl_fail(ctx, SERL_E_STATE, "serl_graph_begin: the context is already capturing a graph");
    CUDA_TRY(cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeRelaxed));
    ctx->capturing = 1;
    ctx->cap_status = 0;
    ctx->cap_err[0] = 0;
    return SERL_OK;
}

extern "C" SERL_API void *serl_graph_end(void *p) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    if (!ctx) return NULL;
    ctx->err[0] = 0;
    if (!ctx->capturing) {
        serl_fail(ctx, SERL_E_STATE, "serl_graph_end: the context is not capturing a graph");
        return NULL;
    }
    serl_use_device(ctx);
    cudaError_t e;
    cudaGraph_t g = end_capture(ctx, &e);
    if (ctx->cap_status) {
        if (g) cudaGraphDestroy(g);
        serl_fail(ctx, ctx->cap_status, "graph capture failed: %s", ctx->cap_err);
        return NULL;
    }
    if (!g) {
        serl_cuda_fail(ctx, e, "graph capture failed: cudaStreamEndCapture");
        return NULL;
    }
    serl_cuda_graph *out = (serl_cuda_graph *)calloc(1, sizeof *out);
    if (!out) {
        cudaGraphDestroy(g);
        serl_fail(ctx, SERL_E_NOMEM, "serl_graph_end: out of host memory");
        return NULL;
    }
    e = cudaGraphInstantiateWithFlags(&out->exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        free(out);
        serl_cuda_fail(ctx, e, "serl_graph_end: cudaGraphInstantiateWithFlags");
        return NULL;
    }
    ctx->graphs++;
    return out;
}

extern "C" SERL_API int32_t serl_graph_launch(void *p, void *gp) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    if (!ctx) return SERL_E_ARG;
    ctx->err[0] = 0;
    if (ctx->capturing) return serl_fail(ctx, SERL_E_STATE, "serl_graph_launch: cannot launch a graph while capturing one");
    if (!gp) return serl_fail(ctx, SERL_E_ARG, "serl_graph_launch: NULL graph");
    if (serl_use_device(ctx) != SERL_OK) return SERL_E_DEVICE;
    CUDA_TRY(cudaGraphLaunch(((serl_cuda_graph *)gp)->exec, ctx->stream));
    return SERL_OK;
}

extern "C" SERL_API void serl_graph_free(void *p, void *gp) {
    serl_cuda_ctx *ctx = (serl_cuda_ctx *)p;
    serl_cuda_graph *g = (serl_cuda_graph *)gp;
    if (!ctx || !g) return;
    serl_use_device(ctx);
    /* a launch still queued completes: the executable graph is released when it has */
    cudaGraphExecDestroy(g->exec);
    free(g);
    if (--ctx->graphs == 0 && ctx->n_retired > 0 && !ctx->capturing) {
        /* scratch outgrown while graphs could name it: nothing names it now, once queued work is done */
        cudaStreamSynchronize(ctx->stream);
        for (int i = 0; i < ctx->n_retired; i++) cudaFree(ctx->retired[i]);
        ctx->n_retired = 0;
    }
}
