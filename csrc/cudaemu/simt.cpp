/* The SIMT emulator's executor: a grid runs block after block (in a scrambled order) on the calling CPU
 * thread; a block's CUDA threads are fibers, each on its own stack, and a fiber runs until it reaches a
 * collective (__syncthreads, a shuffle, a ballot, mma.sync, ldmatrix) or returns. A collective completes when every
 * thread it names has arrived; the scheduler alternates its sweep direction each round, so that a shared-
 * memory read that lacks its barrier sees stale data whichever thread wrote it. Whatever the hardware
 * would not do or would leave undefined — threads waiting at different barriers, a warp collective whose
 * mask names an exited lane or lanes in different collectives, a shuffle from a lane outside the mask —
 * stops the grid and fails the launch with a message naming the kernel, block and thread. */
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

#include "internal.h"
#include "simt.h"

namespace simt {

ThreadState *g_cur;
uint3 g_block;
dim3 g_bdim, g_gdim;

/* ---------------------------------------------------------------- fibers */

#if defined(__x86_64__)
/* Saves the callee-saved registers on the current stack, stores the stack pointer in *save and resumes
 * the stack `to` (the System V ABI's callee-saved set). MXCSR and the x87 control word, callee-saved
 * too, are left alone: no kernel changes them, and loading them costs more than the rest of a switch. */
extern "C" void simt_switch(void **save, void *to);
asm(".text\n"
    ".p2align 4\n"
    ".globl simt_switch\n"
    ".hidden simt_switch\n"
    ".type simt_switch,@function\n"
    "simt_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size simt_switch, .-simt_switch\n");
#else
#error "the SIMT emulator's fiber switch is written for x86-64"
#endif

struct Fiber : ThreadState {
    void *sp = nullptr;
    char *stack = nullptr; /* kStack bytes above a guard page */
    bool done = false;
    const unsigned *wait_gen = nullptr; /* blocked while *wait_gen == wait_val */
    unsigned wait_val = 0;
    const char *waiting_in = nullptr;
    struct Copy {
        void *dst;
        unsigned char bytes[16];
    };
    std::vector<Copy> copies; /* cp.async copies issued and not yet waited for */
};

static const size_t kStack = 256 << 10;
static std::vector<Fiber> fibers; /* grown to the largest block; stacks kept for the process */
static void *sched_sp;
static const std::function<void()> *body;
static const char *kernel;
static unsigned live;       /* the block's threads that have not returned */
static bool aborted;        /* a fault: the block's fibers are abandoned, the grid stops */
static std::string fault_msg;
static std::vector<unsigned char> dyn; /* dynamic shared memory */

static Fiber *cur() { return (Fiber *)g_cur; }

static void fiber_main();

static bool stack_for(Fiber &f) {
    if (f.stack) return true;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return false;
    mprotect(m, page, PROT_NONE); /* an overflow faults rather than overwriting the next stack */
    f.stack = (char *)m + page;
    return true;
}

/* A fresh start of fiber t at fiber_main: the frame simt_switch pops. The stacks lie kStack + a page
 * apart, so their tops would all map to the same cache sets; each top is moved down by its own multiple
 * of 80 bytes (up to 20 KiB) to spread the block's hot frames over the sets (a few percent measured). */
static void reset(Fiber &f, unsigned t) {
    void **sp = (void **)(((uintptr_t)(f.stack + kStack - (t % 256) * 80)) & ~(uintptr_t)15);
    *--sp = nullptr;             /* fiber_main's return address: never used */
    *--sp = (void *)&fiber_main; /* ret: fiber_main is entered with rsp ≡ 8 (mod 16), as after a call */
    for (int i = 0; i < 6; i++) *--sp = nullptr; /* rbp rbx r12 r13 r14 r15 */
    f.sp = sp;
    f.done = false;
    f.wait_gen = nullptr;
    f.waiting_in = nullptr;
    f.copies.clear();
}

static void to_scheduler(Fiber *f) { simt_switch(&f->sp, sched_sp); }

static void block_on(const unsigned *gen, const char *what) {
    Fiber *f = cur();
    f->wait_gen = gen;
    f->wait_val = *gen;
    f->waiting_in = what;
    to_scheduler(f);
    f->waiting_in = nullptr;
}

/* Stops the grid from inside a fiber, which is never resumed. */
[[noreturn]] __attribute__((format(printf, 1, 2))) static void fault(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    Fiber *f = cur();
    if (!aborted) {
        char where[160];
        snprintf(where, sizeof where, "simt: %s, block (%u,%u,%u), thread (%u,%u,%u): ", kernel, g_block.x, g_block.y,
                 g_block.z, f->tid.x, f->tid.y, f->tid.z);
        fault_msg = std::string(where) + buf;
        aborted = true;
    }
    to_scheduler(f);
    __builtin_unreachable();
}

/* ---------------------------------------------------------------- block barrier */

static struct {
    unsigned arrived, gen;
    int acc, result;
} bar;

static void release_block() {
    race_barrier();
    if (traffic_any()) traffic_flush(kernel);
    bar.result = bar.acc;
    bar.acc = 0;
    bar.arrived = 0;
    bar.gen++;
}

static int block_barrier(int pred) {
    bar.acc |= pred != 0;
    if (++bar.arrived == live)
        release_block();
    else
        block_on(&bar.gen, "__syncthreads");
    return bar.result;
}

void syncthreads() { block_barrier(0); }
int syncthreads_or(int pred) { return block_barrier(pred); }

/* ---------------------------------------------------------------- warp collectives */

enum Kind { K_SHFL, K_BALLOT, K_SYNCWARP, K_MMA, K_LDSM };

struct LaneIn {
    uint64_t v;
    uintptr_t pc; /* ldmatrix: the instruction's address, for the bank model */
    int arg;
    uint32_t a[4], b[2];
    float c[4];
};
struct LaneOut {
    uint64_t v;
    float d[4];
    uint32_t r[4];
};
struct Warp {
    unsigned exists, present; /* lanes the block has; those not yet returned */
    unsigned mask, arrived, gen;
    int kind, sub, width;
    const char *what;
    LaneIn in[32];
    LaneOut out[32];
    std::vector<unsigned> syncs; /* the masks of the block's completed __syncwarp calls, in order */
};
static std::vector<Warp> warps;

unsigned warp_gen(int w) { return warps[w].gen; }

unsigned warp_syncs(int w) { return (unsigned)warps[w].syncs.size(); }

bool warp_synced(int w, unsigned since, int lane_a, int lane_b) {
    const std::vector<unsigned> &s = warps[w].syncs;
    const unsigned both = 1u << lane_a | 1u << lane_b;
    for (size_t k = s.size(); k > since; k--)
        if ((s[k - 1] & both) == both) return true;
    return false;
}

/* fault() leaves the fiber for good, so the message is formatted (and va_end called) before it */
#define FORMAT_THEN(call)                                                                                              \
    do {                                                                                                               \
        char buf[400];                                                                                                 \
        va_list ap;                                                                                                    \
        va_start(ap, fmt);                                                                                             \
        vsnprintf(buf, sizeof buf, fmt, ap);                                                                           \
        va_end(ap);                                                                                                    \
        call;                                                                                                          \
    } while (0)

void race_fault(const char *fmt, ...) { FORMAT_THEN(fault("race: %s", buf)); }

void kernel_fault(const char *fmt, ...) { FORMAT_THEN(fault("%s", buf)); }

static float bf16(uint32_t h) { return of_bits<float>((h & 0xFFFFu) << 16); }

/* D = A·B + C for the warp: m16n8k16, A row-major 16×16 bf16, B column-major 16×8 bf16, C/D 16×8 f32.
 * PTX ISA fragments (groupID g = lane/4, threadID_in_group t = lane%4; the low half of a register is
 * the lower-indexed element): A a0..a7 at rows g (a0,a1,a4,a5) or g+8, columns 2t+(i&1) (+8 for i ≥ 4);
 * B b0..b3 at rows 2t+(i&1) (+8 for i ≥ 2), column g; C c0..c3 at rows g (c0,c1) or g+8, columns 2t+(i&1). */
static void mma_complete(Warp &w) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        const LaneIn &x = w.in[l];
        for (int r = 0; r < 4; r++) {
            const int row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
            A[row][col] = bf16(x.a[r]), A[row][col + 1] = bf16(x.a[r] >> 16);
        }
        for (int r = 0; r < 2; r++) {
            const int k = 2 * t + (r ? 8 : 0);
            B[k][g] = bf16(x.b[r]), B[k + 1][g] = bf16(x.b[r] >> 16);
        }
        for (int i = 0; i < 4; i++) C[g + (i >= 2 ? 8 : 0)][2 * t + (i & 1)] = x.c[i];
    }
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; i++) {
            const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
            float s = C[row][col];
            for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col]; /* bf16 products are exact in f32 */
            w.out[l].d[i] = s;
        }
    }
}

