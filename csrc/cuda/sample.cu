/* Token sampling with the CPU library's semantics (csrc/cpu/sample.c): presence penalty, bans,
 * temperature, greedy or top-k → top-p → an inverse-CDF draw with a uniform from Philox4x32-10 keyed by
 * (seed, sequence, step), so a row's token depends on that row alone, and the same logits and seed give
 * the same token on both devices.
 *
 * One block per row. The weights e^(z−m) use the CPU library's exponential bit for bit. The order that
 * top-k and top-p prefixes are taken in is (z descending, index ascending), i.e. descending 64-bit keys
 * (orderable z bits, then the complement of the index); the k-th key and the top-p crossing key are
 * found by radix selection, 8 bits a pass. Masses for top-p and the draw are summed as 64-bit fixed
 * point (each weight rounded to 2^-F with V·2^F < 2^63), so every sum is exact and independent of
 * the order threads add in: deterministic, and equal to the CPU's double sums to ~1e-13 relative (a
 * token can differ only when the uniform falls within that distance of a boundary). Weights below
 * 2^-F (a logit ~40 below the maximum for a 150k vocabulary) count as zero mass. */
#include <limits.h>

#include "common.cuh"
#include "expf.cuh"
#include "../philox.h"

#define THREADS 1024 /* with __launch_bounds__(THREADS, 1): ptxas keeps to the 64 registers a 1024-thread block can have */
/* Rows a launch takes: at least 64, and up to two blocks per multiprocessor (one 1024-thread block
 * fills one), so that a 256-sequence decode step runs on every SM of an H200 (132) in one launch
 * rather than on 64 of them in four. Each row has 2·V floats of scratch (1.2 MB at a 152k vocab). */
#define ROWS_MIN 64
typedef unsigned long long u64;

/* A weight's mass in 64-bit fixed point (2^F = fxs): one conversion for the selection and the draw, so
 * their integer sums agree exactly. */
__device__ __forceinline__ u64 to_fixed(float e, u64 fxs) { return __double2ull_rn((double)e * (double)fxs); }

/* Descending order of keys = (z descending, index ascending). −0 and +0 are one value to the CPU's
 * float comparisons (a tie, broken by index), so −0 takes +0's bits. */
__device__ __forceinline__ u64 key_of(float z, int j) {
    uint32_t b = z == 0.0f ? 0u : __float_as_uint(z);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((u64)b << 32) | (u64)(0xFFFFFFFFu - (uint32_t)j);
}

struct sample_shared {
    int cnt[256];
    u64 mass[256];
    u64 prefix, mask, base;
    long long remaining;
    float fred[32];
    double dred[32];
    u64 ured[32];
    int ired[32];
};

__device__ int block_min_int(int v, int *sh) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    int r = lane < nw ? sh[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1) r = min(r, __shfl_xor_sync(0xFFFFFFFFu, r, o));
    return r;
}

__device__ int block_max_int(int v, int *sh) { return -block_min_int(-v, sh); }

/* One radix pass over the elements with key ≥ lo and (key & mask) == prefix: counts and fixed-point
 * masses per digit at bit position shift. A warp's 32 tokens go together (blockDim.x is a multiple of
 * 32). In the first pass a vocabulary's logits fall into a handful of digits (sign and exponent), and
 * lanes adding to one shared counter serialise, so the warp takes its most common digits a group at a
 * time, up to RADIX_GROUPS of them: one lane adds the group's count and mass (an exact integer sum, so in
 * any order); the lanes left over, when the warp's digits are many and so rarely shared, add their own. */
