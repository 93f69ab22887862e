/* The SIMT emulator's own checks (`./build.sh test` runs build/cudaemu/simt_selftest): that mma.sync
 * computes A·B + C through the PTX fragment layouts and ldmatrix fills them from shared memory, that
 * cp.async lands at either end of the span the hardware may choose, that the rule breaks it promises to
 * catch fail the launch with a message, that a shared-memory read missing its barrier reads stale data,
 * that a vector load or store off its width fails, that launches past CUDA's limits are refused, that a captured graph replays, that kernels, copies and
 * GEMMs given memory the device cannot use fail, and that blocks needing more registers or shared memory
 * than a multiprocessor has are refused, and that the bank model counts wavefronts as the hardware's rule
 * says. Kernels here are written in CUDA C++ and go through
 * translate.sed like csrc/cuda's. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <string>
#include <vector>

static int passed, failed;

static void check(bool ok, const char *what, const std::string &detail = "") {
    if (ok)
        passed++;
    else
        failed++;
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail.empty() ? "" : ": ", detail.c_str());
}

/* The launch just made failed with cudaErrorLaunchFailure and a message containing want. */
static void expect_fault(const char *what, const char *want) {
    cudaError_t e = cudaGetLastError();
    const std::string msg = cudaGetErrorString(e);
    check(e == cudaErrorLaunchFailure && msg.find(want) != std::string::npos, what, msg);
}

/* The launch just made succeeded, and right (what it computed) holds. */
static void expect_ran(bool right, const char *what) {
    cudaError_t e = cudaGetLastError();
    check(e == cudaSuccess && right, what, cudaGetErrorString(e));
}

/* n elements of device memory. The emulator's device memory is host memory, so the checks read and
 * write it directly; kernels may only be given device memory (or memory from cudaMallocHost). */
template <class T> struct Dev {
    T *p = nullptr;
    size_t n;
    explicit Dev(size_t n, T v = T()) : n(n) {
        if (cudaMalloc((void **)&p, n * sizeof(T)) != cudaSuccess) {
            fprintf(stderr, "simt selftest: cudaMalloc of %zu bytes failed\n", n * sizeof(T));
            exit(2);
        }
        fill(v);
    }
    ~Dev() { cudaFree(p); }
    Dev(const Dev &) = delete;
    Dev &operator=(const Dev &) = delete;
    void fill(T v) {
        for (size_t i = 0; i < n; i++) p[i] = v;
    }
    T &operator[](size_t i) { return p[i]; }
    T *begin() { return p; }
    T *end() { return p + n; }
};

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static float of_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------- mma.sync */

/* One warp: A 16×16 row-major, B 16×8 (stored as Bᵀ, 8 rows of 16), C and D 16×8 row-major, loaded into
 * fragments as attention_mma.cu loads them. */
__global__ void mma_kernel(const uint16_t *A, const uint16_t *Bt, const float *C, float *D) {
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    uint32_t a[4];
    a[0] = *(const uint32_t *)(A + g * 16 + 2 * t);
    a[1] = *(const uint32_t *)(A + (g + 8) * 16 + 2 * t);
    a[2] = *(const uint32_t *)(A + g * 16 + 2 * t + 8);
    a[3] = *(const uint32_t *)(A + (g + 8) * 16 + 2 * t + 8);
    const uint32_t b0 = *(const uint32_t *)(Bt + g * 16 + 2 * t), b1 = *(const uint32_t *)(Bt + g * 16 + 2 * t + 8);
    float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    simt::mma_m16n8k16_bf16(c, a, b0, b1);
    D[g * 8 + 2 * t] = c[0], D[g * 8 + 2 * t + 1] = c[1], D[(g + 8) * 8 + 2 * t] = c[2], D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

static void test_mma() {
    Dev<uint16_t> A(256), Bt(128);
    Dev<float> C(128), D(128, NAN);
    srand(7);
    for (auto &x : A) x = to_bf16((float)(rand() % 2001 - 1000) / 256.0f);
    for (auto &x : Bt) x = to_bf16((float)(rand() % 2001 - 1000) / 256.0f);
    for (auto &x : C) x = (float)(rand() % 2001 - 1000) / 64.0f;
    mma_kernel<<<1, 32>>>(A.p, Bt.p, C.p, D.p);
    double worst = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            double s = C[i * 8 + j];
            for (int k = 0; k < 16; k++) s += (double)of_bf16(A[i * 16 + k]) * of_bf16(Bt[j * 16 + k]);
            worst = fmax(worst, fabs(s - D[i * 8 + j]));
        }
    char buf[64];
    snprintf(buf, sizeof buf, "worst |D − (A·B + C)| = %g", worst);
    /* the inputs are multiples of 2^-8 and 2^-6 below 2^12: every partial sum is exact in f32 */
    check(cudaGetLastError() == cudaSuccess && worst == 0, "mma.sync m16n8k16 = A·B + C", buf);
}

/* ---------------------------------------------------------------- ldmatrix */

/* One warp: D (16×16) = A·B with A and B 16×16 row-major, both staged in shared memory (rows padded to
 * 24 elements) and read into mma fragments by ldmatrix as attention_mma.cu reads them: A with .x4 (its
 * four 8×8 quarters), B ([k][n], row-major) with .x4.trans (the column-major B operand of the two 8-wide
 * column blocks). bad = 1 gives lane 5 a row address 2 bytes off, bad = 2 one in global memory. */
