/* NCCL entry points: the CPU library exports serl.h's whole ABI, and NCCL needs CUDA device memory, so
 * every one of them is SERL_E_UNSUPPORTED here. */
#include "internal.h"

#define NCCL_UNSUPPORTED(op)                                                                            \
    SERL_ENTER(ctxp, a, op##_args);                                                                     \
    return serl_fail(ctx, SERL_E_UNSUPPORTED, #op ": NCCL needs the CUDA library (--device cuda)")

SERL_API int32_t serl_nccl_unique_id(void *ctxp, const serl_nccl_unique_id_args *a) {
    NCCL_UNSUPPORTED(serl_nccl_unique_id);
}
SERL_API int32_t serl_nccl_init(void *ctxp, const serl_nccl_init_args *a) { NCCL_UNSUPPORTED(serl_nccl_init); }
SERL_API int32_t serl_nccl_all_reduce(void *ctxp, const serl_nccl_all_reduce_args *a) {
    NCCL_UNSUPPORTED(serl_nccl_all_reduce);
}
SERL_API int32_t serl_nccl_broadcast(void *ctxp, const serl_nccl_broadcast_args *a) {
    NCCL_UNSUPPORTED(serl_nccl_broadcast);
}
SERL_API int32_t serl_nccl_poll(void *ctxp, const serl_nccl_poll_args *a) { NCCL_UNSUPPORTED(serl_nccl_poll); }
SERL_API int32_t serl_nccl_free(void *ctxp, const serl_nccl_free_args *a) { NCCL_UNSUPPORTED(serl_nccl_free); }
