/* The RL step's per-token work on the device (serl.h, "RL step"): gathering a forward's action
 * log-probs, KL-shaped returns and PPO-clip loss coefficients. Sequences are independent; each is one
 * task, summed in double in token order, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* check_index reports the first sequence whose actions fall outside [0, n_tokens) (packed, when pos is
 * given) or [0, n_actions) (action-packed). */
static int32_t check_index(serl_ctx *ctx, const char *op, int32_t n_seqs, const int32_t *pos, const int32_t *act_cu,
                           int32_t n_tokens, int32_t n_actions) {
    SERL_REQUIRE(act_cu[0] >= 0, "%s: act_cu[0] = %d (want ≥ 0)", op, act_cu[0]);
    for (int32_t i = 0; i < n_seqs; i++) {
        int32_t T = act_cu[i + 1] - act_cu[i];
        SERL_REQUIRE(T >= 0 && act_cu[i + 1] <= n_actions, "%s: sequence %d: actions [%d, %d) outside [0, %d)", op, i,
                     act_cu[i], act_cu[i + 1], n_actions);
        if (pos) {
            SERL_REQUIRE(pos[i] >= 0 && (int64_t)pos[i] + T <= n_tokens,
                         "%s: sequence %d: packed positions [%d, %lld) outside [0, %d)", op, i, pos[i],
                         (long long)pos[i] + T, n_tokens);
        }
    }
    return SERL_OK;
}

SERL_API int32_t serl_gather_actions(void *ctxp, const serl_gather_actions_args *a) {
    SERL_ENTER(ctxp, a, serl_gather_actions_args);
    SERL_CHECK(serl_check_gather_actions(ctx, a));
    SERL_CHECK(check_index(ctx, "gather_actions", a->n_seqs, a->pos, a->act_cu, a->n_tokens, a->n_actions));
    for (int32_t i = 0; i < a->n_seqs; i++)
        memcpy(a->dst + a->act_cu[i], a->src + a->pos[i], sizeof(float) * (size_t)(a->act_cu[i + 1] - a->act_cu[i]));
    return SERL_OK;
}

static void kl_returns_task(void *arg, int64_t i, int w) {
    (void)w;
    const serl_kl_returns_args *a = arg;
    const int32_t lo = a->act_cu[i], T = a->act_cu[i + 1] - lo;
    const double beta = a->beta;
    double acc = 0, kl = 0;
    for (int32_t t = T - 1; t >= 0; t--) {
        double k = (double)a->logp_old[lo + t] - (double)a->logp_ref[lo + t];
        kl += k;
        acc += -beta * k;
        if (t == T - 1) acc += a->reward[i];
        a->ret[lo + t] = (float)acc;
    }
    a->kl[i] = (float)kl;
}

SERL_API int32_t serl_kl_returns(void *ctxp, const serl_kl_returns_args *a) {
    SERL_ENTER(ctxp, a, serl_kl_returns_args);
    SERL_CHECK(serl_check_kl_returns(ctx, a));
    SERL_CHECK(check_index(ctx, "kl_returns", a->n_seqs, NULL, a->act_cu, 0, a->n_actions));
    serl_parallel(ctx, a->n_seqs, kl_returns_task, (void *)a);
    return SERL_OK;
}

/* ppo_clamp clamps a token offset into a sequence of T to [0, T]. */
static inline int32_t ppo_clamp(int32_t t, int32_t T) { return t < 0 ? 0 : t > T ? T : t; }

static void ppo_coef_task(void *arg, int64_t i, int w) {
    (void)w;
    const serl_ppo_coef_args *a = arg;
    const int32_t lo = a->act_cu[i], T = a->act_cu[i + 1] - lo, p = a->pos[i];
    /* Without sums only the tokens in the range are visited; with them, every token, for the sums. */
    const int32_t t0 = a->sums ? 0 : ppo_clamp(a->tok_lo - p, T), t1 = a->sums ? T : ppo_clamp(a->tok_hi - p, T);
    const double wt = T > 0 ? 1.0 / ((double)T * (double)a->step_seqs) : 0;
    const double eps = a->clip_eps, beta = a->kl_coef, clo = 1 - eps, chi = 1 + eps;
    double loss = 0, kl = 0, clipped = 0;
    for (int32_t t = t0; t < t1; t++) {
        const double lp = a->logp[p + t], A = a->adv[lo + t];
        const double rho = exp(lp - (double)a->logp_old[lo + t]);
        const double surr1 = rho * A, surr2 = fmax(clo, fmin(chi, rho)) * A;
        loss -= fmin(surr1, surr2);
        double g = -rho * A;
        if ((rho > chi && A > 0) || (rho < clo && A < 0)) {
            g = 0;
            clipped++;
        }
        const double d = lp - (double)a->logp_ref[lo + t];
        if (a->grpo) {
            const double k = exp(-d) - 1 + d;
            kl += k;
            loss += beta * k;
            g += beta * (1 - exp(-d));
        } else {
            kl += d;
        }
        if (p + t >= a->tok_lo && p + t < a->tok_hi) a->coef[p + t] = (float)(g * wt);
    }
    if (a->sums) {
        a->sums[3 * i] = (float)(loss * wt);
        a->sums[3 * i + 1] = (float)clipped;
        a->sums[3 * i + 2] = (float)kl;
    }
}

SERL_API int32_t serl_ppo_coef(void *ctxp, const serl_ppo_coef_args *a) {
    SERL_ENTER(ctxp, a, serl_ppo_coef_args);
    SERL_CHECK(serl_check_ppo_coef(ctx, a));
    if (a->n_seqs > 0)
        SERL_CHECK(check_index(ctx, "ppo_coef", a->n_seqs, a->pos, a->act_cu, a->n_tokens, a->n_actions));
    if (a->tok_hi > a->tok_lo) memset(a->coef + a->tok_lo, 0, sizeof(float) * (size_t)(a->tok_hi - a->tok_lo));
    serl_parallel(ctx, a->n_seqs, ppo_coef_task, (void *)a);
    return SERL_OK;
}
