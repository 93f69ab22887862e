/* The SIMT emulator's CUDA runtime: the part of the CUDA runtime API that csrc/cuda calls, on the CPU.
 * One device whose memory is host memory (each allocation ends at a guard page, so a kernel reading
 * past a buffer faults rather than reading a neighbour); streams run their work at once, in order, and
 * record it instead while they capture a graph, which a graph launch replays. The device reports the
 * limits of an H200 where kernels are checked against them (1024 threads a block, 48 KiB of dynamic
 * shared memory unless raised, at most 227 KiB; grid.y and grid.z ≤ 65535) and SERL_SIMT_MEMORY_MB
 * (default 4096) of memory. The emulated cuBLAS (cublas.cpp) beside this library is loaded first, by
 * path, so that csrc/cuda/cublas_loader.cu's dlopen by soname finds it. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "internal.h"
#include "simt.h"
#include "stream.h"

namespace {

const size_t kDefaultDynSmem = 48 << 10, kOptinSmem = 227 << 10;

thread_local cudaError_t last_err = cudaSuccess;
/* the emulator's own words for the last error it recorded on this thread, and that error's code */
thread_local std::string last_msg;
thread_local cudaError_t last_msg_code = cudaSuccess;
thread_local bool grid_faulted;

struct Graph {
    std::vector<std::function<void()>> tasks;
};

struct Stream {
    const simt_stream_api *api;
    bool capturing, invalid;
    Graph *graph;
};

std::mutex mem_mu;
struct Alloc {
    void *base;
    size_t len, size;
};
std::map<void *, Alloc> allocs;
std::map<void *, size_t> host_allocs; /* cudaMallocHost: pinned host memory, which kernels may use too */
size_t used;
std::map<const void *, int> dyn_smem_max;

size_t total_memory() {
    static size_t total = [] {
        const char *e = getenv("SERL_SIMT_MEMORY_MB");
        long long mb = e && *e ? atoll(e) : 4096;
        return (size_t)(mb > 0 ? mb : 4096) << 20;
    }();
    return total;
}

cudaError_t fail(cudaError_t e, const std::string &msg = "") {
    last_err = e;
    last_msg = msg;
    last_msg_code = e;
    return e;
}

/* The largest dynamic shared memory a kernel may use: 48 KiB, or what cudaFuncSetAttribute raised it to. */
size_t max_dynamic_smem(const void *fn) {
    std::lock_guard<std::mutex> l(mem_mu);
    auto it = dyn_smem_max.find(fn);
    return it == dyn_smem_max.end() ? kDefaultDynSmem : (size_t)it->second;
}

void run_or_record(cudaStream_t s, std::function<void()> task) {
    Stream *st = (Stream *)s;
    if (st && st->capturing) {
        st->graph->tasks.push_back(std::move(task));
        return;
    }
    task();
}

void enqueue_c(cudaStream_t s, void (*fn)(void *), void *arg, void (*release)(void *)) {
    std::shared_ptr<void> owned(arg, release ? release : [](void *) {});
    run_or_record(s, [fn, owned]() { fn(owned.get()); });
}

/* Whether [p, p + bytes) lies in one block of m (keyed by start, valued by size). Under mem_mu. */
template <class M, class F> bool within(const M &m, const void *p, size_t bytes, F size_of) {
    auto it = m.upper_bound((void *)p);
    if (it == m.begin()) return false;
    --it;
    const char *b = (const char *)it->first, *q = (const char *)p;
    return q >= b && bytes <= size_of(it->second) && (size_t)(q - b) <= size_of(it->second) - bytes;
}

int device_range_c(const void *p, size_t bytes) {
    std::lock_guard<std::mutex> l(mem_mu);
    return within(allocs, p, bytes, [](const Alloc &a) { return a.size; }) ||
           within(host_allocs, p, bytes, [](size_t n) { return n; });
}

void fault_c(const char *msg) { simt::launch_fault(msg); }

const simt_stream_api stream_api = {enqueue_c, device_range_c, fault_c};

/* A copy's or a memset's pointer that the device cannot use, as cudaMemcpyAsync and cudaMemsetAsync
 * refuse it: a kind that says device memory for host memory. */
cudaError_t device_arg(const char *call, const char *which, const void *p, size_t n) {
    if (n == 0 || device_range_c(p, n)) return cudaSuccess;
    char buf[200];
    snprintf(buf, sizeof buf, "simt: %s: %s [%p, +%zu) is not within memory from cudaMalloc or cudaMallocHost", call,
             which, p, n);
    return fail(cudaErrorInvalidValue, buf);
}

