/* The SIMT emulator's stream, which a cudaStream_t of the emulated build points at. Its first member is
 * how the emulated cuBLAS (cublas.cpp, a library of its own) reaches the runtime: enqueue queues work on
 * the stream (run at once, or recorded while the stream captures a graph; the runtime owns arg from then
 * on and calls release(arg) when the task or the graph holding it is gone); device_range says whether
 * [p, p + bytes) lies in one allocation from cudaMalloc or cudaMallocHost; fault fails the work running
 * now, as a faulting kernel fails its launch, with msg as the error's text. */
#ifndef SERL_SIMT_STREAM_H
#define SERL_SIMT_STREAM_H

#include <cuda_runtime.h>

struct simt_stream_api {
    void (*enqueue)(cudaStream_t s, void (*fn)(void *arg), void *arg, void (*release)(void *arg));
    int (*device_range)(const void *p, size_t bytes);
    void (*fault)(const char *msg);
};

#endif
