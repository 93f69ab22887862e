/* Context, errors, memory and introspection exports of the CPU library. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

SERL_API int32_t serl_abi_version(void) { return SERL_ABI_VERSION; }

SERL_API const char *serl_backend(void) { return "cpu"; }

int32_t serl_fail(serl_ctx *ctx, int32_t status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    if (ctx->cap) serl_graph_spoil(ctx, status); /* a failure during capture spoils the graph */
    return status;
}

/* Why the last serl_context_create failed; serl_last_error(NULL) returns it. */
static char create_err[256];

/* The best vector ISA the CPU has (SERL_SIMD_*), or -1 on one without AVX2 and FMA. */
static int cpu_simd(void) {
    int simd = -1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) simd = SERL_SIMD_AVX2;
    if (simd == SERL_SIMD_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        simd = SERL_SIMD_AVX512;
    if (simd == SERL_SIMD_AVX512 && __builtin_cpu_supports("avx512bf16")) simd = SERL_SIMD_AVX512BF16;
#endif
    return simd;
}

/* The vector ISA the kernels use: the CPU's best, except that the bf16 pair paths (vdpbf16ps: 32 bf16
 * multiply-adds into 16 float32 sums per instruction) are taken by default only on AMD. Zen 4 issues
 * vdpbf16ps zmm as often as vfmadd231ps zmm, twice float32's multiply-adds (the pair GEMM ran ~2× the
 * float32 one there); Intel's Sapphire and Emerald Rapids issue it at a quarter of vfmadd231ps's rate
 * (1.35 against 5.4 G instructions/s on one core of a Xeon, model 207), half float32's multiply-adds.
 * There the pair kernels ran 0.55-0.65× the widening ones (bf16 operands widened into float32 panels
 * and rows), a Qwen2.5-0.5B-shaped model decoded 64 sequences in bf16 at 138 tokens/s against 185-193
 * and trained at 49-50 tokens/s against 79-82; only a one-row GEMV with W in cache lost (0.67-0.89×),
 * and one-sequence decoding of the built-in model with it (0.86-0.94×). $SERL_SIMD (avx512bf16, avx512 or
 * avx2) picks a path the CPU has instead — avx512bf16 takes the pair paths on Intel too — so that
 * tests can run every code path on one machine; a path past the CPU's falls back to its best. Returns
 * -1 (create_err set) on a CPU without AVX2 and FMA — there is no scalar path — or an unknown SERL_SIMD. */
static int detect_simd(void) {
    const int best = cpu_simd();
    if (best < 0) {
        snprintf(create_err, sizeof create_err,
                 "serl cpu: this CPU lacks AVX2 and FMA, which the CPU library requires (x86-64-v3 or newer)");
        return -1;
    }
    int simd = best;
#if defined(__x86_64__)
    if (simd == SERL_SIMD_AVX512BF16 && !__builtin_cpu_is("amd")) simd = SERL_SIMD_AVX512;
#endif
    const char *cap = getenv("SERL_SIMD");
    if (cap && *cap) {
        if (!strcmp(cap, "avx2"))
            simd = SERL_SIMD_AVX2;
        else if (!strcmp(cap, "avx512"))
            simd = SERL_SIMD_AVX512;
        else if (!strcmp(cap, "avx512bf16"))
            simd = SERL_SIMD_AVX512BF16;
        else {
            snprintf(create_err, sizeof create_err, "serl cpu: SERL_SIMD=%.64s is not a path (want avx512bf16, avx512 or avx2)",
                     cap);
            return -1;
        }
        if (simd > best) simd = best;
    }
    return simd;
}

SERL_API void *serl_context_create(int32_t threads) {
    create_err[0] = 0;
    if (threads <= 0) {
        const char *env = getenv("SERL_THREADS");
        if (env && atoi(env) > 0) threads = atoi(env);
    }
    if (threads <= 0) threads = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = 1;
    if (threads > SERL_MAX_THREADS) threads = SERL_MAX_THREADS;
    int simd = detect_simd();
    if (simd < 0) return NULL;
    serl_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        snprintf(create_err, sizeof create_err, "serl cpu: out of memory for a context");
        return NULL;
    }
    ctx->simd = simd;
    ctx->pool = serl_pool_create(threads);
    if (!ctx->pool) {
        free(ctx);
        snprintf(create_err, sizeof create_err, "serl cpu: cannot start %d worker threads", threads);
        return NULL;
    }
    ctx->threads = threads;
    return ctx;
}

