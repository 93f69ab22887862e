#!/usr/bin/python3
"""transformers' generate on the workload of `serl bench --mode decode` (bench/gpu-perf.sh runs both).

    python3 bench/hf_generate.py --config bench/qwen2.5-shapes/qwen2.5-0.5B/config.json \\
        --prompts 256 --samples 1 --new 256 --prompt-len 64 --device cuda

The model is transformers' own Qwen2ForCausalLM built from the config.json with its random
initialisation, in bfloat16, attention through SDPA (transformers' default), KV cache as generate
makes it. The prompts are random ids of --prompt-len tokens, all of the same length (no padding).
Every row generates exactly --new tokens (min_new_tokens = max_new_tokens bans EOS, as serl's bench
uses no stop id), sampled from the whole distribution at --temperature (top_k = 0, top_p = 1: both
off); --samples > 1 is num_return_sequences. Throughput = generated tokens / wall time of the whole
generate call (prefill included), the same measure as serl's tokens_per_s. Prints one JSON line.
What this Python cannot run (no torch, no CUDA, no transformers with Qwen2) ends it at once with exit
status 69 (EX_UNAVAILABLE) and one line saying why: bench/gpu-perf.sh reports that as SKIP.
"""

import argparse
import json
import sys
import time

from unavailable import unavailable


try:
    import torch
except ImportError as e:
    unavailable(f"{sys.executable} has no torch ({e})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="a Qwen2 config.json")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    if min(a.prompts, a.samples, a.new, a.prompt_len, a.runs) < 1 or a.warmup < 0 or a.temperature < 0:
        sys.exit("hf_generate: --prompts, --samples, --new, --prompt-len and --runs must be ≥ 1, --warmup and --temperature ≥ 0")

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        unavailable(f"torch {torch.__version__} sees no CUDA device")
    try:
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except ImportError as e:
        unavailable(f"{sys.executable} has no transformers with Qwen2 ({e})")

    try:
        with open(a.config) as f:
            cfg = Qwen2Config(**json.load(f))
    except (OSError, ValueError, TypeError) as e:
        sys.exit(f"--config {a.config}: {e}")
    torch.manual_seed(a.seed)
    model = Qwen2ForCausalLM(cfg).to(device=a.device, dtype=torch.bfloat16).eval()
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, cfg.vocab_size, (a.prompts, a.prompt_len), generator=g).to(a.device)
    mask = torch.ones_like(ids)
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else 0

    def generate(new):
        kw = dict(max_new_tokens=new, min_new_tokens=new, num_return_sequences=a.samples,
                  top_k=0, top_p=1.0, pad_token_id=eos, eos_token_id=eos)
        if a.temperature > 0:
            kw.update(do_sample=True, temperature=a.temperature)
        else:
            kw.update(do_sample=False)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, **kw)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    for _ in range(a.warmup):
        generate(min(4, a.new))
    start = time.perf_counter()
    for _ in range(a.runs):
        out = generate(a.new)
        if tuple(out.shape) != (a.prompts * a.samples, a.prompt_len + a.new):
            sys.exit(f"hf_generate: output of shape {tuple(out.shape)}, want {(a.prompts * a.samples, a.prompt_len + a.new)}")
    total = time.perf_counter() - start
    toks = a.prompts * a.samples * a.new * a.runs
    print(json.dumps({
        "impl": "transformers", "transformers": transformers.__version__, "torch": torch.__version__,
        "device": a.device, "config": a.config, "precision": "bf16",
        "attn": getattr(model.config, "_attn_implementation", "?"), "prompts": a.prompts, "samples": a.samples,
        "prompt_len": a.prompt_len, "new_tokens": a.new, "runs": a.runs,
        "seconds": total / a.runs, "tokens_per_s": toks / total,
    }))


if __name__ == "__main__":
    main()
