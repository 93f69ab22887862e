/* Between the SIMT emulator's executor (simt.cpp) and its CUDA runtime (runtime.cpp). */
#ifndef SERL_SIMT_INTERNAL_H
#define SERL_SIMT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace simt {

/* A kernel broke a rule of the hardware (a deadlock, a divergent collective, a lane reading an inactive
 * lane): the grid stops and the launch fails, as a faulting kernel does on a GPU, with msg as the error's
 * text (cudaGetErrorString of cudaErrorLaunchFailure). */
void launch_fault(const std::string &msg);

/* Whether a block of threads with dyn_shared bytes of dynamic shared memory fits the multiprocessor
 * of every GPU target fn was compiled for (registers and shared memory, resources.cpp); if not, why. */
bool resources_ok(const void *fn, unsigned threads, size_t dyn_shared, std::string &why);

/* Stop the grid from inside the running CUDA thread, as a kernel fault (simt.cpp); race_fault's message
 * starts "race: ". */
[[noreturn]] __attribute__((format(printf, 1, 2))) void race_fault(const char *fmt, ...);
[[noreturn]] __attribute__((format(printf, 1, 2))) void kernel_fault(const char *fmt, ...);
/* A CUDA thread's load or store of n bytes at address a, which its type says is a multiple of n, is not
 * (race.cpp): the grid stops as a GPU's "misaligned address" would stop it, naming the source line at pc. */
[[noreturn]] void misaligned(uintptr_t a, size_t n, bool write, uintptr_t pc);
/* file:line of the instruction at pc, from the library's debug information (traffic.cpp). */
const std::string &source_line(uintptr_t pc);
/* How many __syncwarp calls warp w of the running block has completed, and whether one completed after
 * the first `since` of them had both lanes in its mask (simt.cpp): only __syncwarp orders memory
 * between lanes of a warp; shuffles, votes, mma.sync and ldmatrix do not. */
unsigned warp_syncs(int w);
bool warp_synced(int w, unsigned since, int lane_a, int lane_b);
/* How many collectives of any kind warp w of the running block has completed (simt.cpp). */
unsigned warp_gen(int w);

/* The shared-memory race detector (race.cpp): a block starts (its static and dynamic shared memory), a block
 * barrier is released, and an access the instrumentation cannot see (the executor's own: cp.async
 * landing, ldmatrix reading) by the thread of linear index tid in warp `warp`. */
void race_block_begin(void *stat, size_t stat_bytes, void *dyn, size_t dyn_bytes);
void race_barrier();
void race_access(int tid, int warp, const void *p, size_t n, bool write);
/* The global-memory side of it: device memory is the range [base, base + len) (runtime.cpp), whose
 * shadow the check keeps; [p, p + len) of it was freed; a grid starts. */
void race_region(void *base, size_t len);
void race_release(void *p, size_t len);
void race_grid_begin();

/* The memory-traffic models (traffic.cpp): whether one is on (SERL_SIMT_BANKS or SERL_SIMT_SECTORS names
 * a file, or traffic_enable said so), or either; a block of `warps` warps starts; lane `lane` of warp
 * `warp` accesses bytes of shared or device memory at addr from the instruction at pc (ignored while that
 * model is off); a block barrier is released or the block ends (its requests are counted for kernel); a
 * grid ends (the files are rewritten). */
bool traffic_on(Mem mem);
bool traffic_any();
void traffic_block_begin(unsigned warps);
void traffic_access(Mem mem, int warp, int lane, uintptr_t pc, const void *addr, size_t bytes);
void traffic_flush(const char *kernel);
void traffic_grid_end();

} // namespace simt

#endif