__global__ void ldmatrix_kernel(const uint16_t *A, const uint16_t *B, float *D, int bad) {
    __shared__ __align__(16) uint16_t As[16 * 24], Bs[16 * 24];
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    for (int e = lane; e < 256; e += 32) As[e / 16 * 24 + e % 16] = A[e], Bs[e / 16 * 24 + e % 16] = B[e];
    __syncthreads();
    uint32_t a[4], b[4];
    const uint16_t *ra = As + (lane & 15) * 24 + (lane >> 4) * 8;
    if (bad == 1 && lane == 5) ra += 1;
    if (bad == 2 && lane == 5) ra = A;
    simt::ldmatrix_x4(a, ra, false);
    simt::ldmatrix_x4(b, Bs + (lane & 15) * 24 + (lane >> 4) * 8, true);
    float c0[4] = {0, 0, 0, 0}, c1[4] = {0, 0, 0, 0};
    simt::mma_m16n8k16_bf16(c0, a, b[0], b[1]); /* columns 0–7 */
    simt::mma_m16n8k16_bf16(c1, a, b[2], b[3]); /* columns 8–15 */
    for (int i = 0; i < 4; i++) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        D[row * 16 + col] = c0[i], D[row * 16 + 8 + col] = c1[i];
    }
}

static void test_ldmatrix() {
    Dev<uint16_t> A(256), B(256);
    Dev<float> D(256, NAN);
    srand(11);
    for (auto &x : A) x = to_bf16((float)(rand() % 2001 - 1000) / 256.0f);
    for (auto &x : B) x = to_bf16((float)(rand() % 2001 - 1000) / 256.0f);
    ldmatrix_kernel<<<1, 32>>>(A.p, B.p, D.p, 0);
    double worst = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += (double)of_bf16(A[i * 16 + k]) * of_bf16(B[k * 16 + j]);
            worst = fmax(worst, fabs(s - D[i * 16 + j]));
        }
    char buf[64];
    snprintf(buf, sizeof buf, "worst |D − A·B| = %g", worst);
    check(cudaGetLastError() == cudaSuccess && worst == 0, "ldmatrix.x4 and .x4.trans give mma.sync its A and B fragments", buf);
    ldmatrix_kernel<<<1, 32>>>(A.p, B.p, D.p, 1);
    expect_fault("an ldmatrix row address off 16 bytes fails the launch", "not 16-byte aligned");
    ldmatrix_kernel<<<1, 32>>>(A.p, B.p, D.p, 2);
    expect_fault("an ldmatrix row address in global memory fails the launch", "outside shared memory");
}

/* ---------------------------------------------------------------- cp.async */

/* Two blocks of 32 threads: each thread copies 16 bytes (lane 31: 8, the rest zero-filled) from src into
 * shared memory by cp.async, reads them before the wait and again after wait and barrier, writing both
 * to out (block b, lane l: out[(b·32 + l)·2 + {0, 1}], as 4 words each). bad = 1 gives lane 3 a
 * destination 8 bytes off, bad = 2 a destination in global memory. */
__global__ void cp_async_kernel(const uint32_t *src, uint32_t *out, int bad) {
    __shared__ __align__(16) uint32_t sh[32 * 4];
    const int l = threadIdx.x;
    for (int k = 0; k < 4; k++) sh[l * 4 + k] = 0;
    __syncthreads();
    uint32_t *dst = sh + l * 4;
    if (bad == 1 && l == 3) dst += 2;
    if (bad == 2 && l == 3) dst = out;
    simt::cp_async16(dst, src + l * 4, l == 31 ? 8 : 16);
    uint32_t *o = out + (blockIdx.x * 32 + l) * 8;
    for (int k = 0; k < 4; k++) o[k] = sh[l * 4 + k];
    simt::cp_async_wait_all();
    __syncthreads();
    for (int k = 0; k < 4; k++) o[4 + k] = sh[l * 4 + k];
}

static void test_cp_async() {
    Dev<uint32_t> src(128), out(512, 7);
    for (int i = 0; i < 128; i++) src[i] = 1000 + i;
    cp_async_kernel<<<2, 32>>>(src.p, out.p, 0);
    bool even = true, odd = true;
    for (int b = 0; b < 2; b++)
        for (int l = 0; l < 32; l++)
            for (int k = 0; k < 4; k++) {
                const uint32_t want = l == 31 && k >= 2 ? 0 : 1000 + l * 4 + k, *o = out.p + (b * 32 + l) * 8;
                if (b == 0) even &= o[k] == 0 && o[4 + k] == want;
                else odd &= o[k] == want && o[4 + k] == want;
            }
    const bool ok = cudaGetLastError() == cudaSuccess;
    check(ok && even, "cp.async lands at the wait in even blocks: a read before it sees the old bytes");
    check(ok && odd, "and at issue in odd blocks; bytes past the source size are zeros");
    cp_async_kernel<<<2, 32>>>(src.p, out.p, 1);
    expect_fault("a cp.async destination off 16 bytes fails the launch", "not 16 bytes of shared memory");
    cp_async_kernel<<<2, 32>>>(src.p, out.p, 2);
    expect_fault("a cp.async destination in global memory fails the launch", "not 16 bytes of shared memory");
}

