/* The SIMT emulator's cuBLAS: the entry points csrc/cuda/cublas_loader.cu binds, computed on the CPU
 * and queued on the emulated stream like any kernel (so a graph capture records them). Built as its own
 * libcublas.so.13 beside the emulated libserl_cuda.so, which loads it first; the loader's dlopen by
 * soname then finds it and exercises the same binding as on a GPU machine. Semantics as cuBLAS's:
 * column-major operands, op(A) m×k and op(B) k×n, float32 accumulation, C not read when beta is 0, one
 * rounding to a bf16 C (to nearest even), arguments checked with CUBLAS_STATUS_INVALID_VALUE. */
#include <cublas_v2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <new>
#include <system_error>
#include <thread>
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
    const simt_stream_api *api; /* the stream's runtime, or null without a stream */
};

size_t elem_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

/* The bytes an operand of rows × cols (column-major, leading dimension ld) in batch matrices stride
 * elements apart spans from its first element. */
size_t extent(cudaDataType t, long long rows, long long cols, long long ld, int batch, long long stride) {
    if (rows == 0 || cols == 0 || batch == 0) return 0;
    return (size_t)((batch - 1) * stride + (cols - 1) * ld + rows) * elem_size(t);
}

/* Whether every operand lies in device memory; if not, fails the work as a GPU's illegal read would. */
bool operands_ok(const Gemm &g) {
    if (!g.api) return true;
    const bool an = g.ta == CUBLAS_OP_N, bn = g.tb == CUBLAS_OP_N;
    const struct {
        const char *name;
        const void *p;
        size_t bytes;
    } ops[] = {{"A", g.A, extent(g.at, an ? g.m : g.k, an ? g.k : g.m, g.lda, g.batch, g.sa)},
               {"B", g.B, extent(g.bt, bn ? g.k : g.n, bn ? g.n : g.k, g.ldb, g.batch, g.sb)},
               {"C", g.C, extent(g.ct, g.m, g.n, g.ldc, g.batch, g.sc)}};
    for (const auto &o : ops) {
        if (o.bytes == 0 || g.api->device_range(o.p, o.bytes)) continue;
        char msg[200];
        snprintf(msg, sizeof msg, "simt cuBLAS: GEMM %d×%d×%d (batch %d): %s [%p, +%zu bytes) is not within one "
                 "allocation of device memory", g.m, g.n, g.k, g.batch, o.name, o.p, o.bytes);
        g.api->fault(msg);
        return false;
    }
    return true;
}

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

/* x·y in eight interleaved partial sums, added pairwise: a summation order of its own (cuBLAS fixes none)
 * that the compiler turns into vector operations, which a single running sum forbids. */
float dot(const float *x, const float *y, int k) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int l = 0;
    for (; l + 8 <= k; l += 8)
        for (int u = 0; u < 8; u++) acc[u] += x[l + u] * y[l + u];
    for (int u = 0; l < k; l++, u++) acc[u] += x[l] * y[l];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* C's columns [j0, j1) of one product: each element one dot product, so the split between threads
 * changes no result. */
void columns(const Gemm &g, const float *a, const float *b, long long oc, int j0, int j1) {
    for (int j = j0; j < j1; j++)
        for (int i = 0; i < g.m; i++) {
            const long long c = oc + i + (long long)j * g.ldc;
            float v = g.alpha * dot(&a[(size_t)i * g.k], &b[(size_t)j * g.k], g.k);
            if (g.beta != 0) v += g.beta * load(g.C, g.ct, c);
            store(g.C, g.ct, c, v);
        }
}

void run(void *arg) {
    const Gemm &g = *(const Gemm *)arg;
    if (!operands_ok(g)) return;
    std::vector<float> a((size_t)g.m * g.k), b((size_t)g.n * g.k); /* op(A) rows, op(B) columns */
    /* a second thread for products worth its start (about 50 µs): the machines that run the emulator
     * have few cores, and its kernels use one */
    const bool two = (double)g.m * g.n * g.k >= (1 << 20) && g.n >= 2;
    for (int z = 0; z < g.batch; z++) {
        const long long oa = z * g.sa, ob = z * g.sb, oc = z * g.sc;
        for (int i = 0; i < g.m; i++)
            for (int l = 0; l < g.k; l++)
                a[(size_t)i * g.k + l] = load(g.A, g.at, oa + (g.ta == CUBLAS_OP_N ? i + (long long)l * g.lda : l + (long long)i * g.lda));
        for (int j = 0; j < g.n; j++)
            for (int l = 0; l < g.k; l++)
                b[(size_t)j * g.k + l] = load(g.B, g.bt, ob + (g.tb == CUBLAS_OP_N ? l + (long long)j * g.ldb : j + (long long)l * g.ldb));
        if (!two) {
            columns(g, a.data(), b.data(), oc, 0, g.n);
            continue;
        }
        try {
            std::thread t(columns, std::cref(g), a.data(), b.data(), oc, g.n / 2, g.n);
            columns(g, a.data(), b.data(), oc, 0, g.n / 2);
            t.join();
        } catch (const std::system_error &) { /* no thread to be had: the same columns on this one */
            columns(g, a.data(), b.data(), oc, 0, g.n);
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
    task->api = s ? *(const simt_stream_api *const *)s : nullptr;
    if (!s) {
        run(task);
        delete task;
        return CUBLAS_STATUS_SUCCESS;
    }
    task->api->enqueue(s, run, task, release);
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
    Gemm g = {ta, tb, m, n, k, lda, ldb, ldc, 1, 0, 0, A, B, C, at, bt, ct, 0, 0, 0, nullptr};
    return gemm(h, g, compute, alpha, beta);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sa, const void *B, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    (void)algo;
    Gemm g = {ta, tb, m, n, k, lda, ldb, ldc, batch, 0, 0, A, B, C, at, bt, ct, sa, sb, sc, nullptr};
    return gemm(h, g, compute, alpha, beta);
}

} // extern "C"