/* The emulated cuBLAS beside this library, loaded by path and kept global so that a later dlopen of its
 * soname (libcublas.so.13) finds it. */
__attribute__((constructor)) void preload_cublas() {
    Dl_info info;
    if (!dladdr((void *)&preload_cublas, &info) || !info.dli_fname) return;
    std::string dir(info.dli_fname);
    size_t slash = dir.rfind('/');
    dir = slash == std::string::npos ? "." : dir.substr(0, slash);
    dlopen((dir + "/libcublas.so.13").c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
}

/* Device memory comes from one reserved range of addresses, four times the emulated memory (room for
 * each allocation's guard page and for fragmentation), so that the race check tells a device address
 * by one comparison and keeps its shadow beside it (race.cpp). An allocation is the first free run of
 * pages that holds it and its guard page; a freed one goes back to PROT_NONE, its pages to the kernel. */
char *region;
size_t region_len;
std::map<size_t, size_t> free_runs; /* offset → length in the region, coalesced; under mem_mu */

bool reserve_region() {
    if (region) return true;
    region_len = 4 * total_memory();
    void *r = mmap(NULL, region_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return false;
    region = (char *)r;
    free_runs[0] = region_len;
    simt::race_region(region, region_len);
    return true;
}

void release_run(size_t off, size_t len) {
    mmap(region + off, len, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    simt::race_release(region + off, len);
    auto next = free_runs.lower_bound(off);
    if (next != free_runs.end() && off + len == next->first) len += next->second, next = free_runs.erase(next);
    if (next != free_runs.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second == off) {
            prev->second += len;
            return;
        }
    }
    free_runs[off] = len;
}

} // namespace

namespace simt {

void enqueue(cudaStream_t s, std::function<void()> task) { run_or_record(s, std::move(task)); }

void launch_fault(const std::string &msg) {
    grid_faulted = true;
    fail(cudaErrorLaunchFailure, msg);
}

bool pointer_ok(const char *kernel, int index, const void *p, size_t align) {
    if (!p) return true;
    const char *why = nullptr;
    if ((uintptr_t)p % align)
        why = "is not aligned for its type";
    else if (!device_range_c(p, 0))
        why = "is not in memory from cudaMalloc or cudaMallocHost";
    if (!why) return true;
    char buf[300];
    snprintf(buf, sizeof buf, "simt: %s: pointer argument %d (%p, alignment %zu) %s", kernel, index, p, align, why);
    launch_fault(buf);
    return false;
}

bool launch_ok(dim3 grid, dim3 block, size_t shm, const void *fn, const char *name) {
    char why[200] = "";
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64)
        snprintf(why, sizeof why, "block (%u,%u,%u): want 1..1024 threads, z ≤ 64", block.x, block.y, block.z);
    else if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
        snprintf(why, sizeof why, "grid (%u,%u,%u): want x in 1..2^31-1, y and z in 1..65535", grid.x, grid.y, grid.z);
    else if (shm > max_dynamic_smem(fn))
        snprintf(why, sizeof why, "%zu bytes of dynamic shared memory, more than the kernel's limit of %zu", shm,
                 max_dynamic_smem(fn));
    if (why[0]) {
        fail(cudaErrorInvalidConfiguration, std::string("simt: ") + name + ": invalid launch: " + why);
        return false;
    }
    std::string res;
    if (!resources_ok(fn, (unsigned)threads, shm, res)) {
        fail(cudaErrorLaunchOutOfResources, std::string("simt: ") + name + ": invalid launch: " + res);
        return false;
    }
    return true;
}

} // namespace simt

