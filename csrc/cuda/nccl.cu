/* NCCL, loaded at run time: SERL_NCCL_LIB (a path) when set, else the soname libnccl.so.2 (on GPU
 * machines often only inside PyTorch's site-packages nvidia/nccl/lib, so the variable matters). Never
 * linked: NCCL is not in Debian, and its version must match the machine's driver and peers, not ours.
 * The few types and enums used are declared here; their values are NCCL's stable ABI (nccl.h since 2.0).
 * This shim exists because ncclCommInitRank takes its 128-byte ncclUniqueId by value, which purego
 * cannot pass. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "common.cuh"

typedef struct ncclComm *ncclComm_t;
typedef struct {
    char internal[SERL_NCCL_ID_BYTES];
} ncclUniqueId;
typedef int ncclResult_t; /* ncclSuccess 0, ncclInProgress 7 */
enum { ncclSuccess = 0, ncclInProgress = 7 };
enum { ncclUint8 = 1, ncclFloat32 = 7 }; /* ncclDataType_t */
enum { ncclSum = 0 };                    /* ncclRedOp_t */

typedef ncclResult_t (*ncclGetUniqueId_fn)(ncclUniqueId *);
typedef ncclResult_t (*ncclCommInitRank_fn)(ncclComm_t *, int, ncclUniqueId, int);
typedef ncclResult_t (*ncclAllReduce_fn)(const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t);
typedef ncclResult_t (*ncclBroadcast_fn)(const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t);
typedef ncclResult_t (*ncclCommDestroy_fn)(ncclComm_t);
typedef ncclResult_t (*ncclCommAbort_fn)(ncclComm_t);
typedef ncclResult_t (*ncclCommGetAsyncError_fn)(ncclComm_t, ncclResult_t *);
typedef const char *(*ncclGetErrorString_fn)(ncclResult_t);

static struct {
    ncclGetUniqueId_fn get_unique_id;
    ncclCommInitRank_fn init_rank;
    ncclAllReduce_fn all_reduce;
    ncclBroadcast_fn broadcast;
    ncclCommDestroy_fn destroy;
    ncclCommAbort_fn abort;
    ncclCommGetAsyncError_fn async_error;
    ncclGetErrorString_fn error_string;
} nccl;

static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static int lib_loaded;
static char lib_err[768];

/* Loads NCCL once per process; on failure lib_err says what was tried and why, and a later call
 * tries again (SERL_NCCL_LIB may have been fixed). */
static int load_nccl(void) {
    pthread_mutex_lock(&lib_mu);
    if (!lib_loaded) {
        const char *env = getenv("SERL_NCCL_LIB");
        const char *name = env && *env ? env : "libnccl.so.2";
        void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(lib_err, sizeof lib_err, "cannot load NCCL (tried %s%s): %s; set SERL_NCCL_LIB to libnccl.so.2's path",
                     name, env && *env ? ", from SERL_NCCL_LIB" : "", e ? e : "dlopen failed");
        } else {
#define SYM(field, s) nccl.field = (decltype(nccl.field))dlsym(h, s)
            SYM(get_unique_id, "ncclGetUniqueId");
            SYM(init_rank, "ncclCommInitRank");
            SYM(all_reduce, "ncclAllReduce");
            SYM(broadcast, "ncclBroadcast");
            SYM(destroy, "ncclCommDestroy");
            SYM(abort, "ncclCommAbort");
            SYM(async_error, "ncclCommGetAsyncError");
            SYM(error_string, "ncclGetErrorString");
#undef SYM
            if (!nccl.get_unique_id || !nccl.init_rank || !nccl.all_reduce || !nccl.broadcast || !nccl.destroy ||
                !nccl.abort || !nccl.async_error || !nccl.error_string) {
                snprintf(lib_err, sizeof lib_err,
                         "%s lacks one of ncclGetUniqueId, ncclCommInitRank, ncclAllReduce, ncclBroadcast, "
                         "ncclCommDestroy, ncclCommAbort, ncclCommGetAsyncError, ncclGetErrorString (NCCL < 2.4?)",
                         name);
                dlclose(h);
            } else {
                lib_loaded = 1;
            }
        }
    }
    int ok = lib_loaded;
    pthread_mutex_unlock(&lib_mu);
    return ok;
}

#define NCCL_LOAD(op)                                                                                   \
    if (!load_nccl()) return serl_fail(ctx, SERL_E_DEVICE, op ": %s", lib_err)

static int32_t nccl_fail(serl_cuda_ctx *ctx, const char *op, const char *call, ncclResult_t r) {
    return serl_fail(ctx, SERL_E_DEVICE, "%s: %s: NCCL error %d (%s)", op, call, (int)r, nccl.error_string(r));
}

#define NCCL_TRY(op, name, call)                                                                        \
    do {                                                                                                \
        ncclResult_t r_ = (call);                                                                       \
        if (r_ != ncclSuccess) return nccl_fail(ctx, op, name, r_);                                     \
    } while (0)

