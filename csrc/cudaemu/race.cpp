/* The SIMT emulator's race detector for shared and global memory, and its alignment check. The emulated build
 * compiles csrc/cuda with -fsanitize=thread, which makes g++ call __tsan_readN/__tsan_writeN before every
 * memory access; this file supplies those functions itself (no ThreadSanitizer runtime is linked), checks
 * that each access to device or shared memory is as aligned as its type says (on_access), and checks the accesses
 * that fall in the running block's shared memory, static or dynamic, against CUDA's rule: two threads
 * of a block may touch the same byte in one interval between block barriers only if both only read it,
 * or if they are lanes of one warp and a __syncwarp whose mask names both came between them. Shuffles,
 * votes, mma.sync and ldmatrix synchronise a warp's lanes but do not order their memory accesses in
 * CUDA's model, so they do not count.
 * Atomics are exempt (simt.h marks them). A conflict stops the grid naming both threads and the byte.
 * Device memory (cudaMalloc's) is checked too: blocks of one grid may not touch the same bytes if
 * either writes, and threads of one block follow the rule above there (see global_access). Memory from
 * cudaMallocHost and the executor's own copies (cp.async's global reads) are not checked.
 *
 * Why: the executor runs a block's threads one at a time, so a racing write is simply the last one in
 * its sweep order and a racing read may happen to see the right value; the alternating sweeps expose a
 * missing barrier before a read only sometimes, and two threads storing to one location never. The
 * hardware gives such a kernel a different answer from run to run.
 *
 * SERL_SIMT_RACE=0 turns the check off (the instrumentation's calls remain): ./build.sh test does so for
 * the emulated end-to-end SeRL runs, whose kernels the conformance suite has checked.
 *
 * Shadow state, per byte of shared memory: the last writer and the last two distinct readers, each as
 * (thread, epoch, its warp's __syncwarp count). An epoch is a global counter advanced at every block start and
 * every barrier release, so the state of earlier blocks goes stale without clearing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <vector>

#include "internal.h"
#include "simt.h"

namespace simt {

static int in_atomic; /* > 0 while an emulated atomic (simt.h) runs: its accesses are exempt */
void atomic_enter() { in_atomic++; }
void atomic_leave() { in_atomic--; }

