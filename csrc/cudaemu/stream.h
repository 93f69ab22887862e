/* The SIMT emulator's stream, which a cudaStream_t of the emulated build points at. Its first member is
 * how the emulated cuBLAS (cublas.cpp, a library of its own) queues work on it: run at once, or recorded
 * while the stream captures a graph. The runtime owns arg from then on and calls release(arg) when the
 * task (or the graph holding it) is gone. */
#ifndef SERL_SIMT_STREAM_H
#define SERL_SIMT_STREAM_H

#include <cuda_runtime.h>

struct simt_stream_api {
    void (*enqueue)(cudaStream_t s, void (*fn)(void *arg), void *arg, void (*release)(void *arg));
};

#endif
