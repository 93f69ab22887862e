/* Captured op sequences (serl_graph_*, serl.h): what both libraries share. Include after the library's
 * context header (SERL_CTX). */
#ifndef SERL_GRAPH_H
#define SERL_GRAPH_H

#include <string.h>

/* The ops a graph may capture, the same on both libraries (X(op) stands for serl_<op>): those whose
 * checks and launch sizes need no tensor contents on the host — every op of a decode step, packed
 * attention (its launch sized by the caller's max_len, cu_seqlens checked on the device), whitening
 * (its final reduction on the device) and the embedding backward (ids sorted on the device, its grids
 * sized by n_tokens). Left out, and refused during capture: the RL step's ops (not yet reviewed for
 * capture), NCCL, serl_device_info. serl_copy is captured only device-to-device. A new op is refused
 * during capture until it is listed here (and, on the GPU, reads nothing back on the host). */
#define SERL_GRAPH_OPS(X)                                                                               \
    X(memset) X(copy) X(matmul) X(embedding_fwd) X(rmsnorm_fwd) X(rmsnorm_bwd) X(rope) X(kv_append)        \
    X(decode_attention) X(swiglu_fwd) X(swiglu_bwd) X(bias_add) X(bias_bwd) X(add) X(scale) X(cast)       \
    X(logprob_fwd) X(logprob_bwd) X(sample) X(group_baseline) X(grad_norm) X(adamw) X(decode_advance)    \
    X(attention_fwd) X(attention_bwd) X(whiten) X(embedding_bwd) X(rope_append)

/* Whether args type name T ("serl_matmul_args") names an op of SERL_GRAPH_OPS. */
static inline int serl_graph_capturable(const char *type) {
#define SERL_GRAPH_NAME_(op) "serl_" #op "_args",
    static const char *const names[] = {SERL_GRAPH_OPS(SERL_GRAPH_NAME_)};
#undef SERL_GRAPH_NAME_
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(type, names[i])) return 1;
    return 0;
}

/* Copy kinds a graph captures: device to device only (an upload or download needs the host now). */
static inline int32_t serl_graph_check_copy(SERL_CTX *ctx, const serl_copy_args *a) {
    if (a->kind != SERL_COPY_D2D)
        return serl_fail(ctx, SERL_E_STATE, "serl_copy: a %s copy cannot be captured in a graph (only device-to-device)",
                         a->kind == SERL_COPY_H2D ? "host-to-device" : "device-to-host");
    return SERL_OK;
}

#endif
