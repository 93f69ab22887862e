/* The caching device allocator: cudaMalloc is slow and synchronises the device, so freed blocks are
 * kept by size and handed out again. Everything runs on the context's one stream, so a block freed
 * after an op was queued can be reused by a later op without a wait. Never managed memory. */
#include <map>
#include <unordered_map>

#include "common.cuh"
#include "pool.cuh"

struct serl_pool {
    std::unordered_map<void *, size_t> live; /* pointer → rounded size */
    std::multimap<size_t, void *> cached;    /* rounded size → free block */
    size_t cached_bytes = 0;
};

static size_t round_size(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes < (1u << 20)) return (bytes + 511) & ~(size_t)511;
    return (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
}

serl_pool *serl_pool_create(void) { return new (std::nothrow) serl_pool(); }

void serl_pool_trim(serl_pool *p) {
    for (auto &kv : p->cached) cudaFree(kv.second);
    p->cached.clear();
    p->cached_bytes = 0;
}

void serl_pool_destroy(serl_pool *p) {
    if (!p) return;
    serl_pool_trim(p);
    for (auto &kv : p->live) cudaFree(kv.first);
    delete p;
}

size_t serl_pool_cached(serl_pool *p) { return p->cached_bytes; }

cudaError_t serl_pool_alloc(serl_pool *p, size_t bytes, void **out) {
    size_t r = round_size(bytes);
    /* a cached block of the size or up to a quarter larger */
    auto it = p->cached.lower_bound(r);
    if (it != p->cached.end() && it->first <= r + r / 4) {
        *out = it->second;
        p->live[it->second] = it->first;
        p->cached_bytes -= it->first;
        p->cached.erase(it);
        return cudaSuccess;
    }
    void *m = NULL;
    cudaError_t e = cudaMalloc(&m, r);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* clear the sticky-free error and retry with the cache handed back */
        /* a cached block may still be read by queued work (freed after it was queued): let that finish
         * first rather than rely on cudaFree's implicit synchronisation */
        cudaDeviceSynchronize();
        serl_pool_trim(p);
        e = cudaMalloc(&m, r);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return e;
    }
    p->live[m] = r;
    *out = m;
    return cudaSuccess;
}

int serl_pool_free(serl_pool *p, void *m) {
    auto it = p->live.find(m);
    if (it == p->live.end()) return -1;
    p->cached.emplace(it->second, m);
    p->cached_bytes += it->second;
    p->live.erase(it);
    return 0;
}