/* The static __shared__ variables of the object this executor is linked into (simt.h puts them in the
 * section simt_shared; the linker names its bounds). Weak: an object may have none. */
extern "C" char __start_simt_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_simt_shared[] __attribute__((weak, visibility("hidden")));
static size_t dyn_bytes; /* the running launch's dynamic shared memory */

/* Whether [p, p + n) lies in the block's shared memory, static or dynamic. */
static bool in_shared(uintptr_t p, size_t n) {
    const uintptr_t s0 = (uintptr_t)__start_simt_shared, s1 = (uintptr_t)__stop_simt_shared;
    const uintptr_t d0 = (uintptr_t)dyn.data(), d1 = d0 + dyn_bytes;
    return (s0 && p >= s0 && p + n <= s1) || (p >= d0 && p + n <= d1);
}

/* ldmatrix: the rows are read when the last lane arrives, as the warp executes it once. */
static void ldsm_complete(Warp &w) {
    uint16_t M[4][8][8];
    for (int m = 0; m < 4; m++)
        for (int i = 0; i < 8; i++) {
            const int l = 8 * m + i;
            const uintptr_t p = (uintptr_t)w.in[l].v;
            if (p % 16) fault("%s: lane %d gives the row address %#lx, not 16-byte aligned", w.what, l, (unsigned long)p);
            if (!in_shared(p, 16)) fault("%s: lane %d gives the row address %#lx, outside shared memory", w.what, l, (unsigned long)p);
            race_access(32 * (int)(&w - warps.data()) + l, (int)(&w - warps.data()), (const void *)p, 16, false);
            traffic_access(SHARED_MEM, (int)(&w - warps.data()), l, w.in[l].pc, (const void *)p, 16);
            memcpy(M[m][i], (const void *)p, 16);
        }
    for (int l = 0; l < 32; l++) {
        const int i = l >> 2, j = l & 3;
        for (int m = 0; m < 4; m++) {
            const uint16_t lo = w.sub ? M[m][2 * j][i] : M[m][i][2 * j], hi = w.sub ? M[m][2 * j + 1][i] : M[m][i][2 * j + 1];
            w.out[l].r[m] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

static void complete(Warp &w) {
    switch (w.kind) {
    case K_SHFL:
        for (int l = 0; l < 32; l++) {
            if (!(w.mask >> l & 1)) continue;
            const int seg = l & ~(w.width - 1), arg = w.in[l].arg;
            int src = l;
            switch (w.sub) {
            case SHFL_IDX: src = seg + (arg & (w.width - 1)); break;
            case SHFL_XOR: src = l ^ arg; if (src >= seg + w.width) src = l; break;
            case SHFL_UP: src = l - arg; if (src < seg) src = l; break;
            case SHFL_DOWN: src = l + arg; if (src >= seg + w.width) src = l; break;
            }
            if (src < 0 || src > 31 || !(w.mask >> src & 1))
                fault("%s: lane %d reads lane %d, which is not in the mask %#x (its value is undefined)", w.what, l, src,
                      w.mask);
            w.out[l].v = w.in[src].v;
        }
        break;
    case K_BALLOT: {
        unsigned r = 0;
        for (int l = 0; l < 32; l++)
            if ((w.mask >> l & 1) && w.in[l].v) r |= 1u << l;
        for (int l = 0; l < 32; l++) w.out[l].v = r;
        break;
    }
    case K_SYNCWARP: w.syncs.push_back(w.mask); break;
    case K_MMA: mma_complete(w); break;
    case K_LDSM: ldsm_complete(w); break;
    }
}

static const LaneOut &collective(int kind, int sub, int width, const char *what, unsigned mask, const LaneIn &in) {
    Fiber *f = cur();
    Warp &w = warps[f->warp];
    const unsigned bit = 1u << f->lane;
    if (!(mask & bit)) fault("%s: the mask %#x does not name the calling lane %d", what, mask, f->lane);
    if (width < 1 || width > 32 || (width & (width - 1))) fault("%s: width %d is not a power of two ≤ 32", what, width);
    if (mask & ~w.exists)
        fault("%s: the mask %#x names lanes past the block's last thread (warp %d has lanes %#x)", what, mask, f->warp,
              w.exists);
    if (mask & ~w.present) fault("%s: the mask %#x names lanes that have returned (%#x)", what, mask, mask & ~w.present);
    if (w.arrived == 0) {
        w.kind = kind, w.sub = sub, w.width = width, w.mask = mask, w.what = what;
    } else if (w.kind != kind || w.sub != sub || w.width != width || w.mask != mask) {
        fault("%s (mask %#x) while lanes %#x of warp %d wait in %s (mask %#x): divergent warp collectives", what, mask,
              w.arrived, f->warp, w.what, w.mask);
    }
    w.in[f->lane] = in;
    w.arrived |= bit;
    if (w.arrived == mask) {
        complete(w);
        w.arrived = 0;
        w.gen++;
    } else {
        block_on(&w.gen, what);
    }
    return w.out[f->lane];
}

uint64_t shfl(unsigned mask, uint64_t v, ShflKind kind, int arg, int width, const char *what) {
    LaneIn in = {};
    in.v = v, in.arg = arg;
    return collective(K_SHFL, kind, width, what, mask, in).v;
}

unsigned ballot(unsigned mask, int pred) {
    LaneIn in = {};
    in.v = pred != 0;
    return (unsigned)collective(K_BALLOT, 0, 32, "__ballot_sync", mask, in).v;
}

void syncwarp(unsigned mask) { collective(K_SYNCWARP, 0, 32, "__syncwarp", mask, LaneIn{}); }

void mma_m16n8k16_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    LaneIn in = {};
    memcpy(in.a, a, sizeof in.a);
    in.b[0] = b0, in.b[1] = b1;
    memcpy(in.c, c, sizeof in.c);
    const LaneOut &o = collective(K_MMA, 0, 32, "mma.sync.m16n8k16", 0xFFFFFFFFu, in);
    memcpy(c, o.d, sizeof o.d);
}

void ldmatrix_x4(uint32_t r[4], const void *row, bool trans) {
    LaneIn in = {};
    in.v = (uint64_t)(uintptr_t)row;
    in.pc = (uintptr_t)__builtin_return_address(0);
    const LaneOut &o = collective(K_LDSM, trans, 32, trans ? "ldmatrix.x4.trans" : "ldmatrix.x4", 0xFFFFFFFFu, in);
    memcpy(r, o.r, sizeof o.r);
}

/* cp.async: the source is read at issue (nothing writes it during a kernel); the destination is written
 * at one of the two ends of the span the hardware may choose from: when the thread waits, in blocks of
 * even linear index, so that a read of the destination before the wait (or by another thread before the
 * barrier after it) sees the old bytes; at issue in the others, so that a copy into a buffer that other
 * threads still read (a missing barrier before reusing it) overwrites what they read. */
void cp_async16(void *dst, const void *src, int src_bytes) {
    const uintptr_t d = (uintptr_t)dst, sp = (uintptr_t)src;
    if (d % 16 || !in_shared(d, 16))
        fault("cp.async: the destination %#lx is not 16 bytes of shared memory, 16-byte aligned", (unsigned long)d);
    if (sp % 16) fault("cp.async: the source %#lx is not 16-byte aligned", (unsigned long)sp);
    if (src_bytes < 0 || src_bytes > 16) fault("cp.async: a source size of %d bytes (0 to 16)", src_bytes);
    const uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    traffic_access(SHARED_MEM, cur()->warp, cur()->lane, pc, dst, 16);
    if (src_bytes) traffic_access(GLOBAL_MEM, cur()->warp, cur()->lane, pc, src, (size_t)src_bytes);
    Fiber::Copy c;
    c.dst = dst;
    memset(c.bytes, 0, sizeof c.bytes); /* past src_bytes: zeros */
    if (src_bytes) memcpy(c.bytes, src, (size_t)src_bytes);
    const uint64_t block = g_block.x + (uint64_t)g_gdim.x * (g_block.y + (uint64_t)g_gdim.y * g_block.z);
    if (block & 1) {
        race_access(32 * cur()->warp + cur()->lane, cur()->warp, dst, sizeof c.bytes, true);
        memcpy(dst, c.bytes, sizeof c.bytes);
    } else
        cur()->copies.push_back(c);
}

void cp_async_wait_all() {
    Fiber *f = cur();
    for (const Fiber::Copy &c : f->copies) {
        race_access(32 * f->warp + f->lane, f->warp, c.dst, sizeof c.bytes, true);
        memcpy(c.dst, c.bytes, sizeof c.bytes);
    }
    f->copies.clear();
}

void *dynamic_smem() { return dyn.data(); }

/* ---------------------------------------------------------------- blocks and grids */

static void thread_exit(Fiber *f) {
    cp_async_wait_all(); /* copies in flight still land */
    live--;
    Warp &w = warps[f->warp];
    const unsigned bit = 1u << f->lane;
    w.present &= ~bit;
    if (w.arrived && (w.mask & bit))
        fault("returned while lanes %#x of warp %d wait for it in %s (mask %#x)", w.arrived, f->warp, w.what, w.mask);
    /* returned threads no longer hold up a block barrier (as on sm_70 and later) */
    if (bar.arrived > 0 && bar.arrived == live) release_block();
}

static void fiber_main() {
    Fiber *f = cur();
    (*body)();
    thread_exit(f);
    f->done = true;
    to_scheduler(f);
    __builtin_unreachable();
}

static std::string describe_deadlock(unsigned n) {
    std::string s;
    unsigned at_bar = 0;
    for (unsigned t = 0; t < n; t++)
        if (!fibers[t].done && fibers[t].waiting_in && !strcmp(fibers[t].waiting_in, "__syncthreads")) at_bar++;
    char buf[200];
    snprintf(buf, sizeof buf, "deadlock: %u of %u live threads wait at __syncthreads", at_bar, live);
    s = buf;
    for (size_t wi = 0; wi < warps.size(); wi++) {
        const Warp &w = warps[wi];
        if (!w.arrived) continue;
        snprintf(buf, sizeof buf, "; warp %zu: lanes %#x wait in %s (mask %#x)", wi, w.arrived, w.what, w.mask);
        s += buf;
    }
    return s;
}

static void run_block(unsigned n) {
    if (__start_simt_shared) memset(__start_simt_shared, 0xFF, (size_t)(__stop_simt_shared - __start_simt_shared));
    bar = {};
    live = n;
    for (unsigned t = 0; t < n; t++) {
        Fiber &f = fibers[t];
        f.tid = make_uint3(t % g_bdim.x, t / g_bdim.x % g_bdim.y, t / (g_bdim.x * g_bdim.y));
        f.lane = (int)(t & 31), f.warp = (int)(t >> 5);
        reset(f, t);
    }
    for (size_t wi = 0; wi < warps.size(); wi++) {
        const unsigned lanes = n - 32 * (unsigned)wi >= 32 ? 32 : n - 32 * (unsigned)wi;
        warps[wi].exists = warps[wi].present = lanes == 32 ? 0xFFFFFFFFu : (1u << lanes) - 1;
        warps[wi].arrived = 0;
        warps[wi].syncs.clear();
    }
    for (unsigned round = 0; live > 0 && !aborted; round++) {
        bool ran = false;
        for (unsigned k = 0; k < n && !aborted; k++) {
            Fiber &f = fibers[round & 1 ? n - 1 - k : k];
            if (f.done || (f.wait_gen && *f.wait_gen == f.wait_val)) continue;
            f.wait_gen = nullptr;
            g_cur = &f;
            simt_switch(&sched_sp, f.sp);
            ran = true;
        }
        if (!ran && live > 0 && !aborted) {
            char where[160];
            snprintf(where, sizeof where, "simt: %s, block (%u,%u,%u): ", kernel, g_block.x, g_block.y, g_block.z);
            fault_msg = std::string(where) + describe_deadlock(n);
            aborted = true;
        }
    }
}

void run_grid(dim3 grid, dim3 block, size_t shm, const char *name, const std::function<void()> &fn) {
    static std::mutex mu; /* one grid at a time in the process: the executor's state is global */
    std::lock_guard<std::mutex> lock(mu);
    const unsigned n = block.x * block.y * block.z;
    if (fibers.size() < n) fibers.resize(n);
    for (unsigned t = 0; t < n; t++)
        if (!stack_for(fibers[t])) {
            launch_fault(std::string("simt: ") + name + ": cannot map a fiber stack");
            return;
        }
    warps.assign((n + 31) / 32, Warp{});
    dyn.assign(shm > 16 ? shm : 16, 0xFF);
    dyn_bytes = shm;
    body = &fn, kernel = name, g_bdim = block, g_gdim = grid, aborted = false;
    race_grid_begin();
    const uint64_t nb = (uint64_t)grid.x * grid.y * grid.z;
    /* a scrambled order: k → (k·stride + nb/2) mod nb with stride coprime to nb */
    uint64_t stride = 1;
    for (uint64_t p : {7919ull, 104729ull, 1299709ull})
        if (nb % p) {
            stride = p % nb ? p % nb : 1;
            break;
        }
    for (uint64_t k = 0; k < nb && !aborted; k++) {
        const uint64_t b = (k * stride + nb / 2) % nb;
        g_block = make_uint3((unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / ((uint64_t)grid.x * grid.y)));
        if (shm) memset(dyn.data(), 0xFF, shm);
        race_block_begin(__start_simt_shared, (size_t)(__stop_simt_shared - __start_simt_shared), dyn.data(), shm);
        if (traffic_any()) traffic_block_begin((unsigned)warps.size());
        run_block(n);
        if (traffic_any()) traffic_flush(kernel);
    }
    g_cur = nullptr;
    if (traffic_any()) traffic_grid_end();
    if (aborted) launch_fault(fault_msg);
}

} // namespace simt