SERL_API void serl_context_destroy(void *p) {
    serl_ctx *ctx = p;
    if (!ctx) return;
    serl_graph_abandon(ctx);
    serl_pool_destroy(ctx->pool);
    for (int i = 0; i < SERL_MAX_THREADS; i++) serl_aligned_free(ctx->scratch[i].p);
    serl_aligned_free(ctx->shared.p);
    free(ctx);
}

SERL_API const char *serl_last_error(void *p) {
    serl_ctx *ctx = p;
    return ctx ? ctx->err : create_err;
}

static void *scratch_in(serl_scratch_buf *s, size_t bytes);

void *serl_scratch(serl_ctx *ctx, int worker, size_t bytes) { return scratch_in(&ctx->scratch[worker], bytes); }

void *serl_scratch_shared(serl_ctx *ctx, size_t bytes) { return scratch_in(&ctx->shared, bytes); }

static void *scratch_in(serl_scratch_buf *s, size_t bytes) {
    if (s->bytes >= bytes && s->p) return s->p;
    serl_aligned_free(s->p);
    s->bytes = 0;
    s->p = serl_aligned_alloc(bytes);
    if (s->p) s->bytes = bytes;
    return s->p;
}

static int64_t meminfo_kb(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    int64_t v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = atoll(line + kl + 1);
            break;
        }
    }
    fclose(f);
    return v;
}