/* ---------------------------------------------------------------- rule breaks */

__global__ void divergent_collectives(int *out) {
    int x = threadIdx.x;
    if (threadIdx.x < 16)
        x = __shfl_xor_sync(0xFFFFFFFFu, x, 1);
    else
        x = (int)__ballot_sync(0xFFFFFFFFu, 1);
    out[threadIdx.x] = x;
}

__global__ void shuffle_names_returned_lane(int *out) {
    if (threadIdx.x == 31) return;
    out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, (int)threadIdx.x, 1);
}

__global__ void shuffle_past_block(int *out) { out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, (int)threadIdx.x, 1); }

__global__ void barrier_and_collective(int *out) {
    if (threadIdx.x == 0)
        __syncthreads();
    else
        out[0] = __shfl_sync(0x3u, (int)threadIdx.x, 0);
}

__global__ void shuffle_outside_mask(int *out) {
    if (threadIdx.x < 2) out[threadIdx.x] = __shfl_sync(0x3u, (int)threadIdx.x, 5);
}

__global__ void missing_barrier(int *out, int n) {
    extern __shared__ int sh[];
    sh[threadIdx.x] = (int)threadIdx.x;
    /* no __syncthreads() here */
    out[threadIdx.x] = sh[(threadIdx.x + 1) % n];
}

__global__ void with_barrier(int *out, int n) {
    extern __shared__ int sh[];
    sh[threadIdx.x] = (int)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = sh[(threadIdx.x + 1) % n];
}

/* two threads store to one shared word between the same barriers: the last store wins on the emulator,
 * either on a GPU */
__global__ void both_store(int *out) {
    __shared__ int sh[2];
    sh[threadIdx.x / 2] = (int)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = sh[0];
}

/* lanes of one warp trading values through shared memory: legal after a __syncwarp that names both
 * lanes, a race with none, with one naming only lanes 0–15, or with a shuffle (it does not order
 * memory in CUDA's model) */
enum { TRADE_NONE, TRADE_SYNCWARP, TRADE_HALF_SYNCWARP, TRADE_SHUFFLE };
__global__ void warp_trade(int *out, int how) {
    __shared__ int sh[32];
    sh[threadIdx.x] = (int)threadIdx.x;
    if (how == TRADE_SYNCWARP) __syncwarp();
    if (how == TRADE_HALF_SYNCWARP && threadIdx.x < 16) __syncwarp(0xFFFFu);
    int pad = 0;
    if (how == TRADE_SHUFFLE) pad = __shfl_xor_sync(0xFFFFFFFFu, 0, 1);
    out[threadIdx.x] = sh[31 - threadIdx.x] + pad;
}

/* every thread counts into one shared word: atomics are not races */
__global__ void shared_count(int *out) {
    __shared__ int n;
    if (threadIdx.x == 0) n = 0;
    __syncthreads();
    atomicAdd(&n, 1);
    __syncthreads();
    out[threadIdx.x] = n;
}

__global__ void shared_before_write(int *out) {
    __shared__ int sh[64];
    out[blockIdx.x * 64 + threadIdx.x] = sh[threadIdx.x]; /* read before this block wrote it */
    __syncthreads();
    sh[threadIdx.x] = 7;
}

/* Global memory between the blocks of one grid, which run in no order: one word stored by two blocks;
 * a block reading what another wrote; one block writing what the others read; two blocks storing the
 * two bf16 halves of one word (not one location); every thread of four blocks counting into one word
 * with atomics; and a grid reading what the grid before it wrote, in another block (stream order makes
 * that safe). */
__global__ void global_both_store(int *out) { out[0] = (int)blockIdx.x; }
__global__ void global_neighbour(int *buf) {
    buf[blockIdx.x * 32 + threadIdx.x] = (int)threadIdx.x;
    buf[64 + blockIdx.x * 32 + threadIdx.x] = buf[((blockIdx.x + 1) % 2) * 32 + threadIdx.x];
}
__global__ void global_read_then_one_writes(int *buf) {
    const int x = buf[0];
    buf[1 + blockIdx.x] = x; /* every block reads word 0 (used, so the load stays) */
    if (blockIdx.x == 0) buf[0] = x + 1;
}
__global__ void global_halves(uint16_t *h) { h[blockIdx.x] = (uint16_t)(blockIdx.x + 1); }
__global__ void global_count(int *out) { atomicAdd(&out[0], 1); }
__global__ void global_store_own(int *buf) { buf[blockIdx.x] = (int)blockIdx.x + 10; }
__global__ void global_read_other(int *buf) { buf[2 + blockIdx.x] = buf[1 - blockIdx.x]; }

static void test_global_races() {
    Dev<int> buf(128, 0);
    global_both_store<<<2, 1>>>(buf.p);
    expect_fault("two blocks storing to one global word in one grid is a race", "race: global memory: a write after another block's write");
    global_neighbour<<<2, 32>>>(buf.p);
    expect_fault("a block reading what another block of its grid wrote is a race", "race: global memory:");
    global_read_then_one_writes<<<4, 1>>>(buf.p);
    expect_fault("a block writing what other blocks of its grid read is a race", "race: global memory:");
    Dev<uint16_t> halves(2, 0);
    global_halves<<<2, 1>>>(halves.p);
    expect_ran(halves[0] == 1 && halves[1] == 2, "two blocks storing the two bf16 halves of one word do not race");
    Dev<int> count(1, 0);
    global_count<<<4, 32>>>(count.p);
    expect_ran(count[0] == 128, "atomics of four blocks on one global word are not a race");
    global_store_own<<<2, 1>>>(buf.p);
    global_read_other<<<2, 1>>>(buf.p);
    expect_ran(buf[2] == 11 && buf[3] == 10, "a grid reading what the grid before it wrote, in another block, is not a race");
}

