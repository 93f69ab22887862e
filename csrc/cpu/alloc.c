/* The CPU library's memory blocks (tensors, scratch): 64-byte aligned from malloc below 2 MiB, and from
 * 2 MiB up mappings of their own, 2 MiB-aligned and asked to be backed by transparent huge pages (the
 * kernel's "madvise" mode, Debian's default, gives them only to regions that ask). A tensor then faults
 * in once per 2 MiB instead of once per 4 KiB: a Qwen2.5-0.5B training bench of two steps (9.5 GiB of
 * tensors) spent 32 s of system time where it now spends 21, and a product's walk over a weight matrix
 * misses the TLB 512× less often. The advice is only that: where THP is off it is ignored.
 *
 * Why not malloc for the large ones too: once a freed mapping has raised malloc's mmap threshold (up to
 * 32 MiB), malloc serves such a block from its heap, and the advice stayed on that range of the heap after
 * the block was freed, for the small blocks malloc carved from it next (a 4 KiB tensor could take a 2 MiB
 * page; TestHugePages failed when the addresses fell that way); and a freed block's memory stayed with the
 * process. As mappings, the advice covers the block alone and a free returns its memory to the system, as
 * cudaFree does on a GPU. A table of the live mappings, sorted by address, gives serl_aligned_free their
 * lengths (a model holds a few thousand at most). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define PAGE ((size_t)4096)

typedef struct {
    uintptr_t p;
    size_t len;
} mapping;

static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
static mapping *maps;
static size_t n_maps, cap_maps;

/* The index of the first mapping at or past p. Under maps_mu. */
static size_t find(uintptr_t p) {
    size_t lo = 0, hi = n_maps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (maps[mid].p < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int remember(uintptr_t p, size_t len) {
    pthread_mutex_lock(&maps_mu);
    if (n_maps == cap_maps) {
        size_t cap = cap_maps ? 2 * cap_maps : 256;
        mapping *m = realloc(maps, cap * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&maps_mu);
            return -1;
        }
        maps = m, cap_maps = cap;
    }
    size_t i = find(p);
    memmove(maps + i + 1, maps + i, (n_maps - i) * sizeof *maps);
    maps[i] = (mapping){p, len};
    n_maps++;
    pthread_mutex_unlock(&maps_mu);
    return 0;
}

/* The length of the mapping that starts at p, taken out of the table; 0 when p is not one (malloc's). */
static size_t forget(uintptr_t p) {
    size_t len = 0;
    pthread_mutex_lock(&maps_mu);
    size_t i = find(p);
    if (i < n_maps && maps[i].p == p) {
        len = maps[i].len;
        memmove(maps + i, maps + i + 1, (n_maps - i - 1) * sizeof *maps);
        n_maps--;
    }
    pthread_mutex_unlock(&maps_mu);
    return len;
}

/* A mapping of len bytes (whole pages) at a 2 MiB boundary: len + 2 MiB mapped, the ends cut off. */
static void *map_aligned(size_t len) {
    const size_t span = len + SERL_HUGE_PAGE;
    char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)base + SERL_HUGE_PAGE - 1) & ~(uintptr_t)(SERL_HUGE_PAGE - 1));
    const size_t head = (size_t)(p - base), tail = span - head - len;
    if (head) munmap(base, head);
    if (tail) munmap(p + len, tail);
    return p;
}

void *serl_aligned_alloc(size_t bytes) {
    if (bytes == 0) bytes = SERL_ALIGN;
    bytes = (bytes + SERL_ALIGN - 1) / SERL_ALIGN * SERL_ALIGN;
    if (bytes < SERL_HUGE_PAGE) {
        void *p = NULL;
        return posix_memalign(&p, SERL_ALIGN, bytes) == 0 ? p : NULL;
    }
    /* whole pages: a tail short of 2 MiB keeps small pages, so no block grows by more than a page */
    const size_t len = (bytes + PAGE - 1) / PAGE * PAGE;
    void *p = map_aligned(len);
    if (!p) return NULL;
    (void)madvise(p, len, MADV_HUGEPAGE);
    if (remember((uintptr_t)p, len) != 0) {
        munmap(p, len);
        return NULL;
    }
    return p;
}

void serl_aligned_free(void *p) {
    if (!p) return;
    const size_t len = forget((uintptr_t)p);
    if (len)
        munmap(p, len);
    else
        free(p);
}
