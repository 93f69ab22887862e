/* cuBLAS, loaded at run time (cublas_loader.cu): by soname, newest major first, through the _v2 entry
 * points whose signatures are unchanged from CUDA 11 to 13. Never linked: a static cuBLAS is 705 MB,
 * and linking one soname would tie the library to one CUDA major version. */
#ifndef SERL_CUDA_CUBLAS_LOADER_CUH
#define SERL_CUDA_CUBLAS_LOADER_CUH

#include <cublas_v2.h> /* types and enums only (nothing of it is called directly): their values are cuBLAS ABI */

#include "common.cuh"

typedef cublasStatus_t (*cublasCreate_fn)(cublasHandle_t *);
typedef cublasStatus_t (*cublasDestroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*cublasSetStream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*cublasGemmEx_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                          const void *, const void *, cudaDataType, int, const void *, cudaDataType,
                                          int, const void *, void *, cudaDataType, int, cublasComputeType_t,
                                          cublasGemmAlgo_t);
typedef cublasStatus_t (*cublasGemmStridedBatchedEx_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                                        int, int, const void *, const void *, cudaDataType, int,
                                                        long long, const void *, cudaDataType, int, long long,
                                                        const void *, void *, cudaDataType, int, long long, int,
                                                        cublasComputeType_t, cublasGemmAlgo_t);
typedef const char *(*cublasGetStatusString_fn)(cublasStatus_t);

typedef struct serl_cublas {
    cublasHandle_t handle;
    const char *soname; /* the library that was loaded */
    cublasDestroy_fn destroy;
    cublasGemmEx_fn gemm;
    cublasGemmStridedBatchedEx_fn gemm_batched;
    cublasGetStatusString_fn status_string; /* NULL before CUDA 11.4 */
} serl_cublas;

/* Loads cuBLAS (once per process) and makes a handle bound to ctx's stream: ctx->blas. Returns
 * SERL_E_DEVICE with the sonames tried and dlerror's words when no cuBLAS loads. */
int32_t serl_cublas_init(serl_cuda_ctx *ctx);
void serl_cublas_destroy(serl_cublas *b);

/* A failed cuBLAS status as SERL_E_DEVICE, with its name. */
int32_t serl_cublas_fail(serl_cuda_ctx *ctx, cublasStatus_t s, const char *what);

/* "libcublas.so.13, libcublas.so.12, libcublas.so.11": for messages. */
extern const char *const serl_cublas_sonames_text;

#endif
