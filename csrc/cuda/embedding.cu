/* Token embedding: a gather (forward) and a scatter-add (backward). Both check ids on the device (an id
 * out of range is skipped, and reported at the next synchronisation with the CPU library's message), so
 * neither needs a host round trip and both can be captured in a graph. */
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"

/* ------------------------------------------------------------------------- forward: gather */

/* Tokens over blocks, columns over threads (a flat index would need a 64-bit division per element). */
__global__ void embedding_fwd_kernel(const int32_t *ids, const void *table, int tbf, void *out, int obf, int dim,
                                     int vocab, int n, serl_dev_err *err) {
    for (int t = blockIdx.x; t < n; t += gridDim.x) {
        const int32_t id = ids[t];
        if ((uint32_t)id >= (uint32_t)vocab) {
            if (threadIdx.x == 0) serl_report(err, SERL_DERR_EMBEDDING_ID, t, 0 /* embedding_fwd */, id, vocab);
            continue;
        }
        const int64_t src = (int64_t)id * dim, dst = (int64_t)t * dim;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) st(out, obf, dst + c, ld(table, tbf, src + c));
    }
}

extern "C" SERL_API int32_t serl_embedding_fwd(void *ctxp, const serl_embedding_fwd_args *a) {
    SERL_ENTER(ctxp, a, serl_embedding_fwd_args);
    SERL_CHECK(serl_check_embedding_fwd(ctx, a));
    const int threads = a->dim >= 256 ? 256 : (a->dim + 31) / 32 * 32;
    const unsigned blocks = a->n_tokens < 65535 * 32 ? (unsigned)a->n_tokens : 65535u * 32;
    embedding_fwd_kernel<<<blocks, threads, 0, ctx->stream>>>(a->ids, a->table, a->table_dtype == SERL_DTYPE_BF16, a->out,
                                                              a->out_dtype == SERL_DTYPE_BF16, a->dim, a->vocab,
                                                              a->n_tokens, ctx->derr);
    LAUNCH_CHECK("embedding_fwd");
    return SERL_OK;
}

/* ------------------------------------------------------------------------- backward: scatter-add */

/* The backward runs on the device only (no read-back, so a graph can capture it) and is deterministic
 * without float atomics, as PyTorch's CUDA embedding backward: a stable radix sort of (id, token) pairs
 * groups each id's tokens in token order, and one thread per (id, column) adds them in that order, from
 * dtable's value, exactly as the CPU library does (bit-identical results). */

/* keys[t]: ids[t], or vocab for an id out of range (sorted after every good id, never written);
 * vals[t]: t. */
__global__ void embedding_bwd_keys_kernel(const int32_t *ids, uint32_t *keys, int32_t *vals, int n, int vocab) {
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < n; t += gridDim.x * blockDim.x) {
        const int32_t id = ids[t];
        keys[t] = (uint32_t)id < (uint32_t)vocab ? (uint32_t)id : (uint32_t)vocab;
        vals[t] = t;
    }
}

/* Block x: sorted position s, which does the work only where a run of equal ids starts (so the grid
 * needs no device-side run count); threads (and grid.y) over columns. The run of bad ids reports its
 * first token, the lowest bad index as the CPU library reports, since the sort is stable. */
__global__ void embedding_bwd_kernel(const uint32_t *keys, const int32_t *order, const int32_t *ids, const void *dout,
                                     int dbf, float *dtable, int dim, int n, int vocab, serl_dev_err *err) {
    for (int s = blockIdx.x; s < n; s += gridDim.x) {
        const uint32_t k = keys[s];
        if (s > 0 && keys[s - 1] == k) continue;
        if (k == (uint32_t)vocab) {
            if (blockIdx.y == 0 && threadIdx.x == 0) {
                const int t = order[s];
                serl_report(err, SERL_DERR_EMBEDDING_ID, t, 1 /* embedding_bwd */, ids[t], vocab);
            }
            continue;
        }
        /* the run's end, 32 keys a step (every warp alike; blockDim is a multiple of 32) */
        int e = n;
        for (int base = s + 1; base < n; base += 32) {
            const int i = base + (int)(threadIdx.x & 31);
            const unsigned m = __ballot_sync(0xFFFFFFFFu, i >= n || keys[i] != k);
            if (m) {
                e = base + __ffs(m) - 1;
                break;
            }
        }
        const int64_t row = (int64_t)k * dim;
        for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < dim; c += gridDim.y * blockDim.x) {
            float acc = dtable[row + c];
            int i = s;
            /* a long run (a common token) is latency-bound: 8 loads in flight, added in token order */
            for (; i + 8 <= e; i += 8) {
                float v[8];
#pragma unroll
                for (int j = 0; j < 8; j++) v[j] = ld(dout, dbf, (int64_t)order[i + j] * dim + c);
#pragma unroll
                for (int j = 0; j < 8; j++) acc += v[j];
            }
            for (; i < e; i++) acc += ld(dout, dbf, (int64_t)order[i] * dim + c);
            dtable[row + c] = acc;
        }
    }
}

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

extern "C" SERL_API int32_t serl_embedding_bwd(void *ctxp, const serl_embedding_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_embedding_bwd_args);
    SERL_CHECK(serl_check_embedding_bwd(ctx, a));
    const int n = a->n_tokens;
    int bits = 0; /* keys run 0..vocab (vocab: a bad id) */
    while (bits < 32 && ((uint64_t)1 << bits) <= (uint64_t)a->vocab) bits++;
    /* scratch: keys and token indices, before and after the sort, then CUB's temporary storage (its size
     * is a host-side computation: no synchronisation) */
    size_t temp = 0;
    CUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, temp, (const uint32_t *)NULL, (uint32_t *)NULL, (const int32_t *)NULL,
                                             (int32_t *)NULL, n, 0, bits, ctx->stream));
    const size_t arr = align256(sizeof(int32_t) * (size_t)n);
    char *s = (char *)serl_scratch(ctx, 4 * arr + temp);
    if (!s) return ctx->scratch_status;
    uint32_t *keys_in = (uint32_t *)s, *keys = (uint32_t *)(s + arr);
    int32_t *vals_in = (int32_t *)(s + 2 * arr), *order = (int32_t *)(s + 3 * arr);
    embedding_bwd_keys_kernel<<<serl_blocks(n, 256), 256, 0, ctx->stream>>>(a->ids, keys_in, vals_in, n, a->vocab);
    LAUNCH_CHECK("embedding_bwd (keys)");
    CUDA_TRY(cub::DeviceRadixSort::SortPairs(s + 4 * arr, temp, keys_in, keys, vals_in, order, n, 0, bits, ctx->stream));
    const int threads = a->dim >= 256 ? 256 : (a->dim + 31) / 32 * 32;
    const int ycols = (a->dim + threads - 1) / threads;
    dim3 grid(n < 65535 * 32 ? (unsigned)n : 65535u * 32, (unsigned)(ycols < 64 ? ycols : 64));
    embedding_bwd_kernel<<<grid, threads, 0, ctx->stream>>>(keys, order, a->ids, a->dout, a->dout_dtype == SERL_DTYPE_BF16,
                                                            a->dtable, a->dim, n, a->vocab, ctx->derr);
    LAUNCH_CHECK("embedding_bwd");
    return SERL_OK;
}
