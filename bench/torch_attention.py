#!/usr/bin/python3
"""PyTorch's side of bench/gpu-perf.sh's attention step: causal attention forward and backward at the
shapes of kernels' BenchmarkCUDAAttention, in bf16, through F.scaled_dot_product_attention, so that
serl's kernels have a peer in the same run.

    python3 bench/torch_attention.py --device cuda --iters 5

The shapes: Qwen2.5-0.5B's training batch (16 sequences of 1,024 tokens, 14 query and 2 key/value heads
of 64) and 1.5B's (8 of 1,024, 12/2 heads of 128), as [batch, heads, tokens, head_dim] (serl packs the
same sequences end to end; they are all one length here). The FLOPs are counted as serl counts them: the
forward's two products, 4·pairs·heads·head_dim with n(n+1)/2 pairs a sequence, and the backward's 2.5×
that (its recomputed S included, as FlashAttention counts it). The backend is FlashAttention-2's where
this torch can pin it (torch.nn.attention.sdpa_kernel), else SDPA's own choice; grouped-query heads go
in as they are where SDPA takes them (enable_gqa, torch ≥ 2.5), else repeated to every query head first
(as transformers' repeat_kv), outside the timing. The output names both.

One JSON line per shape and pass: {"impl": "torch", "name": "0.5B/fwd", "tflops": ..., "backend": ...,
"gqa": ...}. The inputs are random (the kernels' time does not depend on them). --device cpu --small is
a dry run of the script's own logic at tiny shapes. What this Python cannot run (no torch, no CUDA, no
SDPA) ends it at once with exit status 69 and one line saying why (bench/unavailable.py).
"""

import argparse
import contextlib
import json
import sys
import time

from unavailable import unavailable

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    unavailable(f"{sys.executable} has no torch ({e})")

SHAPES = [  # name, sequences, tokens, query heads, key/value heads, head_dim (kernels/cuda_test.go)
    ("0.5B", 16, 1024, 14, 2, 64),
    ("1.5B", 8, 1024, 12, 2, 128),
]
SMALL = [("0.5B", 2, 64, 14, 2, 64), ("1.5B", 1, 64, 12, 2, 128)]


def backends():
    """(context, name) pairs to try in order: SDPA pinned to FlashAttention-2 where this torch can pin
    it, then SDPA's own choice."""
    out = []
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        out.append((lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION), "flash"))
    except ImportError:
        pass
    out.append((contextlib.nullcontext, "sdpa default"))
    return out


def timed(fn, iters, device):
    """Seconds per call of fn, after one call to warm up."""
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run (with --small)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="tiny shapes: a dry run of this script")
    a = ap.parse_args()
    if not hasattr(F, "scaled_dot_product_attention"):
        unavailable(f"torch {torch.__version__} has no F.scaled_dot_product_attention (torch ≥ 2.0)")
    if a.device == "cuda" and not torch.cuda.is_available():
        unavailable(f"torch {torch.__version__} sees no CUDA device")
    g = torch.Generator(device=a.device).manual_seed(1)
    for name, seqs, n, h, kvh, d in SMALL if a.small else SHAPES:
        def rand(heads):
            return torch.randn(seqs, heads, n, d, generator=g, device=a.device, dtype=torch.bfloat16)

        q, k, v, dout = rand(h), rand(kvh), rand(kvh), rand(h)
        kr, vr = (x.repeat_interleave(h // kvh, dim=1) for x in (k, v))  # transformers' repeat_kv
        chosen = None
        for ctx, backend in backends():
            for kk, vv, kw, gqa in ((k, v, {"enable_gqa": True}, "native"), (kr, vr, {}, "repeated")):
                try:
                    with ctx():
                        F.scaled_dot_product_attention(q, kk, vv, is_causal=True, **kw)
                except (TypeError, RuntimeError):  # no such argument, or no kernel for it here
                    continue
                chosen = ctx, backend, kk, vv, kw, gqa
                break
            if chosen:
                break
        if not chosen:
            unavailable(f"torch {torch.__version__}: no SDPA kernel runs causal bf16 attention at {name}")
        ctx, backend, k, v, kw, gqa = chosen
        for x in (q, k, v):
            x.requires_grad_(True)
        fwd_flop = 4 * seqs * n * (n + 1) / 2 * h * d
        with ctx():
            t_fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw), a.iters, a.device)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)
            t_bwd = timed(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), a.iters, a.device)
        for pas, t, flop in (("fwd", t_fwd, fwd_flop), ("bwd", t_bwd, 2.5 * fwd_flop)):
            print(json.dumps({"impl": "torch", "name": f"{name}/{pas}", "tflops": flop / t / 1e12, "ms": t * 1e3,
                              "backend": backend, "gqa": gqa, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
