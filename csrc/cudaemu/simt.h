/* The SIMT emulator's device language. The emulated build (build.sh, build_cudaemu) compiles every
 * csrc/cuda .cu file with g++ and this header force-included, after translate.sed has rewritten the two
 * pieces of CUDA syntax C++ lacks (kernel<<<...>>>(...) launches and extern __shared__ arrays). Kernels
 * become plain functions; simt.cpp runs each CUDA thread of a block as a fiber on the calling CPU
 * thread, switching fibers only at __syncthreads and warp collectives (shuffles, ballots, mma.sync, ldmatrix).
 *
 * What it is for: running the CUDA library's own kernels, unchanged, under the conformance suite and
 * the model fixtures on a machine with no GPU, so that index arithmetic, tile and fragment layouts,
 * barrier placement, shared-memory races (race.cpp), launch limits and graph capture are checked on
 * every submission. What it cannot check: speed, the GPU's float contraction and libdevice rounding
 * (tolerances cover those), and races between blocks in global memory (blocks run one at a time, in a
 * scrambled order so that an order dependence shows). */
#ifndef SERL_SIMT_H
#define SERL_SIMT_H

#define SERL_SIMT 1

/* The real CUDA headers for host types and declarations (dim3, uint4, cudaError_t, cuBLAS's enums),
 * included before the qualifiers below are redefined, so that they see what a host compiler sees. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
/* One copy per kernel (per template instance), shared by the block's threads: blocks run one at a time.
 * All of them lie in one section, which the executor fills with 0xFF bytes (NaN) before each block, as
 * shared memory holds garbage on a GPU: a read before the block's own write shows. */
#undef __shared__
#define __shared__ static __attribute__((section("simt_shared")))
#undef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace simt {

/* The running CUDA thread (a fiber) and its block. */
struct ThreadState {
    uint3 tid;
    int lane, warp;
};
extern ThreadState *g_cur;
extern uint3 g_block;
extern dim3 g_bdim, g_gdim;

/* Collectives: the calling thread waits for the others named, as on the GPU. */
void syncthreads();
int syncthreads_or(int pred);
enum ShflKind { SHFL_IDX, SHFL_XOR, SHFL_UP, SHFL_DOWN };
uint64_t shfl(unsigned mask, uint64_t v, ShflKind kind, int arg, int width, const char *what);
unsigned ballot(unsigned mask, int pred);
void syncwarp(unsigned mask);
/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with the PTX ISA's fragment layout. */
void mma_m16n8k16_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
/* ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 as the PTX ISA states it: lane 8·m + i gives the
 * address of row i of matrix m (16 bytes, 16-byte aligned, in shared memory); lane 4·i + j receives in
 * r[m] the 32-bit word j of row i (the elements (i, 2j) and (i, 2j + 1), low half first), or with
 * .trans the elements (2j, i) and (2j + 1, i). */
void ldmatrix_x4(uint32_t r[4], const void *row, bool trans);
/* cp.async.cg.shared.global of 16 bytes (those past src_bytes zero) and cp.async.wait_all. The copy lands
 * at its issue in some blocks and at the wait in others (simt.cpp), the two ends of what the hardware may
 * do, so a read lacking the wait or its barrier, or a copy into a buffer still being read, shows. */
void cp_async16(void *dst, const void *src, int src_bytes);
void cp_async_wait_all();
/* The launch's dynamic shared memory (extern __shared__), filled with 0xFF bytes (NaN) per block. */
void *dynamic_smem();

/* Streams: a task runs at once, or is recorded while its stream captures a graph (runtime.cpp). */
void enqueue(cudaStream_t s, std::function<void()> task);
/* Whether a launch configuration is valid for fn (CUDA's limits); if not, records the launch error. */
bool launch_ok(dim3 grid, dim3 block, size_t shm, const void *fn, const char *name);
/* Whether p, a kernel's pointer argument (index from 0), may be used on the device: null, or in memory
 * from cudaMalloc or cudaMallocHost (up to one past its end), aligned for its type. If not, the launch
 * fails naming the kernel and the argument (runtime.cpp): a GPU would fault on reading it. */
bool pointer_ok(const char *kernel, int index, const void *p, size_t align);
/* The mangled name of the kernel fn (its symbol in the object holding it), or null. */
const char *kernel_symbol(const void *fn);
/* Runs a grid now: body is one thread's call of the kernel. */
void run_grid(dim3 grid, dim3 block, size_t shm, const char *name, const std::function<void()> &body);

/* The memory-traffic models (traffic.cpp): shared memory's bank model, which SERL_SIMT_BANKS=FILE turns
 * on, and global memory's sector model, which SERL_SIMT_SECTORS=FILE turns on, each writing its counts to
 * its FILE after every grid. traffic_enable overrides a switch, and traffic_take hands over (and drops) a
 * kernel's counts so far: its warp requests, what they took (wavefronts; 32-byte sectors) and the fewest
 * they could take. */
enum Mem { SHARED_MEM = 0, GLOBAL_MEM = 1 };
void traffic_enable(Mem mem, bool on);
bool traffic_take(Mem mem, const char *kernel, unsigned long long *requests, unsigned long long *cost, unsigned long long *fewest);

/* kernel<<<grid, block, shm, stream>>>(args...) becomes Launch(grid, block, shm, stream)("kernel",
 * kernel, args...) (translate.sed). Arguments are converted to the kernel's parameter types and copied
 * at launch, as CUDA copies them; each thread's call gets its own copy. */
