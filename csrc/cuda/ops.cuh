/* Launch helpers that one op's file offers to another's (internal). */
#ifndef SERL_CUDA_OPS_CUH
#define SERL_CUDA_OPS_CUH
#include "common.cuh"

/* dst[0..n) = src converted (cast.cu), queued on ctx's stream. */
int32_t serl_cast_launch(serl_cuda_ctx *ctx, const void *src, int32_t sdt, void *dst, int32_t ddt, int64_t n);

#endif