#define RADIX_GROUPS 4
__device__ void radix_hist(sample_shared &S, const float *z, const float *w, int V, int shift, u64 lo, u64 fxs) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) S.cnt[i] = 0, S.mass[i] = 0;
    __syncthreads();
    const u64 prefix = S.prefix, mask = S.mask;
    const int lane = threadIdx.x & 31;
    for (int j0 = threadIdx.x - lane; j0 < V; j0 += blockDim.x) { /* warp-uniform */
        const int j = j0 + lane;
        int dgt = -1; /* not counted, or counted with its group */
        u64 m = 0;
        if (j < V) {
            const u64 k = key_of(z[j], j);
            if (k >= lo && (k & mask) == prefix) {
                dgt = (int)((k >> shift) & 0xFF);
                if (w) m = to_fixed(w[j], fxs);
            }
        }
        unsigned left = __ballot_sync(0xFFFFFFFFu, dgt >= 0);
        for (int g = 0; g < RADIX_GROUPS && left; g++) { /* warp-uniform: left is the same in every lane */
            const int d = __shfl_sync(0xFFFFFFFFu, dgt, __ffs(left) - 1);
            const bool in = dgt == d;
            const unsigned grp = __ballot_sync(0xFFFFFFFFu, in);
            u64 ms = 0;
            if (w) ms = warp_sum(in ? m : 0);
            if (lane == 0) {
                atomicAdd(&S.cnt[d], __popc(grp));
                if (w) atomicAdd(&S.mass[d], ms);
            }
            left &= ~grp;
            if (in) dgt = -1;
        }
        if (dgt >= 0) {
            atomicAdd(&S.cnt[dgt], 1);
            if (w) atomicAdd(&S.mass[dgt], m);
        }
    }
    __syncthreads();
}

/* The draw's split of the vocabulary: warp w owns the contiguous chunk [c0, c1), a multiple of 32 long,
 * and its lane l the tokens c0 + l, c0 + l + 32, … of it. */
struct warp_chunk {
    int c0, c1;
};
__device__ __forceinline__ warp_chunk chunk_of_warp(int V) {
    const int nw = blockDim.x >> 5, chunk = ((V + nw - 1) / nw + 31) & ~31, c0 = (threadIdx.x >> 5) * chunk;
    return {c0, min(V, c0 + chunk)};
}

/* 4. Inverse CDF over kept tokens in index order: the first j whose cumulative mass (converted to double)
 * exceeds u·WF, WF the kept mass. Sums are exact integers, so they may run in any order: each warp's
 * chunk total (mine: this lane's part of it) comes first, the chunks adding up to WF; the first warp
 * whose running total passes the target then walks its chunk 32 tokens a step with shuffles only, no
 * block barrier a step. mass(j): token j's fixed-point mass, 0 where not kept. */
template <class Mass> __device__ int draw(sample_shared &S, int V, u64 mine, double u, Mass mass) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const warp_chunk ch = chunk_of_warp(V);
    mine = warp_sum(mine);
    __syncthreads(); /* S.ured and S.ired were last read by block sums before */
    if (lane == 0) S.ured[wid] = mine;
    if (threadIdx.x == 0) S.ired[0] = INT_MAX;
    __syncthreads();
    u64 before = 0, WF = 0;
    for (int i = 0; i < nw; i++) {
        if (i == wid) before = WF;
        WF += S.ured[i];
    }
    const double target = u * (double)WF;
    if ((double)(before + S.ured[wid]) > target && !((double)before > target)) {
        /* this warp holds the crossing: the totals are non-decreasing, so one warp does (the atomicMin
         * below would keep the first token even if several searched) */
        for (int t0 = ch.c0; t0 < ch.c1; t0 += 32) {
            const int j = t0 + lane;
            u64 incl = j < ch.c1 ? mass(j) : 0;
            for (int o = 1; o < 32; o <<= 1) {
                const u64 y = __shfl_up_sync(0xFFFFFFFFu, incl, o);
                if (lane >= o) incl += y;
            }
            const unsigned hit = __ballot_sync(0xFFFFFFFFu, (double)(before + incl) > target);
            if (hit) {
                if (lane == 0) atomicMin(&S.ired[0], t0 + __ffs(hit) - 1);
                break;
            }
            before += __shfl_sync(0xFFFFFFFFu, incl, 31);
        }
    }
    __syncthreads();
    int tok = S.ired[0];
    if (tok == INT_MAX) { /* u·WF rounded up to WF: the last kept token with mass */
        __syncthreads(); /* S.ired is block_max_int's scratch */
        int lastj = -1;
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            if (mass(j) > 0) lastj = max(lastj, j);
        tok = block_max_int(lastj, S.ired);
        if (tok < 0) tok = 0;
    }
    return tok;
}