SERL_API int32_t serl_nccl_unique_id(void *ctxp, const serl_nccl_unique_id_args *a) {
    SERL_ENTER(ctxp, a, serl_nccl_unique_id_args);
    SERL_REQUIRE(a->id, "serl_nccl_unique_id: id is NULL");
    NCCL_LOAD("serl_nccl_unique_id");
    ncclUniqueId id;
    NCCL_TRY("serl_nccl_unique_id", "ncclGetUniqueId", nccl.get_unique_id(&id));
    memcpy(a->id, id.internal, sizeof id.internal);
    return SERL_OK;
}

SERL_API int32_t serl_nccl_init(void *ctxp, const serl_nccl_init_args *a) {
    SERL_ENTER(ctxp, a, serl_nccl_init_args);
    SERL_REQUIRE(a->id && a->comm, "serl_nccl_init: id or comm is NULL");
    SERL_REQUIRE(a->nranks >= 1 && a->rank >= 0 && a->rank < a->nranks, "serl_nccl_init: rank %d of %d ranks",
                 (int)a->rank, (int)a->nranks);
    NCCL_LOAD("serl_nccl_init");
    ncclUniqueId id;
    memcpy(id.internal, a->id, sizeof id.internal);
    ncclComm_t comm = NULL;
    NCCL_TRY("serl_nccl_init", "ncclCommInitRank", nccl.init_rank(&comm, a->nranks, id, a->rank));
    *a->comm = comm;
    return SERL_OK;
}

SERL_API int32_t serl_nccl_all_reduce(void *ctxp, const serl_nccl_all_reduce_args *a) {
    SERL_ENTER(ctxp, a, serl_nccl_all_reduce_args);
    SERL_REQUIRE(a->comm && a->x, "serl_nccl_all_reduce: comm or x is NULL");
    SERL_REQUIRE(a->n >= 0, "serl_nccl_all_reduce: n = %lld", (long long)a->n);
    NCCL_LOAD("serl_nccl_all_reduce");
    if (a->n == 0) return SERL_OK;
    NCCL_TRY("serl_nccl_all_reduce", "ncclAllReduce",
             nccl.all_reduce(a->x, a->x, (size_t)a->n, ncclFloat32, ncclSum, (ncclComm_t)a->comm, ctx->stream));
    return SERL_OK;
}

SERL_API int32_t serl_nccl_broadcast(void *ctxp, const serl_nccl_broadcast_args *a) {
    SERL_ENTER(ctxp, a, serl_nccl_broadcast_args);
    SERL_REQUIRE(a->comm && a->x, "serl_nccl_broadcast: comm or x is NULL");
    SERL_REQUIRE(a->bytes >= 0 && a->root >= 0, "serl_nccl_broadcast: bytes = %lld, root = %d", (long long)a->bytes,
                 (int)a->root);
    NCCL_LOAD("serl_nccl_broadcast");
    if (a->bytes == 0) return SERL_OK;
    NCCL_TRY("serl_nccl_broadcast", "ncclBroadcast",
             nccl.broadcast(a->x, a->x, (size_t)a->bytes, ncclUint8, a->root, (ncclComm_t)a->comm, ctx->stream));
    return SERL_OK;
}

SERL_API int32_t serl_nccl_poll(void *ctxp, const serl_nccl_poll_args *a) {
    SERL_ENTER(ctxp, a, serl_nccl_poll_args);
    SERL_REQUIRE(a->comm && a->done, "serl_nccl_poll: comm or done is NULL");
    NCCL_LOAD("serl_nccl_poll");
    *a->done = 0;
    cudaError_t e = cudaStreamQuery(ctx->stream);
    if (e == cudaSuccess) {
        *a->done = 1;
        return SERL_OK;
    }
    if (e != cudaErrorNotReady) return serl_cuda_fail(ctx, e, "serl_nccl_poll: cudaStreamQuery");
    /* "not ready" may be left as the thread's last error (PyTorch clears it after every query too): the
     * next op's launch check would report it as its own failure */
    if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
    ncclResult_t r = ncclSuccess;
    NCCL_TRY("serl_nccl_poll", "ncclCommGetAsyncError", nccl.async_error((ncclComm_t)a->comm, &r));
    if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(ctx, "serl_nccl_poll", "ncclCommGetAsyncError", r);
    return SERL_OK;
}

SERL_API int32_t serl_nccl_free(void *ctxp, const serl_nccl_free_args *a) {
    SERL_ENTER(ctxp, a, serl_nccl_free_args);
    if (!a->comm) return SERL_OK;
    NCCL_LOAD("serl_nccl_free");
    if (a->abort)
        NCCL_TRY("serl_nccl_free", "ncclCommAbort", nccl.abort((ncclComm_t)a->comm));
    else
        NCCL_TRY("serl_nccl_free", "ncclCommDestroy", nccl.destroy((ncclComm_t)a->comm));
    return SERL_OK;
}