static void cpu_name(char *out, size_t n) {
    snprintf(out, n, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(out, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

SERL_API int32_t serl_device_info(void *ctxp, serl_device_info_args *a) {
    SERL_ENTER(ctxp, a, serl_device_info_args);
    a->threads = ctx->threads;
    a->simd = ctx->simd;
    a->simd_cpu = cpu_simd();
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    a->total_memory = (int64_t)pages * psz;
    int64_t avail = meminfo_kb("MemAvailable");
    a->free_memory = avail >= 0 ? avail * 1024 : (int64_t)sysconf(_SC_AVPHYS_PAGES) * psz;
    cpu_name(a->name, sizeof a->name);
    return SERL_OK;
}

/* A tensor of 2 MiB or more is committed when it is allocated, as cudaMalloc commits device memory: its
 * pages are faulted in now, each worker over its share, so that memory the machine cannot give fails
 * here, naming the size (and a size past the available memory fails before trying), rather than at some
 * later first touch through the kernel's OOM killer; and no op pays page faults mid-run, where a first
 * training step of the 0.5B bench took 11.5 s and the next 9.4. */
typedef struct {
    char *p;
    size_t bytes;
    _Atomic int failed;
} commit_job;

#define COMMIT_CHUNK ((size_t)64 << 20)

static void commit_task(void *arg, int64_t t, int worker) {
    (void)worker;
    commit_job *j = arg;
    const size_t lo = (size_t)t * COMMIT_CHUNK, n = j->bytes - lo < COMMIT_CHUNK ? j->bytes - lo : COMMIT_CHUNK;
    if (madvise(j->p + lo, n, MADV_POPULATE_WRITE) == 0) return;
    if (errno != EINVAL) { /* ENOMEM, or a signal-worthy fault the kernel reports instead */
        atomic_store(&j->failed, 1);
        return;
    }
    /* a kernel before 5.14: a write to every page faults it in the same way */
    for (size_t b = 0; b < n; b += 4096) ((volatile char *)j->p)[lo + b] = 0;
}

static int commit(serl_ctx *ctx, void *p, size_t bytes) {
    commit_job j = {.p = p, .bytes = bytes};
    atomic_init(&j.failed, 0);
    serl_parallel(ctx, (int64_t)((bytes + COMMIT_CHUNK - 1) / COMMIT_CHUNK), commit_task, &j);
    return atomic_load(&j.failed) ? -1 : 0;
}

SERL_API void *serl_alloc(void *p, int64_t bytes) {
    serl_ctx *ctx = p;
    if (!ctx) return NULL;
    if (bytes < 0) {
        serl_fail(ctx, SERL_E_ARG, "serl_alloc: negative size %lld", (long long)bytes);
        return NULL;
    }
    if (ctx->cap) {
        serl_fail(ctx, SERL_E_STATE, "serl_alloc: cannot allocate while the context captures a graph");
        return NULL;
    }
    const int large = bytes >= (int64_t)SERL_HUGE_PAGE; /* committed when allocated */
    if (large) {
        const int64_t avail = meminfo_kb("MemAvailable");
        if (avail >= 0 && bytes > avail * 1024) {
            serl_fail(ctx, SERL_E_NOMEM, "serl_alloc: %lld bytes is more than the machine's available memory (%lld bytes)",
                      (long long)bytes, (long long)avail * 1024);
            return NULL;
        }
    }
    void *m = serl_aligned_alloc((size_t)bytes);
    if (!m) {
        serl_fail(ctx, SERL_E_NOMEM, "serl_alloc: out of memory allocating %lld bytes", (long long)bytes);
        return NULL;
    }
    if (large && commit(ctx, m, (size_t)bytes) != 0) {
        serl_aligned_free(m);
        serl_fail(ctx, SERL_E_NOMEM, "serl_alloc: out of memory committing %lld bytes", (long long)bytes);
        return NULL;
    }
    return m;
}

SERL_API void serl_free(void *ctxp, void *p) {
    serl_ctx *ctx = ctxp;
    if (ctx && ctx->cap && p) {
        /* refused, as on a GPU; the buffer stays allocated and the capture fails */
        serl_fail(ctx, SERL_E_STATE, "serl_free: cannot free while the context captures a graph");
        return;
    }
    serl_aligned_free(p);
}

typedef struct {
    char *dst;
    const char *src;
    int64_t bytes, parts;
} copy_job;

static void copy_task(void *arg, int64_t i, int worker) {
    (void)worker;
    copy_job *j = arg;
    int64_t lo, hi;
    serl_chunk(j->bytes, j->parts, i, &lo, &hi);
    memmove(j->dst + lo, j->src + lo, (size_t)(hi - lo));
}

SERL_API int32_t serl_copy(void *ctxp, const serl_copy_args *a) {
    SERL_ENTER(ctxp, a, serl_copy_args);
    SERL_CHECK(serl_check_copy(ctx, a));
    const char *s = a->src;
    char *d = a->dst;
    int overlap = (d < s + a->bytes) && (s < d + a->bytes);
    /* Large disjoint copies are split over the pool: one core cannot saturate memory bandwidth. */
    if (!overlap && a->bytes >= (4 << 20) && ctx->threads > 1) {
        copy_job j = {d, s, a->bytes, ctx->threads};
        serl_parallel(ctx, ctx->threads, copy_task, &j);
    } else {
        memmove(d, s, (size_t)a->bytes);
    }
    return SERL_OK;
}

SERL_API int32_t serl_memset(void *ctxp, const serl_memset_args *a) {
    SERL_ENTER(ctxp, a, serl_memset_args);
    SERL_CHECK(serl_check_memset(ctx, a));
    memset(a->dst, a->value, (size_t)a->bytes);
    return SERL_OK;
}

SERL_API int32_t serl_sync(void *ctxp) {
    serl_ctx *ctx = ctxp;
    if (!ctx) return SERL_E_ARG;
    ctx->err[0] = 0;
    if (ctx->cap) return serl_fail(ctx, SERL_E_STATE, "serl_sync: cannot wait while the context captures a graph");
    return SERL_OK;
}

/* ------------------------------------------------------------------------- cast */

typedef struct {
    const serl_cast_args *a;
    int64_t parts;
} cast_job;

static void cast_task(void *arg, int64_t i, int w) {
    (void)w;
    const cast_job *j = arg;
    const serl_cast_args *a = j->a;
    int64_t lo, hi;
    serl_chunk(a->n, j->parts, i, &lo, &hi);
    if (a->src_dtype == a->dst_dtype) {
        size_t es = serl_dtype_size(a->src_dtype);
        memmove((char *)a->dst + lo * es, (const char *)a->src + lo * es, (size_t)(hi - lo) * es);
    } else if (a->dst_dtype == SERL_DTYPE_BF16) {
        serl_f32_to_bf16_n((uint16_t *)a->dst + lo, (const float *)a->src + lo, hi - lo);
    } else {
        serl_bf16_to_f32_n((float *)a->dst + lo, (const uint16_t *)a->src + lo, hi - lo);
    }
}

SERL_API int32_t serl_cast(void *ctxp, const serl_cast_args *a) {
    SERL_ENTER(ctxp, a, serl_cast_args);
    SERL_CHECK(serl_check_cast(ctx, a));
    int64_t parts = a->n < (1 << 18) ? 1 : a->n / (1 << 17);
    if (parts > ctx->threads) parts = ctx->threads;
    cast_job j = {a, parts};
    serl_parallel(ctx, parts, cast_task, &j);
    return SERL_OK;
}