__global__ void __launch_bounds__(THREADS, 1) sample_kernel(int r0, const void *logits, int bf, int64_t ldr, int V, const float *temperature,
                              const int32_t *top_k, const float *top_p, const float *presence_penalty,
                              const int32_t *hist, const int32_t *hist_len, int ld_hist, const int32_t *ban_ids,
                              int n_ban, const int32_t *ban_rows, const u64 *seeds, const u64 *seq_ids,
                              const int32_t *steps, int32_t *tokens, float *logp, float *zbuf, float *wbuf,
                              serl_dev_err *err) {
    __shared__ sample_shared S;
    const int r = r0 + blockIdx.x;
    /* every ban id is checked, whichever rows ban (as the CPU library does): by the first row's block */
    if (r == 0)
        for (int i = threadIdx.x; i < n_ban; i += blockDim.x)
            if (ban_ids[i] < 0 || ban_ids[i] >= V) serl_report(err, SERL_DERR_SAMPLE_BAN, i, 0, ban_ids[i], V);
    float *z = zbuf + (int64_t)blockIdx.x * V, *w = wbuf + (int64_t)blockIdx.x * V;
    const int64_t off = r * ldr;
    const float T = temperature[r];
    const bool greedy = T == 0;
    const float pen = presence_penalty[r];
    /* The CPU library's argument checks, made here so that no host round trip precedes the launch: a bad
     * row gets token −1 and the first error is reported at the next synchronisation. Every thread reads
     * the same values, so the early return is uniform over the block. */
    {
        int code = 0;
        double f = 0;
        long long v = 0, lim = 0;
        if (!(T >= 0 && isfinite(T))) code = SERL_DERR_SAMPLE_TEMPERATURE, f = T;
        else if (!(top_p[r] > 0)) code = SERL_DERR_SAMPLE_TOP_P, f = top_p[r];
        else if (!isfinite(pen)) code = SERL_DERR_SAMPLE_PENALTY, f = pen;
        else if (hist && (hist_len[r] < 0 || hist_len[r] > ld_hist))
            code = SERL_DERR_SAMPLE_HIST_LEN, v = hist_len[r], lim = ld_hist;
        if (code) {
            if (threadIdx.x == 0) {
                serl_report(err, code, r, 0, v, lim, f);
                tokens[r] = -1;
            }
            return;
        }
    }
    if (hist) /* every history id is checked, penalised or not (as the CPU library does) */
        for (int i = threadIdx.x; i < hist_len[r]; i += blockDim.x) {
            const int32_t t = hist[(int64_t)r * ld_hist + i];
            if (t < 0 || t >= V) serl_report(err, SERL_DERR_SAMPLE_HIST, r, i, t, V);
        }
    const bool penalise = hist && pen != 0 && hist_len[r] > 0;
    const bool ban = n_ban > 0 && (!ban_rows || ban_rows[r]);
    const int k = top_k[r];
    const float p = top_p[r];
    const bool use_k = k > 0 && k < V, use_p = p < 1.0f;
    /* Without a penalty or a ban, z is x/T (x when greedy), computed from the logits wherever it is read,
     * unless top-k or top-p must select on it. A direct row (a rollout's: sampled from the whole
     * distribution) stores neither z nor the weights: after the maximum, one pass over the logits takes
     * the weights' sum and the draw's chunk masses (the same values: the tokens keep their bits), where
     * the other rows write z, read it for the maximum, write w and read both again: per row of f32 logits
     * 1.2 MB rather than 4.2. A greedy row reads the logits twice (1.2 MB rather than 2.4). */
    const bool nostore = !penalise && !ban && (greedy || (!use_k && !use_p)), direct = nostore && !greedy;
    auto zof = [=](int j) {
        const float x = ld(logits, bf, off + j);
        return greedy || T == 1.0f ? x : __fdiv_rn(x, T);
    };

    /* 1–2. z = (x − penalty·seen) / T, banned → −inf (division, not a reciprocal, as the CPU); a row that
     * does not store z takes its maximum instead */
    float mx = -INFINITY;
    if (nostore)
        for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, zof(j));
    else
        for (int j = threadIdx.x; j < V; j += blockDim.x) z[j] = zof(j);
    __syncthreads();
    if (penalise) {
        const int32_t *h = hist + (int64_t)r * ld_hist;
        for (int i = threadIdx.x; i < hist_len[r]; i += blockDim.x) {
            const int t = h[i];
            if (t < 0 || t >= V) continue; /* reported above */
            const float x = ld(logits, bf, off + t);
            /* a repeated id has several threads store one value: atomically, or that is a data race in
             * CUDA's memory model (the emulator's check reports it) */
            atomicExch(&z[t], greedy ? __fsub_rn(x, pen) : __fdiv_rn(__fsub_rn(x, pen), T));
        }
        __syncthreads();
    }
    if (ban) {
        for (int i = threadIdx.x; i < n_ban; i += blockDim.x) {
            const int32_t b = ban_ids[i];
            if (b >= 0 && b < V) atomicExch(&z[b], -INFINITY); /* a bad id is reported above; a repeated one, as above */
        }
        __syncthreads();
    }
    if (!nostore)
        for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, z[j]);
    const float m = block_max(mx, S.fred);
    if (!(m > -INFINITY) || isinf(m)) {
        if (threadIdx.x == 0) {
            tokens[r] = -1;
            serl_report(err, SERL_DERR_SAMPLE_NO_FINITE, r, 0, 0, 0);
        }
        return;
    }

    int tok;
    double Ssum = 0;
    if (greedy) {
        int first = INT_MAX;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            const float zj = nostore ? zof(j) : z[j];
            if (zj == m) first = min(first, j);
            Ssum += serl_expf(__fsub_rn(zj, m));
        }
        tok = block_min_int(first, S.ired);
        Ssum = block_sum(Ssum, S.dred);
    } else {
        int lg = 0;
        while ((1ull << lg) < (u64)V) lg++;
        const u64 fxs = 1ull << (62 - lg); /* V · 2^F ≤ 2^62 */
        const double u = philox_uniform(seeds[r], seq_ids[r], (uint32_t)steps[r]);
        if (direct) {
            const warp_chunk ch = chunk_of_warp(V);
            u64 mine = 0;
            for (int j = ch.c0 + (threadIdx.x & 31); j < ch.c1; j += 32) {
                const float e = serl_expf(__fsub_rn(zof(j), m));
                Ssum += e;
                mine += to_fixed(e, fxs);
            }
            Ssum = block_sum(Ssum, S.dred);
            tok = draw(S, V, mine, u, [&](int j) { return to_fixed(serl_expf(__fsub_rn(zof(j), m)), fxs); });
        } else {
            for (int j = threadIdx.x; j < V; j += blockDim.x) {
                const float e = serl_expf(__fsub_rn(z[j], m));
                w[j] = e;
                Ssum += e;
            }
            Ssum = block_sum(Ssum, S.dred); /* its __syncthreads also publishes w */
            u64 keymin = 0; /* kept ⟺ key ≥ keymin */
            if (use_k) {
                if (threadIdx.x == 0) S.prefix = 0, S.mask = 0, S.remaining = k;
                for (int shift = 56; shift >= 0; shift -= 8) {
                    __syncthreads();
                    radix_hist(S, z, NULL, V, shift, 0, fxs);
                    if (threadIdx.x == 0) {
                        long long rem = S.remaining;
                        int d = 255;
                        for (; d > 0 && S.cnt[d] < rem; d--) rem -= S.cnt[d];
                        S.remaining = rem;
                        S.prefix |= (u64)d << shift;
                        S.mask |= (u64)0xFF << shift;
                    }
                }
                __syncthreads();
                keymin = S.prefix;
            }
            if (use_p) {
                u64 part = 0; /* the mass top-k kept, whose share p top-p keeps */
                for (int j = threadIdx.x; j < V; j += blockDim.x)
                    if (key_of(z[j], j) >= keymin) part += to_fixed(w[j], fxs);
                const double target = (double)p * (double)block_sum(part, S.ured);
                if (threadIdx.x == 0) S.prefix = 0, S.mask = 0, S.base = 0;
                for (int shift = 56; shift >= 0; shift -= 8) {
                    __syncthreads();
                    radix_hist(S, z, w, V, shift, keymin, fxs);
                    if (threadIdx.x == 0) {
                        u64 base = S.base;
                        int d = 255, last = -1;
                        for (; d >= 0; d--) {
                            if (!S.cnt[d]) continue;
                            last = d;
                            if ((double)(base + S.mass[d]) >= target) break;
                            base += S.mass[d];
                        }
                        if (d < 0) { /* rounding kept the group's mass under the target: its lowest digit */
                            d = last;
                            base -= S.mass[d];
                        }
                        S.base = base;
                        S.prefix |= (u64)d << shift;
                        S.mask |= (u64)0xFF << shift;
                    }
                }
                __syncthreads();
                keymin = S.prefix;
            }
            auto mass = [&](int j) { return keymin == 0 || key_of(z[j], j) >= keymin ? to_fixed(w[j], fxs) : 0ull; };
            u64 mine = 0;
            const warp_chunk ch = chunk_of_warp(V);
            for (int j = ch.c0 + (threadIdx.x & 31); j < ch.c1; j += 32) mine += mass(j);
            tok = draw(S, V, mine, u, mass);
        }
    }
    if (threadIdx.x == 0) {
        tokens[r] = tok;
        if (logp) logp[r] = (float)((double)(nostore ? zof(tok) : z[tok]) - (double)m - log(Ssum));
    }
}