extern "C" {

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_err;
    last_err = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_err; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    if (e != cudaSuccess && e == last_msg_code && !last_msg.empty()) return last_msg.c_str();
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalState: return "the operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    default: return "unknown error";
    }
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int *device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
    if (device != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "serl SIMT emulator (CPU)");
    p->totalGlobalMem = total_memory();
    p->sharedMemPerBlock = kDefaultDynSmem;
    p->sharedMemPerBlockOptin = kOptinSmem;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    /* SERL_SIMT_SM=75 reports compute capability 7.5: the library's refusal of a GPU older than sm_80
     * is tested that way (kernels/cuda_test.go) */
    const char *sm = getenv("SERL_SIMT_SM");
    const int cc = sm && *sm ? atoi(sm) : 90;
    p->major = cc / 10, p->minor = cc % 10;
    /* as NVIDIA's parts: float64 at half the float32 rate on sm_80 and sm_90, 1/32 or 1/64 elsewhere */
    p->singleToDoublePrecisionPerfRatio = cc == 80 || cc == 90 ? 2 : 64;
    p->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    std::lock_guard<std::mutex> l(mem_mu);
    *total = total_memory();
    *free_bytes = total_memory() - used;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaFuncSetAttribute(const void *fn, enum cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > kOptinSmem) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> l(mem_mu);
    dyn_smem_max[fn] = value;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t size) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (size + page - 1) / page * page, len = body + page;
    std::lock_guard<std::mutex> l(mem_mu);
    if (size > total_memory() - used || !reserve_region()) return fail(cudaErrorMemoryAllocation);
    auto run = free_runs.begin();
    while (run != free_runs.end() && run->second < len) ++run;
    if (run == free_runs.end()) return fail(cudaErrorMemoryAllocation, "simt: cudaMalloc: the device's address range is fragmented");
    const size_t off = run->first, rest = run->second - len;
    free_runs.erase(run);
    if (rest) free_runs[off + len] = rest;
    char *base = region + off;
    if (mmap(base, body, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED) {
        release_run(off, len);
        return fail(cudaErrorMemoryAllocation);
    }
    /* 256-byte aligned as cudaMalloc's, and as close to the guard page as that allows */
    char *q = base + body - ((size + 255) & ~(size_t)255);
    allocs[q] = Alloc{base, len, size};
    used += size;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> l(mem_mu);
    auto it = allocs.find(p);
    if (it == allocs.end()) return fail(cudaErrorInvalidValue, "simt: cudaFree of a pointer cudaMalloc did not return");
    release_run((size_t)((char *)it->second.base - region), it->second.len);
    used -= it->second.size;
    allocs.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t size) {
    *p = aligned_alloc(256, (size + 255) & ~(size_t)255);
    if (!*p) return fail(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> l(mem_mu);
    host_allocs[*p] = size;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    {
        std::lock_guard<std::mutex> l(mem_mu);
        if (!host_allocs.erase(p))
            return fail(cudaErrorInvalidValue, "simt: cudaFreeHost of a pointer cudaMallocHost did not return");
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t s) {
    cudaError_t e = cudaSuccess;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) e = device_arg("cudaMemcpyAsync", "dst", dst, n);
    if (e == cudaSuccess && (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice))
        e = device_arg("cudaMemcpyAsync", "src", src, n);
    if (e != cudaSuccess) return e;
    run_or_record(s, [=]() { memmove(dst, src, n); });
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    if (cudaError_t e = device_arg("cudaMemsetAsync", "the buffer", p, n)) return e;
    run_or_record(s, [=]() { memset(p, v, n); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    (void)flags;
    Stream *st = new (std::nothrow) Stream{&stream_api, false, false, nullptr};
    if (!st) return fail(cudaErrorMemoryAllocation);
    *s = (cudaStream_t)st;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    Stream *st = (Stream *)s;
    if (st) delete st->graph;
    delete st;
    return cudaSuccess;
}

/* Work ran when it was queued; a wait inside a capture breaks the capture, as on a GPU. */
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    Stream *st = (Stream *)s;
    if (st && st->capturing) {
        st->invalid = true;
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode) {
    (void)mode;
    Stream *st = (Stream *)s;
    if (!st) return fail(cudaErrorStreamCaptureUnsupported);
    if (st->capturing) return fail(cudaErrorIllegalState);
    st->capturing = true, st->invalid = false, st->graph = new Graph();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    Stream *st = (Stream *)s;
    *g = NULL;
    if (!st || !st->capturing) return fail(cudaErrorIllegalState);
    Graph *graph = st->graph;
    st->capturing = false, st->graph = nullptr;
    if (st->invalid) {
        delete graph;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *g = (cudaGraph_t)graph;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete (Graph *)g;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *exec, cudaGraph_t g, unsigned long long flags) {
    (void)flags;
    *exec = (cudaGraphExec_t) new Graph(*(Graph *)g);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete (Graph *)exec;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    Graph *g = (Graph *)exec;
    Stream *st = (Stream *)s;
    if (st && st->capturing) { /* a graph launched into a capture becomes part of it */
        for (auto &t : g->tasks) st->graph->tasks.push_back(t);
        return cudaSuccess;
    }
    grid_faulted = false;
    for (auto &t : g->tasks) {
        t();
        if (grid_faulted) return cudaErrorLaunchFailure;
    }
    return cudaSuccess;
}

} // extern "C"
