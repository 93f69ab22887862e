/* Token embedding: a gather (forward) and a scatter-add (backward). The forward checks ids on the device
 * (an id out of range leaves its row unwritten and is reported at the next synchronisation, with the CPU
 * library's message), so it needs no host round trip and can be captured in a graph. The backward reads
 * ids back and checks them on the host before anything is written. The backward is
 * deterministic without float atomics: tokens are grouped by id on the host, and each (id, column) is
 * summed by one thread over its tokens in token order, as the CPU library adds them. */
#include <stdlib.h>
#include <vector>

#include "common.cuh"

static int32_t check_ids(serl_cuda_ctx *ctx, const char *op, const int32_t *ids, int32_t n, int32_t vocab) {
    for (int32_t t = 0; t < n; t++)
        if ((uint32_t)ids[t] >= (uint32_t)vocab)
            return serl_fail(ctx, SERL_E_ARG, "%s: ids[%d] = %d is outside the vocabulary [0, %d)", op, t, ids[t], vocab);
    return SERL_OK;
}

/* Tokens over blocks, columns over threads (a flat index would need a 64-bit division per element). */
__global__ void embedding_fwd_kernel(const int32_t *ids, const void *table, int tbf, void *out, int obf, int dim,
                                     int vocab, int n, serl_dev_err *err) {
    for (int t = blockIdx.x; t < n; t += gridDim.x) {
        const int32_t id = ids[t];
        if ((uint32_t)id >= (uint32_t)vocab) {
            if (threadIdx.x == 0) serl_report(err, SERL_DERR_EMBEDDING_ID, t, 0, id, vocab);
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

/* Block x: one distinct id (its tokens are order[start[u] .. start[u+1])), threads over columns. */
__global__ void embedding_bwd_kernel(const int32_t *uid, const int32_t *start, const int32_t *order, const void *dout,
                                     int dbf, float *dtable, int dim) {
    const int u = blockIdx.x;
    const int64_t row = (int64_t)uid[u] * dim;
    const int s0 = start[u], s1 = start[u + 1];
    for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < dim; c += gridDim.y * blockDim.x) {
        float acc = dtable[row + c];
        for (int i = s0; i < s1; i++) acc += ld(dout, dbf, (int64_t)order[i] * dim + c);
        dtable[row + c] = acc;
    }
}

extern "C" SERL_API int32_t serl_embedding_bwd(void *ctxp, const serl_embedding_bwd_args *a) {
    SERL_ENTER(ctxp, a, serl_embedding_bwd_args);
    SERL_CHECK(serl_check_embedding_bwd(ctx, a));
    const int n = a->n_tokens;
    const int32_t *hids = (const int32_t *)serl_read_back(ctx, a->ids, sizeof(int32_t) * (size_t)n, "embedding_bwd");
    if (!hids) return SERL_E_DEVICE;
    std::vector<int32_t> ids(hids, hids + n);
    int32_t st_ = check_ids(ctx, "embedding_bwd", ids.data(), n, a->vocab);
    if (st_) return st_;
    /* counting sort by id, stable: tokens of one id stay in token order */
    std::vector<int32_t> cnt((size_t)a->vocab + 1, 0);
    for (int t = 0; t < n; t++) cnt[(size_t)ids[t] + 1]++;
    std::vector<int32_t> uid, start;
    for (int v = 0; v < a->vocab; v++)
        if (cnt[(size_t)v + 1]) uid.push_back(v);
    for (int v = 0; v < a->vocab; v++) cnt[(size_t)v + 1] += cnt[v];
    std::vector<int32_t> order((size_t)n);
    {
        std::vector<int32_t> pos(cnt.begin(), cnt.end() - 1);
        for (int t = 0; t < n; t++) order[(size_t)pos[(size_t)ids[t]]++] = t;
    }
    for (int32_t v : uid) start.push_back(cnt[v]);
    start.push_back(n);
    const size_t nu = uid.size();
    size_t bytes = sizeof(int32_t) * (nu + (nu + 1) + (size_t)n);
    int32_t *d = (int32_t *)serl_scratch(ctx, bytes);
    if (!d) return ctx->scratch_status;
    /* the host vectors die on return: copy synchronously */
    std::vector<int32_t> packed;
    packed.reserve(bytes / 4);
    packed.insert(packed.end(), uid.begin(), uid.end());
    packed.insert(packed.end(), start.begin(), start.end());
    packed.insert(packed.end(), order.begin(), order.end());
    CUDA_TRY(cudaMemcpyAsync(d, packed.data(), bytes, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    dim3 grid((unsigned)nu, (unsigned)((a->dim + 255) / 256 < 64 ? (a->dim + 255) / 256 : 64));
    embedding_bwd_kernel<<<grid, 256, 0, ctx->stream>>>(d, d + nu, d + 2 * nu + 1, a->dout,
                                                       a->dout_dtype == SERL_DTYPE_BF16, a->dtable, a->dim);
    LAUNCH_CHECK("embedding_bwd");
    return SERL_OK;
}
