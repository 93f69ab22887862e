/* The SIMT emulator's cuBLAS: the entry points csrc/cuda/cublas_loader.cu binds, computed on the CPU
 * and queued on the emulated stream like any kernel (so a graph capture records them). Built as its own
 * libcublas.so.13 beside the emulated libserl_cuda.so, which loads it first; the loader's dlopen by
 * soname then finds it and exercises the same binding as on a GPU machine. Semantics as cuBLAS's:
 * column-major operands, op(A) m×k and op(B) k×n, float32 accumulation, C not read when beta is 0, one
 * rounding to a bf16 C (to nearest even), arguments checked with CUBLAS_STATUS_INVALID_VALUE. */
#include <cublas_v2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <vector>

#include "stream.h"

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
};

namespace {

struct Gemm {
    cublasOperation_t ta, tb;
    int m, n, k, lda, ldb, ldc, batch;
    float alpha, beta;
    const void *A, *B;
    void *C;
    cudaDataType at, bt, ct;
    long long sa, sb, sc;
};

float load(const void *p, cudaDataType t, long long i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    const uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void store(void *p, cudaDataType t, long long i, float v) {
    if (t == CUDA_R_32F) {
        ((float *)p)[i] = v;
        return;
    }
    uint32_t u;
    memcpy(&u, &v, 4);
    uint16_t h;
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        h = (uint16_t)((u >> 16) | 0x40u); /* a quiet NaN, sign and top payload kept */
    else
        h = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    ((uint16_t *)p)[i] = h;
}

void run(void *arg) {
    const Gemm &g = *(const Gemm *)arg;
    std::vector<float> a((size_t)g.m * g.k), b((size_t)g.n * g.k); /* op(A) rows, op(B) columns */
    for (int z = 0; z < g.batch; z++) {
        const long long oa = z * g.sa, ob = z * g.sb, oc = z * g.sc;
        for (int i = 0; i < g.m; i++)
            for (int l = 0; l < g.k; l++)
                a[(size_t)i * g.k + l] = load(g.A, g.at, oa + (g.ta == CUBLAS_OP_N ? i + (long long)l * g.lda : l + (long long)i * g.lda));
        for (int j = 0; j < g.n; j++)
            for (int l = 0; l < g.k; l++)
                b[(size_t)j * g.k + l] = load(g.B, g.bt, ob + (g.tb == CUBLAS_OP_N ? l + (long long)j * g.ldb : j + (long long)l * g.ldb));
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++) {
                float s = 0;
                const float *x = &a[(size_t)i * g.k], *y = &b[(size_t)j * g.k];
                for (int l = 0; l < g.k; l++) s += x[l] * y[l];
                const long long c = oc + i + (long long)j * g.ldc;
                float v = g.alpha * s;
                if (g.beta != 0) v += g.beta * load(g.C, g.ct, c);
                store(g.C, g.ct, c, v);
            }
    }
}

void release(void *arg) { delete (Gemm *)arg; }

bool type_ok(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }

cublasStatus_t gemm(cublasHandle_t h, Gemm g, cublasComputeType_t compute, const void *alpha, const void *beta) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    /* cublasGemmEx's combinations for CUBLAS_COMPUTE_32F among these types: bf16 A and B with a bf16 or
     * f32 C; f32 A, B and C */
    if (compute != CUBLAS_COMPUTE_32F || !type_ok(g.at) || !type_ok(g.ct) || g.at != g.bt ||
        (g.at == CUDA_R_32F && g.ct != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const int arows = g.ta == CUBLAS_OP_N ? g.m : g.k, brows = g.tb == CUBLAS_OP_N ? g.k : g.n;
    if ((g.ta != CUBLAS_OP_N && g.ta != CUBLAS_OP_T) || (g.tb != CUBLAS_OP_N && g.tb != CUBLAS_OP_T) || g.m < 0 ||
        g.n < 0 || g.k < 0 || g.batch < 0 || g.lda < (arows > 1 ? arows : 1) || g.ldb < (brows > 1 ? brows : 1) ||
        g.ldc < (g.m > 1 ? g.m : 1) || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
    g.alpha = *(const float *)alpha, g.beta = *(const float *)beta; /* host pointer mode: read at the call */
    Gemm *task = new (std::nothrow) Gemm(g);
    if (!task) return CUBLAS_STATUS_ALLOC_FAILED;
    cudaStream_t s = h->stream;
    if (!s) {
        run(task);
        delete task;
        return CUBLAS_STATUS_SUCCESS;
    }
    (*(const simt_stream_api *const *)s)->enqueue(s, run, task, release);
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = new (std::nothrow) cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void *ws, size_t bytes) {
    (void)ws, (void)bytes;
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    (void)algo;
    Gemm g = {ta, tb, m, n, k, lda, ldb, ldc, 1, 0, 0, A, B, C, at, bt, ct, 0, 0, 0};
    return gemm(h, g, compute, alpha, beta);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sa, const void *B, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    (void)algo;
    Gemm g = {ta, tb, m, n, k, lda, ldb, ldc, batch, 0, 0, A, B, C, at, bt, ct, sa, sb, sc};
    return gemm(h, g, compute, alpha, beta);
}

} // extern "C"
