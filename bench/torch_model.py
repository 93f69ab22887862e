#!/usr/bin/python3
"""PyTorch side of bench/model.sh and bench/gpu-perf.sh: the same Qwen2 model, batch and step as `serl bench`.

    /usr/bin/python3 bench/torch_model.py --config S --mode train --steps 10 --warmup 3 --threads 2
    python3 bench/torch_model.py --device cuda --config bench/qwen2.5-shapes/qwen2.5-0.5B/config.json \
        --batch 16 --seq 1024 --precision bf16 --attn sdpa --fused [--compile]

The model is transformers' Qwen2ForCausalLM (modeling_qwen2.py, v4.51 era, attn_implementation="eager")
written out with plain torch ops in float32, as engine/model/testdata/gen_fixtures.py does in float64:
embed -> L x [RMSNorm -> q/k/v (biased) -> RoPE (rotate_half) -> repeat_kv -> matmul, causal mask,
softmax in float32 -> matmul -> o_proj -> residual -> RMSNorm -> down(silu(gate) * up) -> residual]
-> RMSNorm -> lm_head (untied for S and M; a config.json's tie_word_embeddings is honoured). The batch
runs as [B, T] with a causal mask (equal-length sequences).

The GPU peer (bench/gpu-perf.sh) is what a PyTorch user would run: --precision bf16 (autocast to
bfloat16 over float32 master weights, serl's bf16 mode), --attn sdpa (F.scaled_dot_product_attention,
causal, after repeat_kv as transformers' sdpa path), --fused (fused AdamW), and --compile
(torch.compile of the model). flops_per_token is serl bench's count (cmd/serl/bench.go): 3·(2N +
2·L·heads·head_dim·T) for training, a third of it for scoring, N every parameter (a tied embedding once).

train: loss = mean NLL of every next token (transformers' ForCausalLMLoss), backward,
clip_grad_norm_(1.0), torch.optim.AdamW(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0,
fused=False [foreach where the build has it]), zero_grad(set_to_none=False) as serl keeps its gradients.
score: torch.no_grad() forward, log_softmax, gather of the next-token log-probabilities.

Weights: N(0, 0.02), norms 1, biases 0 (transformers' _init_weights). Prints one JSON line.
What this Python or torch cannot run (no torch, no CUDA, no SDPA or torch.compile before torch 2.0)
ends it at once with exit status 69 (EX_UNAVAILABLE) and one line saying why: bench/gpu-perf.sh
reports that as SKIP, apart from a failure.
"""

import argparse
import json
import math
import resource
import sys
import time

from unavailable import unavailable


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    unavailable(f"{sys.executable} has no torch ({e})")

CONFIGS = {  # the table of cmd/serl/bench.go
    "S": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=704, vocab=2048, batch=8, seq=256),
    "M": dict(hidden=768, layers=12, heads=12, kv_heads=4, intermediate=2048, vocab=32000, batch=4, seq=512),
}
EPS = 1e-6
THETA = 10000.0


class RMSNorm(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(h))

    def forward(self, x):
        dt = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + EPS)
        return self.weight * x.to(dt)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    def __init__(self, head_dim):
        super().__init__()
        inv = 1.0 / (THETA ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, position_ids):  # [B, T] -> cos, sin [B, T, D]
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.sdpa = c.get("attn") == "sdpa"
        self.nh, self.nkv = c["heads"], c["kv_heads"]
        self.hd = c["hidden"] // c["heads"]
        self.scaling = self.hd ** -0.5
        self.q_proj = nn.Linear(c["hidden"], self.nh * self.hd, bias=True)
        self.k_proj = nn.Linear(c["hidden"], self.nkv * self.hd, bias=True)
        self.v_proj = nn.Linear(c["hidden"], self.nkv * self.hd, bias=True)
        self.o_proj = nn.Linear(self.nh * self.hd, c["hidden"], bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, -1, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, -1, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, self.hd).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        rep = self.nh // self.nkv  # repeat_kv
        k = k[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        v = v[:, :, None].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling)
        else:
            w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
            w = w + mask
            w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
            o = torch.matmul(w, v)
        o = o.transpose(1, 2).contiguous().reshape(B, T, -1)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["intermediate"], bias=False)
        self.down_proj = nn.Linear(c["intermediate"], c["hidden"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen2(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"])
        self.rotary = Rotary(c["hidden"] // c["heads"])
        self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        if c.get("tied"):
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, ids):
        B, T = ids.shape
        pos = torch.arange(T, dtype=torch.int64, device=ids.device)[None].expand(B, T)
        cos, sin = self.rotary(pos)
        # transformers' 4-D causal mask: 0 where allowed, the dtype's min elsewhere
        mask = torch.full((T, T), torch.finfo(torch.float32).min, device=ids.device).triu(1)[None, None]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x)).float()


def init_weights(model, seed, std=0.02):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def load_config(name):
    """S or M (with their batch), or a Hugging Face config.json (batch 8 × 256 as serl bench)."""
    if name in CONFIGS:
        return dict(CONFIGS[name])
    try:
        with open(name) as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"--config {name}: {e} (want S, M or a config.json path)")
    if j.get("hidden_size", 0) // j.get("num_attention_heads", 1) * j.get("num_attention_heads", 1) != j.get("hidden_size"):
        sys.exit(f"--config {name}: hidden_size must be a multiple of num_attention_heads")
    return dict(hidden=j["hidden_size"], layers=j["num_hidden_layers"], heads=j["num_attention_heads"],
                kv_heads=j.get("num_key_value_heads", j["num_attention_heads"]),
                intermediate=j["intermediate_size"], vocab=j["vocab_size"],
                tied=bool(j.get("tie_word_embeddings", False)), batch=8, seq=256,
                theta=float(j.get("rope_theta", THETA)), eps=float(j.get("rms_norm_eps", EPS)))


