/* Graph capture internals the context needs (graph.cu). */
#ifndef SERL_CUDA_GRAPH_CUH
#define SERL_CUDA_GRAPH_CUH
#include "common.cuh"

/* Ends a capture in progress and drops it (context destroy). */
void serl_graph_abandon(serl_cuda_ctx *ctx);
#endif