/* Global memory between the threads of one block, which follow shared memory's rule there: two threads
 * storing one word; threads reading their neighbours' words, without and with __syncthreads between;
 * lanes of a warp trading words, without and with __syncwarp between. */
__global__ void block_both_store(int *out) { out[0] = (int)threadIdx.x; }
__global__ void block_neighbours(int *buf, int barrier) {
    buf[threadIdx.x] = (int)threadIdx.x;
    if (barrier) __syncthreads();
    buf[64 + threadIdx.x] = buf[(threadIdx.x + 1) % 64];
}
__global__ void lanes_trade_global(int *buf, int sync) {
    buf[threadIdx.x] = (int)threadIdx.x;
    if (sync) __syncwarp();
    buf[32 + threadIdx.x] = buf[threadIdx.x ^ 1];
}

static void test_block_global_races() {
    Dev<int> buf(128, 0);
    block_both_store<<<1, 2>>>(buf.p);
    expect_fault("two threads of a block storing one global word is a race",
                 "race: global memory: a write after another thread's write");
    block_neighbours<<<1, 64>>>(buf.p, 0);
    expect_fault("threads reading global words other threads of their block write, with no barrier, race",
                 "race: global memory:");
    block_neighbours<<<1, 64>>>(buf.p, 1);
    expect_ran(buf[64] == 1 && buf[127] == 0, "with __syncthreads between, it is not");
    lanes_trade_global<<<1, 32>>>(buf.p, 0);
    expect_fault("lanes trading global words without __syncwarp race", "race: global memory:");
    lanes_trade_global<<<1, 32>>>(buf.p, 1);
    expect_ran(buf[32] == 1 && buf[33] == 0, "with __syncwarp they do not");
}

/* Loads and stores at offsets a kernel computes: a float4 or a bf16 pair off its size faults on a GPU
 * ("misaligned address"), and in the emulator, which x86 alone would not. */
__global__ void vec_load_at(const float *x, int off, float *out) {
    const float4 v = *(const float4 *)(x + off);
    out[0] = v.x + v.y + v.z + v.w;
}
__global__ void pair_store_at(uint16_t *h, int off) { *(uint32_t *)(h + off) = 0x00020001u; }

static void test_alignment() {
    Dev<float> x(16, 1.0f), out(1, 0.0f);
    vec_load_at<<<1, 1>>>(x.p, 1, out.p);
    expect_fault("a float4 load 4 bytes off 16 fails the launch", "misaligned address: a 16-byte load");
    vec_load_at<<<1, 1>>>(x.p, 4, out.p);
    expect_ran(out[0] == 4.0f, "a float4 load at a multiple of 16 runs");
    Dev<uint16_t> h(8, 0);
    pair_store_at<<<1, 1>>>(h.p, 3);
    expect_fault("a bf16 pair stored 2 bytes off 4 fails the launch", "misaligned address: a 4-byte store");
    pair_store_at<<<1, 1>>>(h.p, 2);
    expect_ran(h[2] == 1 && h[3] == 2, "a bf16 pair stored at a multiple of 4 runs");
}

static void test_rules() {
    Dev<int> out(64, 0);
    divergent_collectives<<<1, 32>>>(out.p);
    expect_fault("lanes in different warp collectives fail the launch", "divergent warp collectives");
    shuffle_names_returned_lane<<<1, 32>>>(out.p);
    expect_fault("a shuffle naming a returned lane fails the launch", "returned");
    shuffle_past_block<<<1, 20>>>(out.p);
    expect_fault("a full-mask shuffle in a 20-thread block fails the launch", "past the block's last thread");
    barrier_and_collective<<<1, 2>>>(out.p);
    expect_fault("a barrier and a collective waiting on each other: a deadlock", "deadlock");
    shuffle_outside_mask<<<1, 32>>>(out.p);
    expect_fault("a shuffle reading a lane outside its mask fails the launch", "not in the mask");

    const int n = 64;
    missing_barrier<<<1, n, n * sizeof(int)>>>(out.p, n);
    expect_fault("a shared-memory read missing its barrier is a race", "race:");
    with_barrier<<<1, n, n * sizeof(int)>>>(out.p, n);
    bool right = true;
    for (int i = 0; i < n; i++) right &= out[i] == (i + 1) % n;
    check(cudaGetLastError() == cudaSuccess && right, "the same read after __syncthreads is right");
    both_store<<<1, 2>>>(out.p);
    expect_fault("two threads storing to one shared word between barriers is a race", "race: a write after another thread's write");
    warp_trade<<<1, 32>>>(out.p, TRADE_NONE);
    expect_fault("lanes trading values through shared memory without __syncwarp race", "race:");
    warp_trade<<<1, 32>>>(out.p, TRADE_SHUFFLE);
    expect_fault("a shuffle between them does not order their accesses: still a race", "race:");
    warp_trade<<<1, 32>>>(out.p, TRADE_HALF_SYNCWARP);
    expect_fault("nor does a __syncwarp whose mask names only one of the two lanes", "race:");
    warp_trade<<<1, 32>>>(out.p, TRADE_SYNCWARP);
    check(cudaGetLastError() == cudaSuccess && out[0] == 31, "with __syncwarp they do not");
    shared_count<<<1, 64>>>(out.p);
    expect_ran(out[63] == 64, "atomics on one shared word are not a race");
    Dev<int> two(128, 0);
    shared_before_write<<<2, 64>>>(two.p);
    bool garbage = true;
    for (int i = 0; i < 128; i++) garbage &= two[i] == -1;
    check(cudaGetLastError() == cudaSuccess && garbage,
          "static shared memory read before its block writes it holds 0xFF bytes, not the last block's values");
}

