/* Between the SIMT emulator's executor (simt.cpp) and its CUDA runtime (runtime.cpp). */
#ifndef SERL_SIMT_INTERNAL_H
#define SERL_SIMT_INTERNAL_H

#include <string>

namespace simt {

/* A kernel broke a rule of the hardware (a deadlock, a divergent collective, a lane reading an inactive
 * lane): the grid stops and the launch fails, as a faulting kernel does on a GPU, with msg as the error's
 * text (cudaGetErrorString of cudaErrorLaunchFailure). */
void launch_fault(const std::string &msg);

/* Whether a block of threads with dyn_shared bytes of dynamic shared memory fits the multiprocessor
 * of every GPU target fn was compiled for (registers and shared memory, resources.cpp); if not, why. */
bool resources_ok(const void *fn, unsigned threads, size_t dyn_shared, std::string &why);

} // namespace simt

#endif