/* A launch argument as the parameter's type. g++'s NULL is an integer once forwarded through a template;
 * nvcc, which compiles the same launches for the GPU, has already checked that such an integer is a
 * null pointer constant. */
template <class P, class A> inline P arg(A &&a) {
    if constexpr (std::is_pointer<P>::value && std::is_integral<typename std::decay<A>::type>::value)
        return nullptr;
    else
        return P(std::forward<A>(a));
}

template <class T> inline bool arg_ok(const char *kernel, int index, const T &v) {
    if constexpr (std::is_pointer<T>::value) {
        typedef typename std::remove_cv<typename std::remove_pointer<T>::type>::type E;
        size_t align = 1;
        if constexpr (!std::is_void<E>::value) align = alignof(E);
        return pointer_ok(kernel, index, (const void *)v, align);
    } else {
        return true;
    }
}
template <class Tuple, size_t... I> inline bool args_ok(const char *kernel, const Tuple &t, std::index_sequence<I...>) {
    return (arg_ok(kernel, (int)I, std::get<I>(t)) && ...);
}

struct Launch {
    dim3 grid, block;
    size_t shm;
    cudaStream_t stream;
    Launch(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), shm(s), stream(st) {}
    template <class... P, class... A> void operator()(const char *name, void (*fn)(P...), A &&...args) {
        if (!launch_ok(grid, block, shm, reinterpret_cast<const void *>(fn), name)) return;
        const dim3 g = grid, b = block;
        const size_t s = shm;
        std::tuple<typename std::decay<P>::type...> params(arg<typename std::decay<P>::type>(std::forward<A>(args))...);
        /* the pointers are checked when the grid runs, so that a graph replayed after its memory was
         * freed fails too */
        enqueue(stream, [=]() {
            if (!args_ok(name, params, std::index_sequence_for<P...>{})) return;
            run_grid(g, b, s, name, [&]() {
                auto p = params;
                std::apply(fn, p);
            });
        });
    }
};

template <class T> inline uint64_t bits_of(T v) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> inline T of_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

} // namespace simt

/* cuda_runtime.h's typed overload, which a host compiler does not see */
template <class... P> inline cudaError_t cudaFuncSetAttribute(void (*fn)(P...), cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute(reinterpret_cast<const void *>(fn), attr, value);
}

#define threadIdx (simt::g_cur->tid)
#define blockIdx (simt::g_block)
#define blockDim (simt::g_bdim)
#define gridDim (simt::g_gdim)

inline void __syncthreads() { simt::syncthreads(); }
inline int __syncthreads_or(int p) { return simt::syncthreads_or(p); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { simt::syncwarp(mask); }
inline unsigned __ballot_sync(unsigned mask, int pred) { return simt::ballot(mask, pred); }
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return simt::of_bits<T>(simt::shfl(mask, simt::bits_of(v), simt::SHFL_IDX, src, width, "__shfl_sync"));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32) {
    return simt::of_bits<T>(simt::shfl(mask, simt::bits_of(v), simt::SHFL_XOR, m, width, "__shfl_xor_sync"));
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return simt::of_bits<T>(simt::shfl(mask, simt::bits_of(v), simt::SHFL_UP, (int)d, width, "__shfl_up_sync"));
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return simt::of_bits<T>(simt::shfl(mask, simt::bits_of(v), simt::SHFL_DOWN, (int)d, width, "__shfl_down_sync"));
}

/* Fibers switch only at collectives, so a read-modify-write is atomic as written; the race detector
 * (race.cpp) leaves its accesses alone. */
namespace simt {
void atomic_enter(); /* calls the compiler cannot see into, so no access moves across them */
void atomic_leave();
struct Atomic {
    Atomic() { atomic_enter(); }
    ~Atomic() { atomic_leave(); }
};
} // namespace simt
template <class T, class U> inline T atomicAdd(T *p, U v) { simt::Atomic a; T o = *p; *p = (T)(o + v); return o; }
template <class T, class U> inline T atomicSub(T *p, U v) { simt::Atomic a; T o = *p; *p = (T)(o - v); return o; }
template <class T, class U> inline T atomicExch(T *p, U v) { simt::Atomic a; T o = *p; *p = (T)v; return o; }
template <class T, class U> inline T atomicMin(T *p, U v) { simt::Atomic a; T o = *p; if ((T)v < o) *p = (T)v; return o; }
template <class T, class U> inline T atomicMax(T *p, U v) { simt::Atomic a; T o = *p; if ((T)v > o) *p = (T)v; return o; }
template <class T, class U, class V> inline T atomicCAS(T *p, U cmp, V v) {
    simt::Atomic a;
    T o = *p;
    if (o == (T)cmp) *p = (T)v;
    return o;
}
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

/* Round-to-nearest intrinsics: the emulated build compiles with -ffp-contract=off, so each is one
 * rounding, as on the GPU. */
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline unsigned long long __double2ull_rn(double d) { return (unsigned long long)nearbyint(d); }
inline float __uint_as_float(unsigned u) { return simt::of_bits<float>(u); }
inline unsigned __float_as_uint(float f) { return (unsigned)simt::bits_of(f); }
inline float __int_as_float(int i) { return simt::of_bits<float>((uint32_t)i); }
inline int __float_as_int(float f) { return (int)(uint32_t)simt::bits_of(f); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
template <class T> inline T __ldg(const T *p) { return *p; }

/* CUDA's min and max: the integer overloads in the usual arithmetic conversions, fminf/fmaxf for floats. */
template <class A, class B> inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)b < (T)a ? (T)b : (T)a;
}
template <class A, class B> inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)b > (T)a ? (T)b : (T)a;
}
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

#endif
