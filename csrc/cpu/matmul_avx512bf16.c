/* AVX-512 BF16 microkernel of the bf16 matrix product (driver and packing in matmul_bf16.c).
 *
 * 12×32 like the float32 kernel, but each k step is a PAIR of k: vdpbf16ps multiplies 16 lanes of bf16
 * pairs and adds both products into float32 lanes, twice the multiply-adds of an FMA per instruction.
 * A is packed as MR 32-bit pairs per k-pair (broadcast to every lane), B as NR 32-bit pairs per k-pair
 * (two zmm). C is float32; the driver rounds a bf16 C once, after the whole depth.
 * Like the instruction itself, products of subnormal bf16 values count as zero. */
#include <immintrin.h>

#include "internal.h"
#include "tile_avx512.h"

#define MR 12
#define NR 32

void serl_bgemm_ukr_avx512bf16(int64_t kp, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, float alpha,
                               float beta, int mr, int nr) {
    __m512 c0[MR], c1[MR];
    serl_start_tile_12x32(c, ldc, mr, c0, c1);
#pragma GCC unroll 2
    for (int64_t p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)b), b1 = (__m512bh)_mm512_load_si512((const void *)(b + 16));
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
        a += MR;
        b += NR;
    }
    serl_store_tile_12x32(c, ldc, alpha, beta, mr, nr, c0, c1);
}
