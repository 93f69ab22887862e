/* The decode step's device-side state update (serl_decode_advance): one block applies the block-table
 * patches, then advances every row, so a steady-state decode step copies nothing between host and device
 * (and, with nothing to upload, can be captured as a CUDA graph). */
#include "common.cuh"

#define THREADS 256

__global__ void decode_advance_kernel(serl_decode_advance_args a) {
    const int64_t cells = (int64_t)a.n * a.max_blocks;
    if (a.patch) {
        const int k = min(a.patch[0], a.max_patch);
        for (int i = threadIdx.x; i < k; i += blockDim.x) {
            const int64_t at = a.patch[1 + 2 * i];
            if (at >= 0 && at < cells) a.table[at] = a.patch[2 + 2 * i];
        }
        __syncthreads(); /* every thread has read the count before it is reset */
        if (threadIdx.x == 0) a.patch[0] = 0;
    }
    __syncthreads();
    const int bs = a.block_size;
    for (int r = threadIdx.x; r < a.n; r += blockDim.x) {
        const int32_t t = a.tokens[r], p = a.pos[r] + 1, bi = p / bs;
        a.ids[r] = t;
        a.pos[r] = p;
        a.seq_lens[r] = p + 1;
        a.slots[r] = p >= 0 && bi < a.max_blocks ? a.table[(int64_t)r * a.max_blocks + bi] * bs + p % bs : -1;
        const int32_t s = a.steps[r];
        if (a.hist && s >= 0 && s < a.ld_hist) a.hist[(int64_t)r * a.ld_hist + s] = t;
        a.steps[r] = s + 1;
        if (a.ban_rows) a.ban_rows[r] = s + 1 < a.min_new[r];
    }
}

extern "C" SERL_API int32_t serl_decode_advance(void *ctxp, const serl_decode_advance_args *a) {
    SERL_ENTER(ctxp, a, serl_decode_advance_args);
    SERL_CHECK(serl_check_decode_advance(ctx, a));
    decode_advance_kernel<<<1, THREADS, 0, ctx->stream>>>(*a);
    LAUNCH_CHECK("decode_advance");
    return SERL_OK;
}