namespace {

struct Mark {
    uint32_t epoch; /* 0: none */
    uint32_t wsync; /* how many __syncwarp calls the thread's warp had completed at the access */
    int16_t tid;    /* the thread's linear index in its block */
};
struct Cell {
    Mark w, r0, r1; /* last writer; last two distinct readers (r0 the latest) */
};

bool enabled = true; /* SERL_SIMT_RACE=0 turns the check off (read at the first block) */
bool traffic;        /* SERL_SIMT_BANKS or _SECTORS=FILE: the instrumentation also feeds the traffic models */
uint32_t epoch = 1;
uintptr_t dyn_lo, dyn_hi;   /* the block's dynamic shared memory */
uintptr_t stat_lo, stat_len; /* the object's static shared memory */
std::vector<Cell> dyn_cells, static_cells; /* one per byte of each */

Cell *cell_of(uintptr_t p) {
    if (p - stat_lo < stat_len) return &static_cells[p - stat_lo];
    if (p >= dyn_lo && p < dyn_hi) return &dyn_cells[p - dyn_lo];
    return nullptr;
}

/* whether an earlier access m conflicts with one by thread tid of warp `warp` now */
inline bool conflicts(const Mark &m, int tid, int warp) {
    if (m.epoch != epoch || m.tid == tid) return false;
    if (m.tid / 32 == warp && warp_synced(warp, m.wsync, m.tid % 32, tid % 32)) return false; /* a __syncwarp came between */
    return true;
}

/* The rule between threads of one block on one cell, for shared and global memory alike: the access
 * `now` (by thread now.tid of warp `warp`) is recorded; if it conflicts with an earlier one, what it
 * broke, and that thread in *other. */
const char *touch(Cell &c, const Mark &now, int warp, bool write, int *other) {
    const int tid = now.tid;
    if (conflicts(c.w, tid, warp)) {
        *other = c.w.tid;
        return write ? "a write after another thread's write" : "a read of another thread's write";
    }
    if (write) {
        for (const Mark *r : {&c.r0, &c.r1})
            if (conflicts(*r, tid, warp)) {
                *other = r->tid;
                return "a write after another thread's read";
            }
        c.w = now;
    } else if (c.r0.epoch == epoch && c.r0.tid == tid) {
        c.r0 = now;
    } else {
        c.r1 = c.r0, c.r0 = now;
    }
    return nullptr;
}

[[noreturn]] void report(const char *what, uintptr_t p, int other, int tid) {
    const bool dyn = p >= dyn_lo && p < dyn_hi;
    race_fault("%s: thread %d and thread %d at byte %lu of %s shared memory, with no barrier between", what, other, tid,
               (unsigned long)(p - (dyn ? dyn_lo : stat_lo)), dyn ? "dynamic" : "static");
}

/* Global memory. A grid's blocks run in no order and cannot wait for one another, so two threads of
 * different blocks of one grid may not touch the same bytes of device memory if either writes
 * (atomics aside); threads of one block follow shared memory's rule there too (__syncthreads orders
 * global memory within a block, __syncwarp within a warp). Shadow, beside the device range
 * (runtime.cpp) and as lazily backed: per 2 bytes (a bf16, the smallest value the kernels store), the
 * grid that last touched them, tags of the block that wrote them and of the block that read them (0:
 * none; 0xFFFF: several), and shared memory's cell for the threads of a block (its marks' epochs
 * advance at every block and barrier, so another block's go stale). A tag is the block's index mod
 * 65534, plus 1: two blocks 65534 apart look alike, so a race between only them goes unseen; none is
 * ever reported that is not one. */
struct GCell {
    uint32_t grid;
    uint16_t w, r;
    Cell t;
};
uintptr_t glo, glen;       /* the device range */
GCell *gshadow;            /* its shadow, or NULL when it could not be mapped */
uint32_t grid_epoch;       /* advanced at every grid, so earlier grids' marks go stale */
uint16_t gtag;             /* the running block's tag */

/* what: the rule broken at device address p; other: the tag of the block that touched p before
 * (0xFFFF: several blocks read it) */
[[noreturn]] void report_global(const char *what, uintptr_t p, uint16_t other) {
    char who[40] = "several blocks";
    if (other != 0xFFFF) snprintf(who, sizeof who, "block %u (mod 65534)", (unsigned)other - 1);
    race_fault("global memory: %s: %s and block %u (mod 65534) at %#lx of device memory, in one grid", what, who,
               (unsigned)gtag - 1, (unsigned long)p);
}

/* what: the rule broken at device address p by thread tid and thread other of the running block */
[[noreturn]] void report_global_thread(const char *what, uintptr_t p, int other, int tid) {
    race_fault("global memory: %s: thread %d and thread %d at %#lx of device memory, with no barrier between", what,
               other, tid, (unsigned long)p);
}

void global_access(int tid, int warp, uintptr_t a, size_t n, bool write) {
    const Mark now = {epoch, warp_syncs(warp), (int16_t)tid};
    int other;
    for (uintptr_t i = (a - glo) / 2, end = (a + n - 1 - glo) / 2; i <= end; i++) {
        GCell &c = gshadow[i];
        if (c.grid != grid_epoch) c = GCell{grid_epoch, 0, 0, Cell{}};
        if (const char *what = touch(c.t, now, warp, write, &other)) report_global_thread(what, glo + 2 * i, other, tid);
        if (c.w && c.w != gtag)
            report_global(write ? "a write after another block's write" : "a read of another block's write", glo + 2 * i, c.w);
        if (write) {
            if (c.r && c.r != gtag) report_global("a write after another block's read", glo + 2 * i, c.r);
            c.w = gtag;
        } else if (!c.r) {
            c.r = gtag;
        } else if (c.r != gtag) {
            c.r = 0xFFFF;
        }
    }
}

} // namespace

void misaligned(uintptr_t a, size_t n, bool write, uintptr_t pc) {
    const std::string &line = source_line(pc);
    kernel_fault("misaligned address: a %zu-byte %s at %#lx, %lu bytes past a multiple of %zu%s%s", n,
                 write ? "store" : "load", (unsigned long)a, (unsigned long)(a & (n - 1)), n, line.empty() ? "" : ", at ",
                 line.c_str());
}

void race_region(void *base, size_t len) {
    glo = (uintptr_t)base, glen = len;
    void *s = mmap(NULL, len / 2 * sizeof(GCell), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s == MAP_FAILED) {
        fprintf(stderr, "simt: no address space for the global-memory race check's shadow: it is off\n");
        return;
    }
    gshadow = (GCell *)s;
}

void race_release(void *p, size_t len) {
    if (gshadow) madvise(gshadow + ((uintptr_t)p - glo) / 2, len / 2 * sizeof(GCell), MADV_DONTNEED);
}

void race_grid_begin() {
    if (++grid_epoch == 0) grid_epoch = 1;
}

