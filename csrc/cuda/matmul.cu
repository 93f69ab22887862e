/* serl_matmul through cuBLAS (bf16 or f32 inputs, float32 compute, no TF32: the f32 product must meet
 * the reference to 1e-4). Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands
 * are swapped and each keeps its transpose flag. Combinations cuBLAS has no kernel for (one operand bf16
 * and the other f32; f32 operands into a bf16 C) widen the bf16 side to f32 in scratch first: exact, and
 * a bf16 × f32 product is then formed in float32 as on the CPU. */
#include "common.cuh"
#include "cublas_loader.cuh"
#include "ops.cuh"

/* dst[b][r][c] = convert(src[b][r][c]) for a batch of rows×cols matrices with their own row and batch
 * strides (elements); with scale_only, dst = beta·dst in place (beta 0 writes zeros, never reads). */
__global__ void convert2d_kernel(const void *src, int sbf, int64_t lds, int64_t ss, void *dst, int dbf, int64_t ldd,
                                 int64_t sd, int rows, int cols, int64_t total) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = i % cols, r = (i / cols) % rows, b = i / ((int64_t)cols * rows);
        st(dst, dbf, b * sd + r * ldd + c, ld(src, sbf, b * ss + r * lds + c));
    }
}

__global__ void scale2d_kernel(void *c, int bf, int64_t ldc, int64_t sc, int rows, int cols, int64_t total, float beta) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t col = i % cols, r = (i / cols) % rows, b = i / ((int64_t)cols * rows);
        int64_t o = b * sc + r * ldc + col;
        st(c, bf, o, beta == 0.0f ? 0.0f : beta * ld(c, bf, o));
    }
}

static int32_t convert2d(serl_cuda_ctx *ctx, const void *src, int32_t sdt, int64_t lds, int64_t ss, void *dst,
                         int32_t ddt, int64_t ldd, int64_t sd, int rows, int cols, int batch) {
    int64_t total = (int64_t)batch * rows * cols;
    if (total == 0) return SERL_OK;
    convert2d_kernel<<<serl_blocks(total, 256), 256, 0, ctx->stream>>>(src, sdt == SERL_DTYPE_BF16, lds, ss, dst,
                                                                       ddt == SERL_DTYPE_BF16, ldd, sd, rows, cols, total);
    LAUNCH_CHECK("matmul convert");
    return SERL_OK;
}

