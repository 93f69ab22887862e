/* The caching device allocator (pool.cu). */
#ifndef SERL_CUDA_POOL_CUH
#define SERL_CUDA_POOL_CUH
#include <cuda_runtime.h>
#include <stddef.h>

struct serl_pool;
serl_pool *serl_pool_create(void);
void serl_pool_destroy(serl_pool *p);
/* Hands every cached block back to the driver. */
void serl_pool_trim(serl_pool *p);
/* Bytes held in the cache (free for reuse). */
size_t serl_pool_cached(serl_pool *p);
cudaError_t serl_pool_alloc(serl_pool *p, size_t bytes, void **out);
/* −1 when m was not allocated here. */
int serl_pool_free(serl_pool *p, void *m);
#endif