def main():
    global EPS, THETA
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="S", help="S, M or the path of a config.json")
    ap.add_argument("--batch", type=int, default=0, help="sequences per step (0: the configuration's)")
    ap.add_argument("--seq", type=int, default=0, help="tokens per sequence (0: the configuration's)")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                    help="bf16: autocast to bfloat16 over float32 master weights")
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    ap.add_argument("--fused", action="store_true", help="fused AdamW (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--mode", default="train", choices=["train", "score"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bench/gpu.sh, bench/gpu-perf.sh)")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        unavailable(f"torch {torch.__version__} sees no CUDA device")
    if a.compile and not hasattr(torch, "compile"):
        unavailable(f"--compile: torch {torch.__version__} has no torch.compile (torch ≥ 2.0)")
    if a.attn == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        unavailable(f"--attn sdpa: torch {torch.__version__} has no F.scaled_dot_product_attention (torch ≥ 2.0)")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    c = load_config(a.config)
    c["attn"] = a.attn
    THETA, EPS = c.get("theta", THETA), c.get("eps", EPS)
    B, T = a.batch or c["batch"], a.seq or c["seq"]
    torch.manual_seed(a.seed)
    model = Qwen2(c)
    init_weights(model, a.seed)
    params = sum(p.numel() for p in model.parameters())  # a tied weight once
    flops = 2 * params + 2 * c["layers"] * c["hidden"] * T
    if a.mode == "train":
        flops *= 3
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, c["vocab"], (B, T), generator=g)
    if a.device != "cpu":
        model = model.to(a.device)
        ids = ids.to(a.device)
    targets = ids[:, 1:]
    fwd = torch.compile(model) if a.compile else model
    autocast = lambda: torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")

    if a.mode == "train":
        kw = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
        try:
            opt = torch.optim.AdamW(model.parameters(), fused=a.fused, **kw)
        except TypeError:  # builds without the fused argument
            if a.fused:
                unavailable(f"--fused: torch {torch.__version__} has no fused AdamW")
            opt = torch.optim.AdamW(model.parameters(), **kw)
        plist = list(model.parameters())

        def step():
            with autocast():
                logits = fwd(ids)
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, c["vocab"]), targets.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plist, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=False)
            return loss.item()
    else:
        def step():
            with torch.no_grad(), autocast():
                lp = torch.log_softmax(fwd(ids).float(), dim=-1)
                lp = lp[:, :-1].gather(2, targets[..., None])[..., 0]
                return -lp.mean().item()

    loss_first = loss_last = float("nan")
    for i in range(a.warmup):
        loss = step()
        if i == 0:
            loss_first = loss
    times = []
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for i in range(a.steps):
        t0 = time.perf_counter()
        loss_last = step()
        times.append(time.perf_counter() - t0)
        if i == 0 and a.warmup == 0:
            loss_first = loss_last
    total = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "device": a.device, "config": a.config, "mode": a.mode,
        "precision": a.precision, "attn": a.attn, "fused": a.fused, "compile": a.compile,
        "threads": torch.get_num_threads(), "params": params,
        "batch": B, "seq": T, "warmup": a.warmup, "steps": a.steps,
        "tokens_per_s": B * T * a.steps / total, "flops_per_token": flops,
        "model_tflops": flops * B * T * a.steps / total / 1e12, "ms_per_step": 1e3 * total / a.steps,
        "ms_min": 1e3 * min(times), "ms_max": 1e3 * max(times), "cpu_ms_per_step": 1e3 * cpu / a.steps,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "loss_first": loss_first, "loss_last": loss_last,
    }))


if __name__ == "__main__":
    main()
