/* cuBLAS loaded with dlopen by soname (see cublas_loader.cuh for why). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "cublas_loader.cuh"

static const char *const sonames[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"};
const char *const serl_cublas_sonames_text = "libcublas.so.13, libcublas.so.12, libcublas.so.11";

static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static void *lib_handle;
static const char *lib_soname;
static char lib_err[512];

static void *load_library(void) {
    pthread_mutex_lock(&lib_mu);
    if (!lib_handle) {
        int n = 0;
        lib_err[0] = 0;
        for (size_t i = 0; i < sizeof sonames / sizeof sonames[0]; i++) {
            void *h = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
            if (h) {
                lib_handle = h;
                lib_soname = sonames[i];
                break;
            }
            const char *e = dlerror();
            n += snprintf(lib_err + n, n < (int)sizeof lib_err ? sizeof lib_err - n : 0, "%s%s", n ? "; " : "",
                          e ? e : sonames[i]);
        }
    }
    void *h = lib_handle;
    pthread_mutex_unlock(&lib_mu);
    return h;
}

int32_t serl_cublas_fail(serl_cuda_ctx *ctx, cublasStatus_t s, const char *what) {
    const char *name = ctx->blas && ctx->blas->status_string ? ctx->blas->status_string(s) : NULL;
    return serl_fail(ctx, SERL_E_DEVICE, "%s: cuBLAS status %d%s%s", what, (int)s, name ? " " : "", name ? name : "");
}

int32_t serl_cublas_init(serl_cuda_ctx *ctx) {
    if (ctx->blas) return SERL_OK;
    void *h = load_library();
    if (!h)
        return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: cannot load cuBLAS (tried %s): %s", serl_cublas_sonames_text,
                         lib_err);
    cublasCreate_fn create = (cublasCreate_fn)dlsym(h, "cublasCreate_v2");
    cublasSetStream_fn set_stream = (cublasSetStream_fn)dlsym(h, "cublasSetStream_v2");
    serl_cublas b = {};
    b.soname = lib_soname;
    b.destroy = (cublasDestroy_fn)dlsym(h, "cublasDestroy_v2");
    b.gemm = (cublasGemmEx_fn)dlsym(h, "cublasGemmEx");
    b.gemm_batched = (cublasGemmStridedBatchedEx_fn)dlsym(h, "cublasGemmStridedBatchedEx");
    b.status_string = (cublasGetStatusString_fn)dlsym(h, "cublasGetStatusString");
    if (!create || !set_stream || !b.destroy || !b.gemm || !b.gemm_batched)
        return serl_fail(ctx, SERL_E_DEVICE,
                         "serl cuda: %s lacks one of cublasCreate_v2, cublasSetStream_v2, cublasDestroy_v2, "
                         "cublasGemmEx, cublasGemmStridedBatchedEx",
                         lib_soname);
    cublasStatus_t s = create(&b.handle);
    if (s != CUBLAS_STATUS_SUCCESS) return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: cublasCreate_v2 (%s): status %d", lib_soname, (int)s);
    s = set_stream(b.handle, ctx->stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        b.destroy(b.handle);
        return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: cublasSetStream_v2 (%s): status %d", lib_soname, (int)s);
    }
    /* Float32 accumulation with one rounding to the output, as the CPU library and the bf16 rule assume:
     * by default cuBLAS may reduce split-K partial sums in the output type (bf16), a second rounding per
     * split. No TF32 either (CUBLAS_DEFAULT_MATH keeps CUBLAS_COMPUTE_32F in full float32). */
    typedef cublasStatus_t (*set_math_fn)(cublasHandle_t, cublasMath_t);
    set_math_fn set_math = (set_math_fn)dlsym(h, "cublasSetMathMode");
    if (!set_math) {
        b.destroy(b.handle);
        return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: %s lacks cublasSetMathMode", lib_soname);
    }
    s = set_math(b.handle, (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    if (s != CUBLAS_STATUS_SUCCESS) {
        b.destroy(b.handle);
        return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: cublasSetMathMode (%s): status %d", lib_soname, (int)s);
    }
    /* A fixed workspace (after cublasSetStream, which resets it): cuBLAS must not allocate one inside a
     * graph capture. 32 MiB is NVIDIA's advice for Hopper (4 MiB before). */
    typedef cublasStatus_t (*set_workspace_fn)(cublasHandle_t, void *, size_t);
    set_workspace_fn set_ws = (set_workspace_fn)dlsym(h, "cublasSetWorkspace_v2");
    if (!set_ws) {
        b.destroy(b.handle);
        return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: %s lacks cublasSetWorkspace_v2, which a fixed workspace for graph capture needs",
                         lib_soname);
    }
    const size_t ws_bytes = 32u << 20;
    cudaError_t ce = cudaMalloc(&ctx->blas_workspace, ws_bytes);
    if (ce != cudaSuccess) {
        b.destroy(b.handle);
        ctx->blas_workspace = NULL;
        return serl_cuda_fail(ctx, ce, "serl cuda: cudaMalloc of cuBLAS's workspace");
    }
    s = set_ws(b.handle, ctx->blas_workspace, ws_bytes);
    if (s != CUBLAS_STATUS_SUCCESS) {
        b.destroy(b.handle);
        return serl_fail(ctx, SERL_E_DEVICE, "serl cuda: cublasSetWorkspace_v2 (%s): status %d", lib_soname, (int)s);
    }
    serl_cublas *p = (serl_cublas *)malloc(sizeof *p);
    if (!p) {
        b.destroy(b.handle);
        return serl_fail(ctx, SERL_E_NOMEM, "serl cuda: out of host memory");
    }
    *p = b;
    ctx->blas = p;
    return SERL_OK;
}

void serl_cublas_destroy(serl_cublas *b) {
    if (!b) return;
    b->destroy(b->handle);
    free(b);
}
