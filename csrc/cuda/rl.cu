/* The RL step's per-token work (serl.h, "RL step"): gathering a forward's action log-probs, KL-shaped
 * returns and PPO-clip loss coefficients. One thread per sequence sums its tokens in double in token
 * order, as the CPU library does: deterministic, no atomics. A step has at most a few thousand
 * sequences of a few hundred actions, so the per-sequence serial loop is not where its time goes. */
#include "common.cuh"

#define THREADS 128

/* The device cannot refuse an index before it has read it: a sequence whose action range or packed
 * positions fall outside the arrays is skipped and reported through the device error word, with the
 * CPU library's message, at the next synchronisation or host copy (common.cuh). */
__device__ static bool seq_range(const int32_t *act_cu, int i, int32_t n_actions, int32_t *lo, int32_t *T,
                                 serl_dev_err *err, int op) {
    *lo = act_cu[i];
    *T = act_cu[i + 1] - *lo;
    if (*lo >= 0 && *T >= 0 && *lo + *T <= n_actions) return true;
    if (err) serl_report(err, SERL_DERR_RL_ACTIONS, i, op, *lo, n_actions, (double)act_cu[i + 1]);
    return false;
}

__device__ static bool pos_range(int32_t p, int32_t T, int32_t n_tokens, int i, serl_dev_err *err, int op) {
    if (p >= 0 && (int64_t)p + T <= n_tokens) return true;
    if (err) serl_report(err, SERL_DERR_RL_POS, i, op, p, n_tokens, (double)((int64_t)p + T));
    return false;
}

__global__ void gather_actions_kernel(serl_gather_actions_args a, serl_dev_err *err) {
    const int i = blockIdx.x;
    int32_t lo, T;
    const int op = SERL_RL_OP_GATHER_ACTIONS;
    const bool report = threadIdx.x == 0; /* one report per sequence, not one per thread */
    if (!seq_range(a.act_cu, i, a.n_actions, &lo, &T, report ? err : NULL, op)) return;
    const int32_t p = a.pos[i];
    if (!pos_range(p, T, a.n_tokens, i, report ? err : NULL, op)) return;
    for (int32_t j = threadIdx.x; j < T; j += blockDim.x) a.dst[lo + j] = a.src[p + j];
}

extern "C" SERL_API int32_t serl_gather_actions(void *ctxp, const serl_gather_actions_args *a) {
    SERL_ENTER(ctxp, a, serl_gather_actions_args);
    SERL_CHECK(serl_check_gather_actions(ctx, a));
    gather_actions_kernel<<<(unsigned)a->n_seqs, THREADS, 0, ctx->stream>>>(*a, ctx->derr);
    LAUNCH_CHECK("gather_actions");
    return SERL_OK;
}

__global__ void kl_returns_kernel(serl_kl_returns_args a, serl_dev_err *err) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.n_seqs) return;
    int32_t lo, T;
    if (!seq_range(a.act_cu, i, a.n_actions, &lo, &T, err, SERL_RL_OP_KL_RETURNS)) return;
    const double beta = a.beta;
    double acc = 0, kl = 0;
    for (int32_t t = T - 1; t >= 0; t--) {
        const double k = (double)a.logp_old[lo + t] - (double)a.logp_ref[lo + t];
        kl += k;
        acc += -beta * k;
        if (t == T - 1) acc += a.reward[i];
        a.ret[lo + t] = (float)acc;
    }
    a.kl[i] = (float)kl;
}

extern "C" SERL_API int32_t serl_kl_returns(void *ctxp, const serl_kl_returns_args *a) {
    SERL_ENTER(ctxp, a, serl_kl_returns_args);
    SERL_CHECK(serl_check_kl_returns(ctx, a));
    kl_returns_kernel<<<(unsigned)((a->n_seqs + THREADS - 1) / THREADS), THREADS, 0, ctx->stream>>>(*a, ctx->derr);
    LAUNCH_CHECK("kl_returns");
    return SERL_OK;
}

__global__ void ppo_zero_kernel(float *coef, int32_t lo, int32_t hi) {
    for (int32_t i = lo + blockIdx.x * blockDim.x + threadIdx.x; i < hi; i += gridDim.x * blockDim.x) coef[i] = 0;
}

__device__ static int32_t ppo_clamp(int32_t t, int32_t T) { return t < 0 ? 0 : t > T ? T : t; }

__global__ void ppo_coef_kernel(serl_ppo_coef_args a, serl_dev_err *err) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.n_seqs) return;
    int32_t lo, T;
    if (!seq_range(a.act_cu, i, a.n_actions, &lo, &T, err, SERL_RL_OP_PPO_COEF)) return;
    const int32_t p = a.pos[i];
    if (!pos_range(p, T, a.n_tokens, i, err, SERL_RL_OP_PPO_COEF)) return;
    /* Without sums only the tokens in the range are visited; with them, every token, for the sums. */
    const int32_t t0 = a.sums ? 0 : ppo_clamp(a.tok_lo - p, T), t1 = a.sums ? T : ppo_clamp(a.tok_hi - p, T);
    const double wt = T > 0 ? 1.0 / ((double)T * (double)a.step_seqs) : 0;
    const double eps = a.clip_eps, beta = a.kl_coef, clo = 1 - eps, chi = 1 + eps;
    double loss = 0, kl = 0, clipped = 0;
    for (int32_t t = t0; t < t1; t++) {
        const double lp = a.logp[p + t], A = a.adv[lo + t];
        const double rho = exp(lp - (double)a.logp_old[lo + t]);
        const double surr1 = rho * A, surr2 = fmax(clo, fmin(chi, rho)) * A;
        loss -= fmin(surr1, surr2);
        double g = -rho * A;
        if ((rho > chi && A > 0) || (rho < clo && A < 0)) {
            g = 0;
            clipped++;
        }
        const double d = lp - (double)a.logp_ref[lo + t];
        if (a.grpo) {
            const double k = exp(-d) - 1 + d;
            kl += k;
            loss += beta * k;
            g += beta * (1 - exp(-d));
        } else {
            kl += d;
        }
        if (p + t >= a.tok_lo && p + t < a.tok_hi) a.coef[p + t] = (float)(g * wt);
    }
    if (a.sums) {
        a.sums[3 * i] = (float)(loss * wt);
        a.sums[3 * i + 1] = (float)clipped;
        a.sums[3 * i + 2] = (float)kl;
    }
}

extern "C" SERL_API int32_t serl_ppo_coef(void *ctxp, const serl_ppo_coef_args *a) {
    SERL_ENTER(ctxp, a, serl_ppo_coef_args);
    SERL_CHECK(serl_check_ppo_coef(ctx, a));
    if (a->tok_hi > a->tok_lo) {
        ppo_zero_kernel<<<serl_blocks(a->tok_hi - a->tok_lo, 256), 256, 0, ctx->stream>>>(a->coef, a->tok_lo, a->tok_hi);
        LAUNCH_CHECK("ppo_coef");
    }
    if (a->n_seqs == 0) return SERL_OK;
    ppo_coef_kernel<<<(unsigned)((a->n_seqs + THREADS - 1) / THREADS), THREADS, 0, ctx->stream>>>(*a, ctx->derr);
    LAUNCH_CHECK("ppo_coef");
    return SERL_OK;
}