void race_block_begin(void *stat, size_t stat_bytes, void *dyn, size_t bytes) {
    static const bool once = [] {
        const char *e = getenv("SERL_SIMT_RACE");
        enabled = !(e && !strcmp(e, "0"));
        return true;
    }();
    (void)once;
    traffic = traffic_any();
    epoch++;
    gtag = (uint16_t)((g_block.x + (uint64_t)g_gdim.x * (g_block.y + (uint64_t)g_gdim.y * g_block.z)) % 65534 + 1);
    stat_lo = (uintptr_t)stat, stat_len = stat_bytes;
    dyn_lo = (uintptr_t)dyn, dyn_hi = dyn_lo + bytes;
    if (static_cells.size() < stat_bytes) static_cells.resize(stat_bytes);
    if (dyn_cells.size() < bytes) dyn_cells.resize(bytes);
}

void race_barrier() { epoch++; }

void race_access(int tid, int warp, const void *addr, size_t n, bool write) {
    const Mark now = {epoch, warp_syncs(warp), (int16_t)tid};
    Cell *c0 = cell_of((uintptr_t)addr);
    if (!c0) return; /* an access lies in one object: its first byte tells */
    int other;
    for (size_t i = 0; i < n; i++)
        if (const char *what = touch(c0[i], now, warp, write, &other)) report(what, (uintptr_t)addr + i, other, tid);
}

} // namespace simt

/* The instrumentation's entry points (g++ -fsanitize=thread). Host code comes here too: only a running
 * CUDA thread's accesses to shared and device memory are checked. */
static inline void on_access(const void *p, size_t n, bool write, bool aligned, uintptr_t pc) {
    const uintptr_t a = (uintptr_t)p;
    const bool shared = a - simt::stat_lo < simt::stat_len || a - simt::dyn_lo < simt::dyn_hi - simt::dyn_lo;
    /* A CUDA thread's access to device or shared memory through the aligned entry points, whose type
     * is as aligned as its size (a uint4 or float4, a 4-byte word of bf16 pairs; up to 8 bytes g++ says
     * so exactly, and 16-byte accesses in kernels are the vector types): nvcc emits a load or store of
     * that width, which faults on a GPU where the address is not a multiple of it, and x86 tolerates.
     * That catches a vector access at an offset the kernel computed. Checked whether or not the race
     * check is on. The emulator's own structures (a launch's parameters) are host memory, not checked. */
    if (aligned && (a & (n - 1)) && simt::g_cur && (shared || a - simt::glo < simt::glen)) simt::misaligned(a, n, write, pc);
    if (!simt::enabled && !simt::traffic) return;
    const simt::ThreadState *t = simt::g_cur;
    if (!t || simt::in_atomic) return;
    const int tid = t->tid.x + simt::g_bdim.x * (t->tid.y + simt::g_bdim.y * t->tid.z);
    if (!shared) {
        if (a - simt::glo >= simt::glen) return;
        if (simt::enabled && simt::gshadow) simt::global_access(tid, t->warp, a, n, write);
        if (simt::traffic) simt::traffic_access(simt::GLOBAL_MEM, t->warp, t->lane, pc, p, n);
        return;
    }
    if (simt::enabled) simt::race_access(tid, t->warp, p, n, write);
    if (simt::traffic) simt::traffic_access(simt::SHARED_MEM, t->warp, t->lane, pc, p, n);
}

extern "C" {
__attribute__((visibility("hidden"))) void __tsan_init() {}
__attribute__((visibility("hidden"))) void __tsan_func_entry(void *) {}
__attribute__((visibility("hidden"))) void __tsan_func_exit() {}
/* the instruction that made the access, for the traffic models */
#define SERL_PC() ((uintptr_t)__builtin_return_address(0))
#define SERL_TSAN_SIZE(n)                                                                                          \
    __attribute__((visibility("hidden"))) void __tsan_read##n(void *p) { on_access(p, n, false, true, SERL_PC()); } \
    __attribute__((visibility("hidden"))) void __tsan_write##n(void *p) { on_access(p, n, true, true, SERL_PC()); } \
    __attribute__((visibility("hidden"))) void __tsan_unaligned_read##n(void *p) {                                 \
        on_access(p, n, false, false, SERL_PC());                                                                  \
    }                                                                                                              \
    __attribute__((visibility("hidden"))) void __tsan_unaligned_write##n(void *p) {                                \
        on_access(p, n, true, false, SERL_PC());                                                                   \
    }
SERL_TSAN_SIZE(1)
SERL_TSAN_SIZE(2)
SERL_TSAN_SIZE(4)
SERL_TSAN_SIZE(8)
SERL_TSAN_SIZE(16)
__attribute__((visibility("hidden"))) void __tsan_read_range(void *p, unsigned long n) { on_access(p, n, false, false, SERL_PC()); }
__attribute__((visibility("hidden"))) void __tsan_write_range(void *p, unsigned long n) { on_access(p, n, true, false, SERL_PC()); }
}
