/* Shared by the CPU (csrc/cpu) and CUDA (csrc/cuda) libraries, so that both round, name dtypes and report
 * errors alike: plain C, usable from gcc and from nvcc (host and device). Nothing here is exported.
 *
 * The including library defines, before including this, SERL_CTX (its context type, with a char err[]
 * buffer) and declares int32_t serl_fail(SERL_CTX *ctx, int32_t status, const char *fmt, ...). */
#ifndef SERL_COMMON_H
#define SERL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "serl.h"

#ifdef __CUDACC__
#define SERL_HD __host__ __device__ __forceinline__
#else
#define SERL_HD inline
#endif

/* F32 bits → BF16, round to nearest even with integer arithmetic (u += 0x7FFF + lsb), the rule of
 * engine/dtype; a NaN becomes a quiet NaN with its sign and top payload bits; subnormals are kept. */
static SERL_HD uint16_t serl_bf16_round(uint32_t u) {
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* A float32-or-bf16 dtype the ops accept for activations. */
static inline int serl_dtype_ok(int32_t dt) { return dt == SERL_DTYPE_F32 || dt == SERL_DTYPE_BF16; }

static inline size_t serl_dtype_size(int32_t dt) { return dt == SERL_DTYPE_BF16 ? 2 : 4; }

static inline const char *serl_dtype_name(int32_t dt) {
    switch (dt) {
    case SERL_DTYPE_F32: return "f32";
    case SERL_DTYPE_I32: return "i32";
    case SERL_DTYPE_U64: return "u64";
    case SERL_DTYPE_BF16: return "bf16";
    case SERL_DTYPE_F16: return "f16";
    }
    return "unknown";
}

/* Returns from the calling op with SERL_E_ARG when cond is false. */
#define SERL_REQUIRE(cond, ...)                                                                         \
    do {                                                                                                \
        if (!(cond)) return serl_fail(ctx, SERL_E_ARG, __VA_ARGS__);                                    \
    } while (0)

/* Returns from the calling op with SERL_E_UNSUPPORTED unless dt is F32 or BF16. */
#define SERL_REQUIRE_DTYPE(op, name, dt)                                                                 \
    do {                                                                                                 \
        if (!serl_dtype_ok(dt))                                                                          \
            return serl_fail(ctx, SERL_E_UNSUPPORTED, "%s: %s dtype %d (%s) is not supported (want f32 or bf16)", \
                             op, name, (int)(dt), serl_dtype_name(dt));                                  \
    } while (0)

/* The start of every op: validates the context and the args struct's size word. */
#define SERL_ENTER_ARGS(ctxp, a, T)                                                                     \
    SERL_CTX *ctx = (SERL_CTX *)(ctxp);                                                                 \
    if (!ctx) return SERL_E_ARG;                                                                        \
    ctx->err[0] = 0;                                                                                    \
    if (!(a)) return serl_fail(ctx, SERL_E_ARG, #T ": args pointer is NULL");                           \
    if ((a)->size != sizeof(T))                                                                         \
        return serl_fail(ctx, SERL_E_ABI, #T ": args size %u, library expects %zu (Go/C layout mismatch)", \
                         (unsigned)(a)->size, sizeof(T))

#endif