/* ---------------------------------------------------------------- the traffic models: banks */

/* one warp: fills 33 rows of 32 floats (33 conflict-free requests), then each lane reads word
 * lane·stride: stride 1 and 33 touch 32 banks once each, stride 32 one bank 32 times */
__global__ void bank_words(float *out, int stride) {
    __shared__ float sh[33 * 32];
    for (int i = threadIdx.x; i < 33 * 32; i += 32) sh[i] = (float)i;
    __syncwarp();
    out[threadIdx.x] = sh[threadIdx.x * stride];
}

/* one warp copies 16 bytes a lane into shared memory with cp.async, at a stride of `stride` 16-byte
 * units: served 8 lanes at a time. (A vector access written in C++, *(float4 *)p, reaches the model as
 * the scalar accesses g++ splits it into; csrc/cuda touches shared memory only with scalars, ldmatrix
 * and cp.async.) Its source is read from global memory by the same instruction. */
__global__ void bank_cp16(const float *src, float *out, int stride) {
    __shared__ __align__(16) float sh[64 * 4];
    simt::cp_async16(sh + 4 * threadIdx.x * stride, src + 4 * threadIdx.x, 16);
    simt::cp_async_wait_all();
    out[threadIdx.x] = sh[4 * threadIdx.x * stride];
}

/* ldmatrix.x4 over 32 rows of 16 bytes, `pitch` bf16 elements apart */
__global__ void bank_ldsm(uint32_t *out, int pitch) {
    __shared__ __align__(16) uint16_t sh[32 * 64];
    for (int i = threadIdx.x; i < 32 * 64; i += 32) sh[i] = (uint16_t)i;
    __syncwarp();
    uint32_t r[4];
    simt::ldmatrix_x4(r, sh + threadIdx.x * pitch, false);
    out[threadIdx.x] = r[0] ^ r[1] ^ r[2] ^ r[3];
}

static void expect_traffic(simt::Mem mem, const char *kernel, unsigned long long requests, unsigned long long cost,
                           unsigned long long fewest, const char *what) {
    unsigned long long r = 0, c = 0, f = 0;
    const bool got = simt::traffic_take(mem, kernel, &r, &c, &f) && cudaGetLastError() == cudaSuccess;
    char detail[160];
    snprintf(detail, sizeof detail, "%llu requests, %llu %s, %llu at fewest (want %llu, %llu, %llu)", r, c,
             mem == simt::SHARED_MEM ? "wavefronts" : "sectors", f, requests, cost, fewest);
    check(got && r == requests && c == cost && f == fewest, what, detail);
}

static void expect_banks(const char *kernel, unsigned long long requests, unsigned long long wavefronts,
                         unsigned long long fewest, const char *what) {
    expect_traffic(simt::SHARED_MEM, kernel, requests, wavefronts, fewest, what);
}

static void test_banks() {
    simt::traffic_enable(simt::SHARED_MEM, true);
    Dev<float> out(32);
    Dev<uint32_t> outu(32);
    /* the fill: 33 requests of one wavefront, then the read */
    bank_words<<<1, 32>>>(out.p, 1);
    expect_banks("bank_words", 34, 34, 34, "banks: 32 consecutive words are one wavefront");
    bank_words<<<1, 32>>>(out.p, 32);
    expect_banks("bank_words", 34, 33 + 32, 34, "banks: 32 words one bank apart are 32 wavefronts");
    bank_words<<<1, 32>>>(out.p, 33);
    expect_banks("bank_words", 34, 34, 34, "banks: a stride of 33 words (a padded row) is one");
    bank_words<<<1, 32>>>(out.p, 0);
    expect_banks("bank_words", 34, 34, 34, "banks: 32 lanes reading one word are one (a broadcast)");
    /* the copy, then a read of one word a lane 4 or 8 words apart (4 or 8 wavefronts) */
    Dev<float> src(32 * 4);
    bank_cp16<<<1, 32>>>(src.p, out.p, 1);
    expect_banks("bank_cp16", 2, 4 + 4, 4 + 1, "banks: 16 bytes a lane, consecutive, are four wavefronts (8 lanes each)");
    bank_cp16<<<1, 32>>>(src.p, out.p, 2);
    expect_banks("bank_cp16", 2, 8 + 8, 4 + 1, "banks: 16 bytes a lane, 32 bytes apart, are eight");
    /* the fill: 64 requests of 32 two-byte stores, 64 bytes: one wavefront each */
    bank_ldsm<<<1, 32>>>(outu.p, 8);
    expect_banks("bank_ldsm", 65, 64 + 4, 64 + 4, "banks: ldmatrix.x4 over contiguous 16-byte rows is four wavefronts");
    bank_ldsm<<<1, 32>>>(outu.p, 64);
    expect_banks("bank_ldsm", 65, 64 + 32, 64 + 4, "banks: rows 128 bytes apart put a matrix's 8 rows in 4 banks: 32");
    bank_ldsm<<<1, 32>>>(outu.p, 72);
    expect_banks("bank_ldsm", 65, 64 + 4, 64 + 4, "banks: a row pitch of 144 bytes (padded by 16) is four again");
    simt::traffic_enable(simt::SHARED_MEM, false);
}

