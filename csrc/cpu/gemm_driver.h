/* The blocked product C = alpha·op(A)·op(B) + beta·C into a float32 C, one driver for every packed
 * element type: matmul.c runs it on float32 panels (bf16 operands widened while packed), matmul_bf16.c on
 * bf16 k-pairs for vdpbf16ps. What differs between them is a serl_gemm_kernel: the micro-tile, the bytes a
 * packed panel takes per k element, the pack function and the microkernel, each called once per panel or
 * micro-tile (thousands of multiply-adds), so the indirect calls cost nothing measurable. */
#ifndef SERL_CPU_GEMM_DRIVER_H
#define SERL_CPU_GEMM_DRIVER_H

#include <stdint.h>

#include "internal.h"

/* One operand as the packing sees it: lane i (a row of A, a column of B) at depth p is element
 * i·ld + p of ptr when along_k (A not transposed, B transposed), else element p·ld + i. */
typedef struct {
    const void *ptr;
    int64_t ld;
    int32_t dtype;
    int along_k;
} serl_gemm_operand;

/* Packs lanes lane0..lane0+rv-1 of src over depths pc..pc+kc-1 into the R-lane micro-panel dst (lanes
 * rv..R-1 zero), in the layout the kernel's ukr reads. */
typedef void (*serl_gemm_pack_fn)(void *dst, const serl_gemm_operand *src, int64_t lane0, int64_t pc, int R, int rv,
                                  int64_t kc);

/* C[mr×nr] = alpha·a·b + beta·C for an mr×nr part of a micro-tile, a and b packed panels of depth kc (in k
 * elements, whatever the packing groups); beta == 0 never reads C. */
typedef void (*serl_gemm_ukr_fn)(int64_t kc, const void *a, const void *b, float *c, int64_t ldc, float alpha,
                                 float beta, int mr, int nr);

typedef struct {
    int mr, nr;      /* micro-tile: lanes of an A panel (rows of C) and of a B panel (columns of C) */
    int elt_bytes;   /* bytes of a packed panel per k element and lane: 4 (float32), 2 (bf16 pairs) */
    int kc_even;     /* slice depths even, so that k-pairs never straddle two slices */
    serl_gemm_pack_fn pack;
    serl_gemm_ukr_fn ukr;
} serl_gemm_kernel;

/* One product, k > 0, C row-major with row stride ldc; A is m×k (k×m when ta), B k×n (n×k when tb), of
 * dtypes a_dt and b_dt as kern->pack understands them. C is float32 or bf16 (c_dt): a bf16 C is summed in
 * a float32 copy of one M×N block at a time and rounded once, each tile when its last K slice is done.
 * Returns 0, or -1 when scratch memory failed. */
int serl_gemm_blocked(serl_ctx *ctx, const serl_gemm_kernel *kern, int ta, int tb, int64_t m, int64_t n, int64_t k,
                      float alpha, const void *A, int32_t a_dt, int64_t lda, const void *B, int32_t b_dt, int64_t ldb,
                      float beta, void *C, int32_t c_dt, int64_t ldc);

#endif
