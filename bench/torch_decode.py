#!/usr/bin/python3
"""PyTorch side of bench/decode.sh: batched generation with the same Qwen2 model and workloads as
engine/generate's BenchmarkDecodeConfig.

    /usr/bin/python3 bench/torch_decode.py --config S --workload sampled --threads 2

The model is transformers' Qwen2 (modeling_qwen2.py, v4.51 era, attn_implementation="eager") written
out with plain torch ops in float32 (as bench/torch_model.py), with the KV cache of transformers'
DynamicCache: per layer past key/value tensors [B, KVH, T, D], torch.cat'ed with each step's new
ones; repeat_kv then eager attention (matmul, mask, softmax in float32, matmul). Generation is what
transformers' generate does for equal-length prompts without padding: one batched prefill of the
prompts computing lm_head on the last position only (logits_to_keep=1), then one token per step for
the whole batch; argmax (temperature 0) or torch.multinomial on softmax(logits / T) (temperature 1).
No stop token: every row generates exactly --new tokens.

Workloads (64 rows each): greedy and sampled — 64 prompts × 1; shared — 4 prompts × 16 samples,
expanded to 64 rows BEFORE the prefill, as generate(num_return_sequences=16) does (each copy of a
prompt is prefilled). Throughput = generated tokens / wall time of the whole generation (prefill
included). Weights: N(0, 0.02), norms 1, biases 0, untied lm_head. Prints one JSON line.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {  # the table of engine/generate/bench_test.go
    "S": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=704, vocab=2048),
    "M": dict(hidden=768, layers=12, heads=12, kv_heads=4, intermediate=2048, vocab=32000),
}
WORKLOADS = {  # prompts, samples per prompt, temperature
    "greedy": (64, 1, 0.0),
    "sampled": (64, 1, 1.0),
    "shared": (4, 16, 1.0),
}
# The building blocks are bench/torch_model.py's (the training benchmark's), so both benchmarks time
# one model definition; only attention differs here, for its KV cache.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import MLP, Rotary, RMSNorm, init_weights, rotate_half  # noqa: E402


def repeat_kv(x, rep):  # transformers' repeat_kv: [B, KVH, T, D] -> [B, KVH·rep, T, D]
    B, KVH, T, D = x.shape
    if rep == 1:
        return x
    return x[:, :, None].expand(B, KVH, rep, T, D).reshape(B, KVH * rep, T, D)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv = c["heads"], c["kv_heads"]
        self.hd = c["hidden"] // c["heads"]
        self.scaling = self.hd ** -0.5
        self.q_proj = nn.Linear(c["hidden"], self.nh * self.hd, bias=True)
        self.k_proj = nn.Linear(c["hidden"], self.nkv * self.hd, bias=True)
        self.v_proj = nn.Linear(c["hidden"], self.nkv * self.hd, bias=True)
        self.o_proj = nn.Linear(self.nh * self.hd, c["hidden"], bias=False)

    def forward(self, x, cos, sin, mask, cache, layer):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, -1, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, -1, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, self.hd).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        # DynamicCache.update: concatenate along the sequence axis
        if len(cache) <= layer:
            cache.append((k, v))
        else:
            pk, pv = cache[layer]
            k, v = torch.cat([pk, k], dim=-2), torch.cat([pv, v], dim=-2)
            cache[layer] = (k, v)
        rep = self.nh // self.nkv
        k, v = repeat_kv(k, rep), repeat_kv(v, rep)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if mask is not None:
            w = w + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(B, T, -1)
        return self.o_proj(o)



class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"])
        self.rotary = Rotary(c["hidden"] // c["heads"])
        self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)

    def forward(self, ids, past, cache):
        """ids [B, T] at positions past…past+T−1; returns the last position's logits [B, V]."""
        B, T = ids.shape
        pos = torch.arange(past, past + T, dtype=torch.int64)[None].expand(B, T)
        cos, sin = self.rotary(pos)
        mask = None
        if T > 1:  # transformers' 4-D causal mask: 0 where allowed, the dtype's min elsewhere
            mask = torch.full((T, past + T), torch.finfo(torch.float32).min).triu(past + 1)[None, None]
        x = self.embed_tokens(ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache, i)
        return self.lm_head(self.norm(x[:, -1:, :]))[:, -1].float()  # logits_to_keep=1



def generate(model, ids, new, temperature, gen):
    """Batched prefill of ids [B, T], then new−1 decode steps; returns the tokens [B, new] and the
    prefill's seconds."""
    cache = []
    out = []
    t0 = time.perf_counter()
    logits = model(ids, 0, cache)
    prefill_s = time.perf_counter() - t0
    past = ids.shape[1]
    for step in range(new):
        if temperature > 0:
            tok = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=gen)
        else:
            tok = logits.argmax(-1, keepdim=True)
        out.append(tok)
        if step == new - 1:
            break
        logits = model(tok, past, cache)
        past += 1
    return torch.cat(out, dim=1), prefill_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="S", choices=sorted(CONFIGS))
    ap.add_argument("--workload", default="sampled", choices=sorted(WORKLOADS))
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    c = CONFIGS[a.config]
    prompts, n, temperature = WORKLOADS[a.workload]
    torch.manual_seed(a.seed)
    model = Qwen2(c).eval()
    init_weights(model, a.seed)
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, c["vocab"], (prompts, a.prompt_len), generator=g)
    ids = ids.repeat_interleave(n, dim=0)  # num_return_sequences: expand before the prefill
    B = ids.shape[0]
    gen = torch.Generator().manual_seed(a.seed + 2)
    with torch.inference_mode():
        generate(model, ids, 2, temperature, gen)  # warm-up at the full batch
        times, pre = [], []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            toks, p = generate(model, ids, a.new, temperature, gen)
            times.append(time.perf_counter() - t0)
            pre.append(p)
            assert toks.shape == (B, a.new)
    total, prefill_s = sum(times), sum(pre)
    tokens = B * a.new
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "config": a.config, "workload": a.workload,
        "threads": torch.get_num_threads(), "runs": a.runs, "sequences": B, "tokens": tokens,
        "seconds": total / a.runs, "tokens_per_s": tokens * a.runs / total,
        "decode_tokens_per_s": (tokens - B) * a.runs / (total - prefill_s),
        "prefill_s": prefill_s / a.runs, "prefills": B,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", ""),
    }))


if __name__ == "__main__":
    main()