/* ---------------------------------------------------------------- the traffic models: sectors */

/* one warp: each lane reads one T at element lane·stride + offset and writes one float at its lane */
template <class T> __global__ void sector_read(const T *in, float *out, int stride, int offset) {
    out[threadIdx.x] = (float)in[threadIdx.x * stride + offset];
}

/* one warp: each lane reads 16 bytes (one float4) at 16-byte unit lane·stride: one access, as nvcc
 * emits it */
__global__ void sector_read16(const float4 *in, float *out, int stride) {
    const float4 v = in[threadIdx.x * stride];
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

/* one warp: each lane reads 4 consecutive floats of its own row, one at a time (a thread per row) */
__global__ void sector_rows(const float *in, float *out) {
    float s = 0;
    for (int j = 0; j < 4; j++) s += in[threadIdx.x * 4 + j];
    out[threadIdx.x] = s;
}

static void test_sectors() {
    simt::traffic_enable(simt::GLOBAL_MEM, true);
    Dev<float> in(32 * 32 + 64), out(32);
    Dev<float4> in4(64);
    /* every case also writes 32 consecutive floats: one request of 4 sectors, at fewest 4 */
    sector_read<float><<<1, 32>>>(in.p, out.p, 1, 0);
    expect_traffic(simt::GLOBAL_MEM, "sector_read<float>", 2, 4 + 4, 4 + 4, "sectors: 32 consecutive floats are four sectors");
    sector_read<float><<<1, 32>>>(in.p, out.p, 1, 4);
    expect_traffic(simt::GLOBAL_MEM, "sector_read<float>", 2, 5 + 4, 4 + 4, "sectors: the same, 16 bytes off a sector's start, five");
    sector_read<float><<<1, 32>>>(in.p, out.p, 0, 7);
    expect_traffic(simt::GLOBAL_MEM, "sector_read<float>", 2, 1 + 4, 1 + 4, "sectors: 32 lanes reading one float are one (a broadcast)");
    sector_read<float><<<1, 32>>>(in.p, out.p, 8, 0);
    expect_traffic(simt::GLOBAL_MEM, "sector_read<float>", 2, 32 + 4, 4 + 4, "sectors: floats 32 bytes apart are a sector each");
    sector_read<float><<<1, 32>>>(in.p, out.p, 2, 0);
    expect_traffic(simt::GLOBAL_MEM, "sector_read<float>", 2, 8 + 4, 4 + 4, "sectors: every other float is twice the fewest");
    sector_read<uint16_t><<<1, 32>>>((const uint16_t *)in.p, out.p, 1, 0);
    expect_traffic(simt::GLOBAL_MEM, "sector_read<uint16_t>", 2, 2 + 4, 2 + 4, "sectors: 32 consecutive 2-byte values (bf16) are two sectors");
    sector_read16<<<1, 32>>>(in4.p, out.p, 1);
    expect_traffic(simt::GLOBAL_MEM, "sector_read16", 2, 16 + 4, 16 + 4, "sectors: a float4 a lane, consecutive, is one request of 16 sectors");
    sector_read16<<<1, 32>>>(in4.p, out.p, 2);
    expect_traffic(simt::GLOBAL_MEM, "sector_read16", 2, 32 + 4, 16 + 4, "sectors: a float4 a lane, 32 bytes apart, is 32");
    sector_rows<<<1, 32>>>(in.p, out.p);
    expect_traffic(simt::GLOBAL_MEM, "sector_rows", 5, 4 * 16 + 4, 4 * 4 + 4, "sectors: a thread per row of 4 floats reads 16 sectors a request");
    /* cp.async reads its source from global memory: 16 bytes a lane (stride 1: 16 sectors) */
    bank_cp16<<<1, 32>>>(in.p, out.p, 1);
    expect_traffic(simt::GLOBAL_MEM, "bank_cp16", 2, 16 + 4, 16 + 4, "sectors: cp.async's source, 16 consecutive bytes a lane, is 16 sectors");
    simt::traffic_enable(simt::GLOBAL_MEM, false);
}

/* ---------------------------------------------------------------- launch limits */

__global__ void fill(int *out, int v) {
    const long long i = (long long)blockIdx.y * gridDim.x * blockDim.x + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = v;
}

__global__ void big_smem(int *out) {
    extern __shared__ int sh[];
    sh[threadIdx.x] = 1;
    out[threadIdx.x] = sh[threadIdx.x];
}

static void expect_config(const char *what) {
    cudaError_t e = cudaGetLastError();
    check(e == cudaErrorInvalidConfiguration, what, cudaGetErrorString(e));
}

static void test_limits() {
    Dev<int> out(4096);
    fill<<<dim3(1, 65536), 1>>>(out.p, 1);
    expect_config("grid.y 65536 is refused");
    fill<<<1, 1025>>>(out.p, 1);
    expect_config("1025 threads a block are refused");
    big_smem<<<1, 32, 49 * 1024>>>(out.p);
    expect_config("49 KiB of dynamic shared memory without cudaFuncSetAttribute is refused");
    check(cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 49 * 1024) == cudaSuccess,
          "cudaFuncSetAttribute raises the limit");
    big_smem<<<1, 32, 49 * 1024>>>(out.p);
    check(cudaGetLastError() == cudaSuccess && out[31] == 1, "then the same launch runs");
    check(cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) == cudaErrorInvalidValue,
          "past 227 KiB is refused");
    cudaGetLastError();
}

