/* Advantage statistics: masked whitening over a token batch and per-group baselines. Whitening reduces
 * fixed chunks on the device (double), and the host adds the chunk sums in order (the CPU library's
 * scheme), which also lets it refuse a zero total weight with the CPU library's message. */
#include <vector>

#include "common.cuh"

#define CHUNK 65536
#define THREADS 512

/* phase 0: part[c] = (Σm, Σm·x); phase 1: part[c] = (Σm·(x−μ)², 0) */
__global__ void whiten_partial(const float *x, const float *m, int64_t n, int phase, double mu, double *part) {
    __shared__ double sh[32];
    const int64_t lo = (int64_t)blockIdx.x * CHUNK, hi = min(n, lo + CHUNK);
    double s0 = 0, s1 = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        if (phase == 0) {
            s0 += m[i];
            s1 += (double)m[i] * x[i];
        } else {
            double d = x[i] - mu;
            s0 += m[i] * d * d;
        }
    }
    s0 = block_sum(s0, sh);
    s1 = block_sum(s1, sh);
    if (threadIdx.x == 0) part[2 * blockIdx.x] = s0, part[2 * blockIdx.x + 1] = s1;
}

/* y = (x − μ)·is where m ≠ 0; μ, σ² from the host (FULL) or from stats (APPLY: given = 1, read on the
 * device so no host round trip sits between a rank's combine and the whitening). FULL writes stats. */
__global__ void whiten_apply(const float *x, const float *m, float *y, int64_t n, double mu, double is, float *stats,
                             float mu_f, float var_f, int given, int std_norm, float eps) {
    if (given) {
        mu = stats[0];
        const double var = stats[1];
        is = std_norm ? 1.0 / sqrt(var > eps ? var : (double)eps) : 1.0;
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = m[i] != 0 ? (float)((x[i] - mu) * is) : 0.0f;
    if (!given && blockIdx.x == 0 && threadIdx.x == 0) stats[0] = mu_f, stats[1] = var_f;
}

__global__ void whiten_stats(float *stats, float mu, float var, float sm) {
    stats[0] = mu, stats[1] = var, stats[2] = sm;
}

extern "C" SERL_API int32_t serl_whiten(void *ctxp, const serl_whiten_args *a) {
    SERL_ENTER(ctxp, a, serl_whiten_args);
    SERL_CHECK(serl_check_whiten(ctx, a));
    if (a->mode == SERL_WHITEN_APPLY) {
        whiten_apply<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->x, a->mask, a->y, a->n, 0, 1, a->stats, 0, 0,
                                                                       1, a->std_norm, a->eps);
        LAUNCH_CHECK("whiten");
        return SERL_OK;
    }
    const int64_t nc = (a->n + CHUNK - 1) / CHUNK;
    double *part = (double *)serl_scratch(ctx, sizeof(double) * 2 * (size_t)nc);
    if (!part) return ctx->scratch_status;
    whiten_partial<<<(unsigned)nc, THREADS, 0, ctx->stream>>>(a->x, a->mask, a->n, 0, 0, part);
    LAUNCH_CHECK("whiten");
    const double *h = (const double *)serl_read_back(ctx, part, sizeof(double) * 2 * (size_t)nc, "whiten");
    if (!h) return SERL_E_DEVICE;
    double sm = 0, smx = 0;
    for (int64_t c = 0; c < nc; c++) sm += h[2 * c], smx += h[2 * c + 1];
    SERL_REQUIRE(sm != 0 && isfinite(sm), "whiten: Σ mask = %g (want a non-zero total weight)", sm);
    const double mu = smx / sm;
    whiten_partial<<<(unsigned)nc, THREADS, 0, ctx->stream>>>(a->x, a->mask, a->n, 1, mu, part);
    LAUNCH_CHECK("whiten");
    h = (const double *)serl_read_back(ctx, part, sizeof(double) * 2 * (size_t)nc, "whiten");
    if (!h) return SERL_E_DEVICE;
    double sv = 0;
    for (int64_t c = 0; c < nc; c++) sv += h[2 * c];
    const double var = sv / sm;
    if (a->mode == SERL_WHITEN_STATS) {
        whiten_stats<<<1, 1, 0, ctx->stream>>>(a->stats, (float)mu, (float)var, (float)sm);
        LAUNCH_CHECK("whiten");
        return SERL_OK;
    }
    const double is = a->std_norm ? 1.0 / sqrt(var > a->eps ? var : (double)a->eps) : 1.0;
    whiten_apply<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->x, a->mask, a->y, a->n, mu, is, a->stats, (float)mu,
                                                                   (float)var, 0, a->std_norm, a->eps);
    LAUNCH_CHECK("whiten");
    return SERL_OK;
}

__global__ void group_baseline_kernel(const float *r, float *y, int n_groups, int G, int mode, float eps) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n_groups) return;
    const float *rg = r + (int64_t)g * G;
    float *yg = y + (int64_t)g * G;
    double s = 0;
    for (int i = 0; i < G; i++) s += rg[i];
    const double mean = s / G;
    if (mode == SERL_GROUP_ZSCORE) {
        double ss = 0;
        for (int i = 0; i < G; i++) ss += (rg[i] - mean) * (rg[i] - mean);
        const double den = sqrt(ss / (G - 1)) + eps;
        for (int i = 0; i < G; i++) yg[i] = (float)((rg[i] - mean) / den);
    } else if (mode == SERL_GROUP_RLOO) {
        for (int i = 0; i < G; i++) {
            double ri = rg[i];
            yg[i] = (float)(ri - (s - ri) / (G - 1));
        }
    } else {
        for (int i = 0; i < G; i++) yg[i] = (float)(rg[i] - mean);
    }
}

extern "C" SERL_API int32_t serl_group_baseline(void *ctxp, const serl_group_baseline_args *a) {
    SERL_ENTER(ctxp, a, serl_group_baseline_args);
    SERL_CHECK(serl_check_group_baseline(ctx, a));
    group_baseline_kernel<<<(a->n_groups + 127) / 128, 128, 0, ctx->stream>>>(a->r, a->y, a->n_groups, a->group_size,
                                                                              a->mode, a->eps);
    LAUNCH_CHECK("group_baseline");
    return SERL_OK;
}