static cudaDataType cuda_type(int32_t dt) { return dt == SERL_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* One cuBLAS call for validated, cuBLAS-supported dtypes (A and B alike; C f32, or bf16 with bf16 A, B). */
static int32_t gemm(serl_cuda_ctx *ctx, int ta, int tb, int m, int n, int k, float alpha, const void *A, int32_t adt,
                    int64_t lda, int64_t sa, const void *B, int32_t bdt, int64_t ldb, int64_t sb, float beta, void *C,
                    int32_t cdt, int64_t ldc, int64_t sc, int batch) {
    serl_cublas *bl = ctx->blas;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s;
    if (batch == 1)
        s = bl->gemm(bl->handle, opb, opa, n, m, k, &alpha, B, cuda_type(bdt), (int)ldb, A, cuda_type(adt), (int)lda,
                     &beta, C, cuda_type(cdt), (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else
        s = bl->gemm_batched(bl->handle, opb, opa, n, m, k, &alpha, B, cuda_type(bdt), (int)ldb, sb, A, cuda_type(adt),
                             (int)lda, sa, &beta, C, cuda_type(cdt), (int)ldc, sc, batch, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return serl_cublas_fail(ctx, s, "matmul: cublasGemmEx");
    return SERL_OK;
}

extern "C" SERL_API int32_t serl_matmul(void *ctxp, const serl_matmul_args *a) {
    SERL_ENTER(ctxp, a, serl_matmul_args);
    SERL_CHECK(serl_check_matmul(ctx, a));
    const int64_t m = a->m, n = a->n, k = a->k;
    /* stored shapes: A is m×k (k×m with trans_a), B is k×n (n×k with trans_b), C is m×n */
    const int64_t a_cols = a->trans_a ? m : k, b_cols = a->trans_b ? k : n;
    const int use_ab = k > 0 && a->alpha != 0.0f;
    const int batch = a->batch;
    if (!use_ab) {
        int64_t total = (int64_t)batch * m * n;
        scale2d_kernel<<<serl_blocks(total, 256), 256, 0, ctx->stream>>>(a->c, a->c_dtype == SERL_DTYPE_BF16, a->ldc,
                                                                         a->stride_c, (int)m, (int)n, total, a->beta);
        LAUNCH_CHECK("matmul scale");
        return SERL_OK;
    }
    const int F = SERL_DTYPE_F32, BF = SERL_DTYPE_BF16;
    int32_t adt = a->a_dtype, bdt = a->b_dtype, cdt = a->c_dtype;
    if (adt == bdt && (cdt == F || adt == BF))
        return gemm(ctx, a->trans_a, a->trans_b, (int)m, (int)n, (int)k, a->alpha, a->a, adt, a->lda, a->stride_a, a->b,
                    bdt, a->ldb, a->stride_b, a->beta, a->c, cdt, a->ldc, a->stride_c, batch);

    /* Widen to f32 in scratch: the bf16 operand(s), and C when it is bf16. Broadcast operands (stride
     * 0) are widened once. */
    const int64_t a_rows = a->trans_a ? k : m, b_rows = a->trans_b ? n : k;
    const int nba = a->stride_a ? batch : 1, nbb = a->stride_b ? batch : 1;
    size_t need_a = adt == BF ? (size_t)nba * a_rows * a_cols : 0, need_b = bdt == BF ? (size_t)nbb * b_rows * b_cols : 0;
    size_t need_c = cdt == BF ? (size_t)batch * m * n : 0;
    float *s = (float *)serl_scratch(ctx, sizeof(float) * (need_a + need_b + need_c) + 3 * 256);
    if (!s) return ctx->scratch_status;
    const void *A = a->a, *B = a->b;
    int64_t lda = a->lda, ldb = a->ldb, sa = a->stride_a, sb = a->stride_b;
    float *wa = s, *wb = wa + ((need_a + 63) & ~(size_t)63), *wc = wb + ((need_b + 63) & ~(size_t)63);
    int32_t st;
    if (need_a) {
        if ((st = convert2d(ctx, A, BF, lda, sa, wa, F, a_cols, a_rows * a_cols, (int)a_rows, (int)a_cols, nba))) return st;
        A = wa, lda = a_cols, sa = a->stride_a ? a_rows * a_cols : 0;
    }
    if (need_b) {
        if ((st = convert2d(ctx, B, BF, ldb, sb, wb, F, b_cols, b_rows * b_cols, (int)b_rows, (int)b_cols, nbb))) return st;
        B = wb, ldb = b_cols, sb = a->stride_b ? b_rows * b_cols : 0;
    }
    if (!need_c)
        return gemm(ctx, a->trans_a, a->trans_b, (int)m, (int)n, (int)k, a->alpha, A, F, lda, sa, B, F, ldb, sb, a->beta,
                    a->c, F, a->ldc, a->stride_c, batch);
    /* bf16 C: f32 C' = widen(C) (only when beta reads it), the product into C', one rounding back */
    if (a->beta != 0.0f &&
        (st = convert2d(ctx, a->c, BF, a->ldc, a->stride_c, wc, F, n, m * n, (int)m, (int)n, batch)))
        return st;
    if ((st = gemm(ctx, a->trans_a, a->trans_b, (int)m, (int)n, (int)k, a->alpha, A, F, lda, sa, B, F, ldb, sb, a->beta,
                   wc, F, n, m * n, batch)))
        return st;
    return convert2d(ctx, wc, F, n, m * n, a->c, BF, a->ldc, a->stride_c, (int)m, (int)n, batch);
}