/* ---------------------------------------------------------------- graphs */

static void test_graph() {
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    Dev<int> a(256, 0), b(256, 0);
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed) == cudaSuccess, "capture begins");
    fill<<<2, 128, 0, s>>>(a.p, 5);
    cudaMemcpyAsync(b.p, a.p, 256 * sizeof(int), cudaMemcpyDeviceToDevice, s);
    check(a[0] == 0 && b[255] == 0, "captured work does not run");
    cudaGraph_t g;
    check(cudaStreamEndCapture(s, &g) == cudaSuccess, "capture ends");
    cudaGraphExec_t x;
    cudaGraphInstantiateWithFlags(&x, g, 0);
    cudaGraphDestroy(g);
    check(cudaGraphLaunch(x, s) == cudaSuccess && a[255] == 5 && b[0] == 5, "a launch replays the kernel and the copy");
    b.fill(0);
    check(cudaGraphLaunch(x, s) == cudaSuccess && b[128] == 5, "and again");
    cudaGraphExecDestroy(x);
    cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    check(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "a wait inside a capture is refused");
    check(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && g == NULL, "and spoils the capture");
    cudaGetLastError();
    cudaStreamDestroy(s);
}

/* ---------------------------------------------------------------- device memory */

__global__ void copy4(const uint4 *src, uint4 *dst) { dst[threadIdx.x] = src[threadIdx.x]; }

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*gemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                                  const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                                  cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static void test_memory() {
    Dev<int> dev(64, 0);
    std::vector<int> host(64, 0);
    fill<<<1, 64>>>(host.data(), 1);
    expect_fault("a kernel given host memory fails the launch", "pointer argument 0");
    int *pinned = nullptr;
    cudaMallocHost((void **)&pinned, 64 * sizeof(int));
    fill<<<1, 64>>>(pinned, 3);
    check(cudaGetLastError() == cudaSuccess && pinned[63] == 3, "memory from cudaMallocHost is the device's too");
    cudaFreeHost(pinned);
    Dev<uint4> v(4);
    copy4<<<1, 2>>>((const uint4 *)((char *)v.p + 4), v.p + 2);
    expect_fault("a uint4 argument 4 bytes off its alignment fails the launch", "not aligned");
    check(cudaMemcpyAsync(dev.p, host.data(), 64, cudaMemcpyDeviceToDevice, 0) == cudaErrorInvalidValue,
          "a device-to-device copy from host memory is refused");
    cudaGetLastError();
    check(cudaMemcpyAsync(dev.p + 60, host.data(), 5 * sizeof(int), cudaMemcpyHostToDevice, 0) == cudaErrorInvalidValue,
          "a copy past the end of its allocation is refused");
    cudaGetLastError();

    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    int *gone = nullptr;
    cudaMalloc((void **)&gone, 256 * sizeof(int));
    cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    fill<<<2, 128, 0, s>>>(gone, 5);
    cudaGraph_t g;
    cudaStreamEndCapture(s, &g);
    cudaGraphExec_t x;
    cudaGraphInstantiateWithFlags(&x, g, 0);
    cudaGraphDestroy(g);
    cudaFree(gone);
    check(cudaGraphLaunch(x, s) == cudaErrorLaunchFailure, "a graph replayed after its buffer was freed fails");
    expect_fault("naming the kernel's argument", "fill: pointer argument 0");
    cudaGraphExecDestroy(x);

    /* the emulated cuBLAS beside this binary, as the CUDA library binds it */
    create_fn create = (create_fn)dlsym(RTLD_DEFAULT, "cublasCreate_v2");
    set_stream_fn set_stream = (set_stream_fn)dlsym(RTLD_DEFAULT, "cublasSetStream_v2");
    gemm_fn gemm = (gemm_fn)dlsym(RTLD_DEFAULT, "cublasGemmEx");
    cublasHandle_t h = nullptr;
    check(create && set_stream && gemm && create(&h) == CUBLAS_STATUS_SUCCESS && set_stream(h, s) == CUBLAS_STATUS_SUCCESS,
          "the emulated cuBLAS is loaded");
    if (h) {
        Dev<float> A(8 * 8, 1), B(8 * 8, 1), C(8 * 8, 0);
        const float one = 1, zero = 0;
        check(gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, A.p, CUDA_R_32F, 8, B.p, CUDA_R_32F, 8, &zero, C.p,
                   CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS &&
                  cudaGetLastError() == cudaSuccess && C[63] == 8,
              "a GEMM within its buffers runs");
        gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, A.p, CUDA_R_32F, 8, B.p + 1, CUDA_R_32F, 8, &zero, C.p,
             CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        expect_fault("a GEMM whose B runs one element past its buffer fails", "B [");
    }
    cudaStreamDestroy(s);
}