extern "C" SERL_API int32_t serl_sample(void *ctxp, const serl_sample_args *a) {
    SERL_ENTER(ctxp, a, serl_sample_args);
    SERL_CHECK(serl_check_sample(ctx, a));
    const int n = a->n;
    const int per_launch = 2 * ctx->sms > ROWS_MIN ? 2 * ctx->sms : ROWS_MIN;
    const int R = n < per_launch ? n : per_launch;
    char *s = (char *)serl_scratch(ctx, 2 * sizeof(float) * (size_t)R * a->vocab + 256);
    if (!s) return ctx->scratch_status;
    float *zbuf = (float *)(s + 256), *wbuf = zbuf + (size_t)R * a->vocab;
    for (int r0 = 0; r0 < n; r0 += R) {
        const int rows = n - r0 < R ? n - r0 : R;
        sample_kernel<<<rows, THREADS, 0, ctx->stream>>>(
            r0, a->logits, a->logits_dtype == SERL_DTYPE_BF16, a->ld, a->vocab, a->temperature, a->top_k, a->top_p,
            a->presence_penalty, a->hist, a->hist_len, a->ld_hist, a->ban_ids, a->n_ban, a->ban_rows,
            (const u64 *)a->seeds, (const u64 *)a->seq_ids, a->steps, a->tokens, a->logp, zbuf, wbuf, ctx->derr);
        LAUNCH_CHECK("sample");
    }
    return SERL_OK;
}
