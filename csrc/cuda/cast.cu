/* serl_cast: f32 ⇄ bf16 (round to nearest even, exactly as the CPU library), or a copy. */
#include "common.cuh"
#include "ops.cuh"

__global__ void cast_kernel(const void *src, int sbf, void *dst, int dbf, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st(dst, dbf, i, ld(src, sbf, i));
}

int32_t serl_cast_launch(serl_cuda_ctx *ctx, const void *src, int32_t sdt, void *dst, int32_t ddt, int64_t n) {
    if (n == 0) return SERL_OK;
    if (sdt == ddt) {
        CUDA_TRY(cudaMemcpyAsync(dst, src, (size_t)n * serl_dtype_size(sdt), cudaMemcpyDeviceToDevice, ctx->stream));
        return SERL_OK;
    }
    cast_kernel<<<serl_blocks(n, 256), 256, 0, ctx->stream>>>(src, sdt == SERL_DTYPE_BF16, dst, ddt == SERL_DTYPE_BF16, n);
    LAUNCH_CHECK("cast");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_cast(void *ctxp, const serl_cast_args *a) {
    SERL_ENTER(ctxp, a, serl_cast_args);
    SERL_CHECK(serl_check_cast(ctx, a));
    if (a->src == a->dst) return SERL_OK; /* the check allowed it only with one dtype: nothing to do */
    return serl_cast_launch(ctx, a->src, a->src_dtype, a->dst, a->dst_dtype, a->n);
}