/* ---------------------------------------------------------------- multiprocessor resources */

__global__ void heavy(int *out) { out[threadIdx.x] = 1; }
__global__ void unlisted(int *out) { out[threadIdx.x] = 1; }

/* This program's resource table (<executable>.resources, which the emulator reads at the first launch):
 * its kernels as light ones, except heavy, declared to use 128 registers a thread, and big_smem, with
 * 40 KiB of static shared memory; unlisted is left out. */
static bool write_table() {
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    FILE *f = fopen((std::string(exe) + ".resources").c_str(), "w");
    if (!f) return false;
    const struct {
        const void *fn;
        unsigned regs;
        unsigned shared;
    } ks[] = {{(const void *)mma_kernel, 40, 0},       {(const void *)ldmatrix_kernel, 40, 1536},
              {(const void *)cp_async_kernel, 32, 512},
              {(const void *)divergent_collectives, 16, 0},
              {(const void *)shuffle_names_returned_lane, 16, 0}, {(const void *)shuffle_past_block, 16, 0},
              {(const void *)barrier_and_collective, 16, 0},       {(const void *)shuffle_outside_mask, 16, 0},
              {(const void *)missing_barrier, 16, 0},             {(const void *)with_barrier, 16, 0},
              {(const void *)both_store, 16, 8},                  {(const void *)warp_trade, 16, 128},
              {(const void *)shared_count, 16, 4},
              {(const void *)fill, 16, 0},                        {(const void *)big_smem, 16, 40 << 10},
              {(const void *)copy4, 16, 0},                       {(const void *)heavy, 128, 0},
              {(const void *)shared_before_write, 16, 256},
              {(const void *)global_both_store, 16, 0},           {(const void *)global_neighbour, 16, 0},
              {(const void *)global_halves, 16, 0},               {(const void *)global_count, 16, 0},
              {(const void *)global_store_own, 16, 0},            {(const void *)global_read_other, 16, 0},
              {(const void *)global_read_then_one_writes, 16, 0},
              {(const void *)vec_load_at, 16, 0},                 {(const void *)pair_store_at, 16, 0},
              {(const void *)block_both_store, 16, 0},            {(const void *)block_neighbours, 16, 0},
              {(const void *)lanes_trade_global, 16, 0},
              {(const void *)bank_words, 16, 33 * 32 * 4},        {(const void *)bank_cp16, 16, 64 * 4 * 4},
              {(const void *)bank_ldsm, 16, 32 * 64 * 2},
              {(const void *)sector_read<float>, 16, 0},          {(const void *)sector_read<uint16_t>, 16, 0},
              {(const void *)sector_read16, 16, 0},               {(const void *)sector_rows, 16, 0}};
    bool ok = true;
    for (const auto &k : ks) {
        const char *sym = simt::kernel_symbol(k.fn);
        ok &= sym != nullptr;
        if (sym) fprintf(f, "sm_80 %u %u %s\nsm_90 %u %u %s\n", k.regs, k.shared, sym, k.regs, k.shared, sym);
    }
    return fclose(f) == 0 && ok;
}

static void expect_resources(const char *what, const char *want) {
    cudaError_t e = cudaGetLastError();
    const std::string msg = cudaGetErrorString(e);
    check(e == cudaErrorLaunchOutOfResources && msg.find(want) != std::string::npos, what, msg);
}

static void test_resources() {
    Dev<int> out(1024);
    heavy<<<1, 512>>>(out.p);
    check(cudaGetLastError() == cudaSuccess && out[511] == 1, "512 threads of 128 registers fit the 64 K register file");
    heavy<<<1, 1024>>>(out.p);
    expect_resources("1024 threads of 128 registers are refused", "128 registers a thread (ptxas) × 1024 threads");
    unlisted<<<1, 32>>>(out.p);
    expect_resources("a kernel missing from the resource table is refused", "no resource usage is recorded");
    cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
    big_smem<<<1, 32, 130 * 1024>>>(out.p);
    expect_resources("40 KiB static and 130 KiB dynamic shared memory exceed an A100's block", "on sm_80");
    big_smem<<<1, 32, 70 * 1024>>>(out.p);
    expect_resources("40 KiB static and 70 KiB dynamic shared memory exceed an L4's block", "on sm_86/sm_89");
    big_smem<<<1, 32, 59 * 1024>>>(out.p);
    check(cudaGetLastError() == cudaSuccess, "40 KiB static and 59 KiB dynamic fit");
}

int main() {
    if (!write_table()) {
        fprintf(stderr, "simt selftest: cannot write its resource table beside the executable\n");
        return 2;
    }
    test_mma();
    test_ldmatrix();
    test_cp_async();
    test_rules();
    test_global_races();
    test_block_global_races();
    test_alignment();
    test_limits();
    test_graph();
    test_memory();
    test_resources();
    test_banks();
    test_sectors();
    printf("simt selftest: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
