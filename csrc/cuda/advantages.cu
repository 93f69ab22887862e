/* Advantage statistics: masked whitening over a token batch and per-group baselines. Whitening reduces
 * fixed chunks on the device (double), and one thread adds the chunk sums in chunk order (the CPU
 * library's scheme), so the result is deterministic and nothing is read back: the op can be captured in a
 * graph, and a zero total weight is reported through the device error word with the CPU's message. */
#include <vector>

#include "common.cuh"

#define CHUNK 65536
#define THREADS 512

/* The statistics between the kernels (device scratch): Σm, μ, σ², and whether Σm was refused. */
enum { MOM_SM, MOM_MU, MOM_VAR, MOM_BAD, MOM_N };

/* phase 0: part[c] = (Σm, Σm·x); phase 1: part[c] = (Σm·(x−μ)², 0) with μ = mom[MOM_MU] */
__global__ void whiten_partial(const float *x, const float *m, int64_t n, int phase, const double *mom, double *part) {
    __shared__ double sh[32];
    if (phase == 1 && mom[MOM_BAD] != 0) return;
    const double mu = phase == 1 ? mom[MOM_MU] : 0;
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

/* One thread, chunk order (the CPU's sums). phase 0: Σm and μ, refusing Σm = 0 or non-finite; phase 1:
 * σ², and stats (STATS: μ, σ², Σm; FULL: μ, σ²). */
__global__ void whiten_final(const double *part, int64_t nc, int phase, double *mom, float *stats, int mode,
                             serl_dev_err *err) {
    if (phase == 0) {
        double sm = 0, smx = 0;
        for (int64_t c = 0; c < nc; c++) sm += part[2 * c], smx += part[2 * c + 1];
        mom[MOM_SM] = sm;
        mom[MOM_BAD] = !(sm != 0 && isfinite(sm));
        if (mom[MOM_BAD] != 0) {
            serl_report(err, SERL_DERR_WHITEN_MASK, 0, 0, 0, 0, sm);
            return;
        }
        mom[MOM_MU] = smx / sm;
        return;
    }
    if (mom[MOM_BAD] != 0) return;
    double sv = 0;
    for (int64_t c = 0; c < nc; c++) sv += part[2 * c];
    const double var = sv / mom[MOM_SM];
    mom[MOM_VAR] = var;
    stats[0] = (float)mom[MOM_MU], stats[1] = (float)var;
    if (mode == SERL_WHITEN_STATS) stats[2] = (float)mom[MOM_SM];
}

/* y = (x − μ)·is where m ≠ 0; μ, σ² from mom (FULL, computed by whiten_final) or from stats (APPLY). */
__global__ void whiten_apply(const float *x, const float *m, float *y, int64_t n, const double *mom, const float *stats,
                             int std_norm, float eps) {
    double mu, var;
    if (mom) {
        if (mom[MOM_BAD] != 0) return;
        mu = mom[MOM_MU], var = mom[MOM_VAR];
    } else {
        mu = stats[0], var = stats[1];
    }
    const double is = std_norm ? 1.0 / sqrt(var > eps ? var : (double)eps) : 1.0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = m[i] != 0 ? (float)((x[i] - mu) * is) : 0.0f;
}

extern "C" SERL_API int32_t serl_whiten(void *ctxp, const serl_whiten_args *a) {
    SERL_ENTER(ctxp, a, serl_whiten_args);
    SERL_CHECK(serl_check_whiten(ctx, a));
    if (a->mode == SERL_WHITEN_APPLY) {
        whiten_apply<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->x, a->mask, a->y, a->n, NULL, a->stats,
                                                                       a->std_norm, a->eps);
        LAUNCH_CHECK("whiten");
        return SERL_OK;
    }
    const int64_t nc = (a->n + CHUNK - 1) / CHUNK;
    double *part = (double *)serl_scratch(ctx, sizeof(double) * (2 * (size_t)nc + MOM_N));
    if (!part) return ctx->scratch_status;
    double *mom = part + 2 * nc;
    for (int phase = 0; phase < 2; phase++) {
        whiten_partial<<<(unsigned)nc, THREADS, 0, ctx->stream>>>(a->x, a->mask, a->n, phase, mom, part);
        LAUNCH_CHECK("whiten");
        whiten_final<<<1, 1, 0, ctx->stream>>>(part, nc, phase, mom, a->stats, a->mode, ctx->derr);
        LAUNCH_CHECK("whiten");
    }
    if (a->mode == SERL_WHITEN_STATS) return SERL_OK;
    whiten_apply<<<serl_blocks(a->n, 256), 256, 0, ctx->stream>>>(a->x, a->mask, a->y, a->n, mom, a->stats, a->std_norm,
                                                                   a->eps);
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
