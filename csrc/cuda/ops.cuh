/* Launch helpers that one op's file offers to another's (internal). */
#ifndef SERL_CUDA_OPS_CUH
#define SERL_CUDA_OPS_CUH
#include "common.cuh"

/* dst[0..n) = src converted (cast.cu), queued on ctx's stream. */
int32_t serl_cast_launch(serl_cuda_ctx *ctx, const void *src, int32_t sdt, void *dst, int32_t ddt, int64_t n);

/* The attention kernels' grid: x = (sequence, query tile) pairs, y = heads. Sequences go with the tiles
 * on x (up to 2³¹ − 1 blocks) because y and z stop at 65535. A block reads its sequence and tile as
 * blockIdx.x / tiles and blockIdx.x % tiles. tiles covers the caller's max_len (capped at n_tokens), not
 * the sequences' actual lengths, which stay on the device: a tile past its sequence's end exits at once. */
static inline dim3 seq_grid(int tiles, int n_seqs, int heads) { return dim3((unsigned)tiles * (unsigned)n_seqs, (unsigned)heads); }
/* The bf16 tensor-core attention forward (attention_mma.cu): for validated args with bf16 q, k, v and
 * head_dim 64 or 128, when ctx->attn_mma (the default; SERL_CUDA_ATTN=cores turns it off). */
int32_t serl_attention_fwd_mma(serl_cuda_ctx *ctx, const serl_attention_fwd_args *a, int max_len);
/* The backward for bf16 q, k, v, dout and head_dim 64 or 128; Dv[i,h] = Σ dout·out already computed. */
int32_t serl_attention_bwd_mma(serl_cuda_ctx *ctx, const serl_attention_bwd_args *a, int max_len, const float *Dv);

#endif
