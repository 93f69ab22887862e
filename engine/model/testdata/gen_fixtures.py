#!/usr/bin/python3
"""Generate PyTorch reference fixtures for serl's Go Qwen2 / Llama-3 model.

How to run (from the repository root):

    apt-get install -y python3-torch          # Debian's PyTorch (1.13), for /usr/bin/python3
    /usr/bin/python3 engine/model/testdata/gen_fixtures.py

The output is deterministic: every random draw comes from torch.manual_seed /
seeded torch.Generator objects, so re-running rewrites byte-identical files (on
the same PyTorch build).  Hugging Face transformers is NOT required: the two
architectures are re-implemented below in float64, following transformers'
modeling_qwen2.py / modeling_llama.py (v4.51 era) line by line:

  embed -> L x [ RMSNorm -> attention(q/k/v proj [+bias for Qwen2], RoPE
  (half-split rotate_half layout), GQA repeat_kv, causal mask, softmax,
  o_proj) -> residual -> RMSNorm -> MLP down(silu(gate(x)) * up(x)) ->
  residual ] -> final RMSNorm -> lm_head (tied to embed for the Qwen2 fixture).

RoPE precision (as in HF): inv_freq is computed in float32
(`1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))`),
the llama3 rope_scaling (`_compute_llama3_parameters`) is applied to it in
float32, the angles are `inv_freq[None, :, None] @ position_ids[:, None, :].float()`
in float32 (autocast disabled in HF), cos/sin are taken in float32, and only
then cast to the forward dtype -- float64 here.  Everything else in the
reference forward/backward is float64.

For each model, the weights are drawn once in float32 and written in three
storage dtypes: F32, BF16 and F16 (rounded with PyTorch's .to(torch.bfloat16) /
.to(torch.float16)).  Each folder's reference is computed FROM THE STORED
values (cast to float64), so a Go implementation that loads the folder sees
exactly the parameters the reference used.

Outputs, per folder engine/model/testdata/<name>/:
  config.json            HF config schema
  model.safetensors      weights (F32 / BF16 / F16), exact HF tensor names
  reference.json         ids, per-token log-probs, loss, rope tables index ...
  grads.safetensors      d loss / d param, F64, keyed by the HF param name
  activations.safetensors  float64 intermediates for one short sequence + rope tables
  greedy.json            greedy (argmax) continuation without KV cache
  reference_bf16.json, grads_bf16.safetensors   (f32 folders only) the same
                         batch under PyTorch bf16 autocast: the mixed-precision
                         reference serl's --precision bf16 is compared with

Self-checks (the script aborts if any fails): safetensors round trip,
finite-difference gradient checks (torch.autograd.gradcheck on two small
parameter tensors plus central differences on scattered entries of every
parameter kind against the full-batch loss), independence of packed sequences
(each sequence alone gives the same log-probs as inside the packed batch),
the llama3 rope_scaling actually changing frequencies in all three branches,
and greedy decoding by full forward consistent with the packed forward.
"""

import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20240611
TRANSFORMERS_VERSION = "4.51.3"
SEQ_LENS = [256, 97, 31, 2, 1]      # packed batch; positions restart at 0 per sequence
ACT_SEQ = 2                          # index of the sequence whose activations are dumped
GREEDY_PROMPT = 16
GREEDY_NEW = 64
ROPE_TABLE_LEN = 256                 # rows of rope.cos / rope.sin in activations.safetensors

# --------------------------------------------------------------------------
# Configs (HF schema).  config.json is written with sort_keys=True, indent=2,
# like transformers' PretrainedConfig.to_json_file.

QWEN2_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 160,
    "max_position_embeddings": 512,
    "max_window_layers": 2,
    "model_type": "qwen2",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "sliding_window": 512,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "transformers_version": TRANSFORMERS_VERSION,
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 256,
}

# original_max_position_embeddings=256 (not 64): with head_dim 8 and theta 5e5
# the four wavelengths are 6.28, 167, 4443 and 118145 positions, so the band
# [orig/high_freq_factor, orig/low_freq_factor] = [64, 256] catches exactly one
# of them and every branch of _compute_llama3_parameters is exercised
# (unchanged / smoothed / divided by factor).  With 64 the band [16, 64] would
# be empty and the smoothing formula would go untested.
LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": [2, 3],
    "head_dim": 8,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 192,
    "max_position_embeddings": 1024,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 8,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 4.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 256,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "transformers_version": TRANSFORMERS_VERSION,
    "use_cache": True,
    "vocab_size": 300,
}

# Weight standard deviations: chosen so that logits have std ~1 and attention
# is far from uniform.  Norm weights are 1 + 0.1*N(0,1).
STDS = {
    "embed": 0.125, "lm_head": 0.125,
    "q": 0.2, "k": 0.2, "v": 0.08, "o": 0.08,
    "q_bias": 0.2, "k_bias": 0.2, "v_bias": 0.05,
    "gate": 0.08, "up": 0.08, "down": 0.06,
}

DTYPES = {
    "f32": (torch.float32, "float32"),
    "bf16": (torch.bfloat16, "bfloat16"),
    "f16": (torch.float16, "float16"),
}

# --------------------------------------------------------------------------
# safetensors writer / reader


ST_DTYPE = {torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16",
            torch.float16: "F16", torch.int64: "I64", torch.int32: "I32"}
ST_TORCH = {v: k for k, v in ST_DTYPE.items()}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        arr = t.view(torch.int16).numpy().astype("<i2")
    else:
        arr = t.numpy()
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()


def write_safetensors(path, tensors, metadata=None):
    """Header: u64 LE length, JSON, space-padded to a multiple of 8; tensors
    tile the data region in sorted-name order; data_offsets relative to it."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        b = _tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    header["__metadata__"] = metadata if metadata is not None else {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    cursor = 0
    entries = sorted(((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__"))
    for begin, name in entries:
        v = header[name]
        b, e = v["data_offsets"]
        assert b == cursor, (name, b, cursor)
        cursor = e
        dt = ST_TORCH[v["dtype"]]
        buf = bytearray(data[b:e])
        if dt in (torch.bfloat16, torch.float16):
            t = torch.frombuffer(buf, dtype=torch.int16).view(dt)
        else:
            t = torch.frombuffer(buf, dtype=dt)
        out[name] = t.reshape(v["shape"]).clone()
    assert cursor == len(data), "data region not tiled"
    return out, header.get("__metadata__")


# --------------------------------------------------------------------------
# Model


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def param_shapes(cfg):
    H = cfg["hidden_size"]
    I = cfg["intermediate_size"]
    V = cfg["vocab_size"]
    hd = head_dim_of(cfg)
    nH = cfg["num_attention_heads"]
    nKV = cfg["num_key_value_heads"]
    qwen = cfg["model_type"] == "qwen2"
    attn_bias = qwen or cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False)
    assert not mlp_bias
    shapes = {"model.embed_tokens.weight": (V, H)}
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        shapes[p + "input_layernorm.weight"] = (H,)
        shapes[p + "self_attn.q_proj.weight"] = (nH * hd, H)
        shapes[p + "self_attn.k_proj.weight"] = (nKV * hd, H)
        shapes[p + "self_attn.v_proj.weight"] = (nKV * hd, H)
        if attn_bias:
            shapes[p + "self_attn.q_proj.bias"] = (nH * hd,)
            shapes[p + "self_attn.k_proj.bias"] = (nKV * hd,)
            shapes[p + "self_attn.v_proj.bias"] = (nKV * hd,)
        # Qwen2's o_proj never has a bias; Llama's follows attention_bias.
        shapes[p + "self_attn.o_proj.weight"] = (H, nH * hd)
        if attn_bias and not qwen:
            shapes[p + "self_attn.o_proj.bias"] = (H,)
        shapes[p + "post_attention_layernorm.weight"] = (H,)
        shapes[p + "mlp.gate_proj.weight"] = (I, H)
        shapes[p + "mlp.up_proj.weight"] = (I, H)
        shapes[p + "mlp.down_proj.weight"] = (H, I)
    shapes["model.norm.weight"] = (H,)
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, H)
    return shapes


def std_for(name):
    if name.endswith("layernorm.weight") or name == "model.norm.weight":
        return None
    if name == "model.embed_tokens.weight":
        return STDS["embed"]
    if name == "lm_head.weight":
        return STDS["lm_head"]
    short = name.split(".")[-2].replace("_proj", "")
    if name.endswith(".bias"):
        return STDS.get(short + "_bias", 0.05)
    return STDS[short]


def init_params(cfg, gen):
    """float32 master weights."""
    out = {}
    for name, shape in param_shapes(cfg).items():
        s = std_for(name)
        r = torch.randn(shape, generator=gen, dtype=torch.float32)
        out[name] = (1.0 + 0.1 * r) if s is None else (s * r)
    return out


def rope_inv_freq(cfg):
    """float32, exactly as transformers' ROPE_INIT_FUNCTIONS (default / llama3)."""
    base = cfg["rope_theta"]
    dim = int(head_dim_of(cfg) * cfg.get("partial_rotary_factor", 1.0))
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim))
    unscaled = inv_freq.clone()
    rs = cfg.get("rope_scaling")
    attention_factor = 1.0
    if rs is not None:
        assert rs.get("rope_type", rs.get("type")) == "llama3"
        factor = rs["factor"]
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        # wavelen < high_freq_wavelen: do nothing
        # wavelen > low_freq_wavelen: divide by factor
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        # otherwise: interpolate between the two, using a smooth factor
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    assert inv_freq.dtype == torch.float32
    return inv_freq, unscaled, attention_factor


def rope_cos_sin(inv_freq, attention_factor, positions):
    """float32 cos/sin [T, head_dim] as LlamaRotaryEmbedding/Qwen2RotaryEmbedding.forward."""
    position_ids = positions[None, :]                                   # [1, T] int64
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    with torch.autocast("cpu", enabled=False):  # as HF: the angles stay float32 under autocast
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * attention_factor
        sin = emb.sin() * attention_factor
    assert cos.dtype == torch.float32
    return cos[0], sin[0]


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x, w, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return w * x


LORA_SCALE = {"value": None}   # alpha / r while a LoRA fixture is computed (see build_lora)


def linear(x, P, prefix):
    y = x @ P[prefix + ".weight"].t()
    b = P.get(prefix + ".bias")
    y = y if b is None else y + b
    A = P.get(prefix + ".lora_A.weight")
    if A is not None:
        # PEFT's LoRA Linear.forward (dropout 0): result + lora_B(lora_A(x)) * scaling
        y = y + (x @ A.t()) @ P[prefix + ".lora_B.weight"].t() * LORA_SCALE["value"]
    return y


def forward(P, cfg, rope, ids_list, capture=None, dt=torch.float64):
    """Packed float64 forward.  ids_list: list of 1-D int64 tensors.  Each
    sequence has its own positions 0..n-1 and attends only within itself
    (block-diagonal causal mask).  Returns logits [T, V] (float64).
    dt is the dtype of the rope tables and the softmax: float64 for the
    reference, float32 for the bf16 autocast one (see autocast_reference)."""
    inv_freq, attention_factor = rope
    ids = torch.cat(ids_list)
    pos = torch.cat([torch.arange(len(s), dtype=torch.int64) for s in ids_list])
    seg = torch.cat([torch.full((len(s),), k, dtype=torch.int64) for k, s in enumerate(ids_list)])
    T = ids.shape[0]
    nH = cfg["num_attention_heads"]
    nKV = cfg["num_key_value_heads"]
    hd = head_dim_of(cfg)
    n_rep = nH // nKV
    eps = cfg["rms_norm_eps"]
    scaling = hd ** -0.5

    cos32, sin32 = rope_cos_sin(inv_freq, attention_factor, pos)
    cos = cos32.to(dt)[None]          # [1, T, hd]  (unsqueeze_dim=1 over heads)
    sin = sin32.to(dt)[None]
    allowed = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])

    x = P["model.embed_tokens.weight"][ids]
    if capture is not None:
        capture["hidden.0"] = x
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = linear(h, P, p + "self_attn.q_proj").view(T, nH, hd).transpose(0, 1)
        k = linear(h, P, p + "self_attn.k_proj").view(T, nKV, hd).transpose(0, 1)
        v = linear(h, P, p + "self_attn.v_proj").view(T, nKV, hd).transpose(0, 1)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        if capture is not None and i == 0:
            capture["layers.0.q_rope"] = q
            capture["layers.0.k_rope"] = k
            capture["layers.0.v"] = v
        # repeat_kv: query head j uses kv head j // n_rep
        k = k[:, None].expand(nKV, n_rep, T, hd).reshape(nH, T, hd)
        v = v[:, None].expand(nKV, n_rep, T, hd).reshape(nH, T, hd)
        scores = torch.matmul(q, k.transpose(1, 2)) * scaling
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=dt)
        o = torch.matmul(probs, v).transpose(0, 1).reshape(T, nH * hd)
        if capture is not None and i == 0:
            capture["layers.0.attn_probs"] = probs
            capture["layers.0.attn_out"] = o
        x = x + linear(o, P, p + "self_attn.o_proj")
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        m = torch.nn.functional.silu(linear(h, P, p + "mlp.gate_proj")) * linear(h, P, p + "mlp.up_proj")
        x = x + linear(m, P, p + "mlp.down_proj")
        if capture is not None:
            capture["hidden.%d" % (i + 1)] = x
    x = rms_norm(x, P["model.norm.weight"], eps)
    if capture is not None:
        capture["final_norm"] = x
    lm = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    logits = x @ lm.t()
    if capture is not None:
        capture["logits"] = logits
    return logits


def seq_logprobs(P, cfg, rope, ids_list, dt=torch.float64):
    """Per-sequence log p(ids[i] | ids[:i]) for i = 1..n-1, and the mean NLL."""
    logits = forward(P, cfg, rope, ids_list, dt=dt)
    lsm = torch.log_softmax(logits.to(dt), dim=-1)
    out = []
    start = 0
    for s in ids_list:
        n = len(s)
        if n > 1:
            out.append(lsm[start:start + n - 1].gather(1, s[1:, None])[:, 0])
        else:
            out.append(lsm.new_zeros(0))
        start += n
    allp = torch.cat(out)
    loss = -allp.sum() / allp.numel()
    return out, loss, logits


# --------------------------------------------------------------------------
# Self-checks


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def fd_checks(P, cfg, rope, ids_list, grads, gen, log):
    """Central finite differences of the full-batch loss on scattered entries
    of every parameter kind, plus torch.autograd.gradcheck on two small
    parameter tensors (short batch to keep the Jacobian cheap)."""
    h = 1e-5
    worst = 0.0
    names = sorted(P)
    ncheck = 0
    for name in names:
        # two entries per tensor: a random one and the largest-|grad| one
        g = grads[name].reshape(-1)
        idxs = [int(torch.randint(0, g.numel(), (1,), generator=gen)), int(g.abs().argmax())]
        for idx in idxs:
            flat = P[name].view(-1)
            old = flat[idx].item()
            with torch.no_grad():
                flat[idx] = old + h
                lp = seq_logprobs(P, cfg, rope, ids_list)[1].item()
                flat[idx] = old - h
                lm = seq_logprobs(P, cfg, rope, ids_list)[1].item()
                flat[idx] = old
            fd = (lp - lm) / (2 * h)
            ag = g[idx].item()
            err = abs(fd - ag) / max(1e-3, abs(ag))
            worst = max(worst, err)
            ncheck += 1
            check(err < 1e-6, "finite difference mismatch %s[%d]: fd=%r autograd=%r" % (name, idx, fd, ag))
    log("  finite differences: %d entries over %d tensors, worst rel err %.2e (h=%g)" % (ncheck, len(names), worst, h))

    # torch.autograd.gradcheck on whole (small) tensors
    short = [ids_list[2], ids_list[3]]
    targets = ["model.layers.1.input_layernorm.weight"]
    if "model.layers.0.self_attn.k_proj.bias" in P:
        targets.append("model.layers.0.self_attn.k_proj.bias")
    else:
        targets.append("model.norm.weight")
    for name in targets:
        base = {k: v.detach() for k, v in P.items()}

        def f(t, name=name):
            Q = dict(base)
            Q[name] = t
            return seq_logprobs(Q, cfg, rope, short)[1]
        t0 = P[name].detach().clone().requires_grad_(True)
        ok = torch.autograd.gradcheck(f, (t0,), eps=1e-6, atol=1e-9, rtol=1e-6)
        check(ok, "gradcheck failed for " + name)
        log("  torch.autograd.gradcheck(%s, %d elements): passed" % (name, t0.numel()))


def independence_check(P, cfg, rope, ids_list, batch_lp, log):
    worst = 0.0
    with torch.no_grad():
        for k, s in enumerate(ids_list):
            alone = seq_logprobs(P, cfg, rope, [s])[0][0]
            check(alone.shape == batch_lp[k].shape, "shape")
            if alone.numel():
                worst = max(worst, (alone - batch_lp[k]).abs().max().item())
        # reversing the order of the packed sequences must not change anything either
        rev = seq_logprobs(P, cfg, rope, ids_list[::-1])[0][::-1]
        for k in range(len(ids_list)):
            if rev[k].numel():
                worst = max(worst, (rev[k] - batch_lp[k]).abs().max().item())
        # causality: changing the last token of sequence 0 changes no earlier log-prob
        s0 = ids_list[0].clone()
        s0[-1] = (s0[-1] + 1) % cfg["vocab_size"]
        alt = seq_logprobs(P, cfg, rope, [s0] + ids_list[1:])[0]
        worst = max(worst, (alt[0][:-1] - batch_lp[0][:-1]).abs().max().item())
        check((alt[0][-1] - batch_lp[0][-1]).abs().item() > 0, "last token change had no effect")
    check(worst < 1e-12, "packed batch differs from per-sequence forward by %g" % worst)
    log("  independence/causality: max |logprob(alone) - logprob(packed)| = %.2e" % worst)


# --------------------------------------------------------------------------


def round_params(master, tdtype):
    return {k: v.to(tdtype) for k, v in master.items()}


def to_f64(stored):
    return {k: v.to(torch.float64) for k, v in stored.items()}


def greedy(P, cfg, rope, prompt):
    cur = prompt.clone()
    margins = []
    with torch.no_grad():
        for _ in range(GREEDY_NEW):
            logits = forward(P, cfg, rope, [cur])[-1]
            top = torch.topk(logits, 2)
            margins.append((top.values[0] - top.values[1]).item())
            cur = torch.cat([cur, top.indices[:1]])
    return cur[len(prompt):], margins


def rope_branch_report(cfg, inv, unscaled):
    rs = cfg.get("rope_scaling")
    rows = []
    if rs is None:
        return rows
    lo = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    hi = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    for a, b in zip(unscaled.tolist(), inv.tolist()):
        w = 2 * math.pi / a
        br = "high_freq_unchanged" if w < hi else ("low_freq_divided" if w > lo else "medium_smoothed")
        rows.append({"wavelen": w, "inv_freq_unscaled": a, "inv_freq": b, "branch": br})
    return rows


def build_family(family, cfg0, gen, log):
    master = init_params(cfg0, gen)
    V = cfg0["vocab_size"]
    ids_list = [torch.randint(0, V, (n,), generator=gen, dtype=torch.int64) for n in SEQ_LENS]
    inv_freq, unscaled, attn_factor = rope_inv_freq(cfg0)
    rope = (inv_freq, attn_factor)
    branches = rope_branch_report(cfg0, inv_freq, unscaled)
    if cfg0.get("rope_scaling") is not None:
        kinds = {r["branch"] for r in branches}
        check(kinds == {"high_freq_unchanged", "medium_smoothed", "low_freq_divided"},
              "llama3 rope scaling does not exercise all branches: %s" % kinds)
        changed = sum(1 for r in branches if r["inv_freq"] != r["inv_freq_unscaled"])
        check(changed > 0, "rope scaling changed nothing")
        log("  rope_scaling llama3: %d of %d frequencies changed" % (changed, len(branches)))
        for r in branches:
            log("    wavelen %10.2f  inv_freq %.9g -> %.9g  (%s)" % (r["wavelen"], r["inv_freq_unscaled"], r["inv_freq"], r["branch"]))

    for tag, (tdtype, tname) in DTYPES.items():
        name = "%s_%s" % (family, tag)
        log("[%s]" % name)
        folder = os.path.join(HERE, name)
        os.makedirs(folder, exist_ok=True)
        cfg = dict(cfg0)
        cfg["torch_dtype"] = tname
        with open(os.path.join(folder, "config.json"), "w") as f:
            f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

        stored = round_params(master, tdtype)
        write_safetensors(os.path.join(folder, "model.safetensors"), stored, {"format": "pt"})
        back, meta = read_safetensors(os.path.join(folder, "model.safetensors"))
        check(meta == {"format": "pt"} and set(back) == set(stored), "safetensors round trip: names")
        for k in stored:
            check(back[k].dtype == tdtype and torch.equal(back[k].view(-1).to(torch.float64),
                                                          stored[k].view(-1).to(torch.float64)),
                  "safetensors round trip: " + k)

        P = to_f64(stored)
        for v in P.values():
            v.requires_grad_(True)
        lps, loss, logits = seq_logprobs(P, cfg, rope, ids_list)
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in P.items()}
        for v in P.values():
            v.requires_grad_(False)
        n_pred = sum(x.numel() for x in lps)
        log("  loss %.12f over %d predicted tokens; logits std %.3f" % (loss.item(), n_pred, logits.std().item()))

        fd_checks(P, cfg, rope, ids_list, grads, gen, log)
        independence_check(P, cfg, rope, ids_list, [x.detach() for x in lps], log)
        if tag == "f32":
            autocast_reference(stored, cfg, rope, ids_list, [x.detach() for x in lps], grads, folder, log)

        write_safetensors(os.path.join(folder, "grads.safetensors"), grads,
                          {"format": "pt", "content": "d(mean NLL)/d(param), float64"})
        gback, _ = read_safetensors(os.path.join(folder, "grads.safetensors"))
        check(all(torch.equal(gback[k], grads[k]) for k in grads), "grads round trip")

        # activations of one short sequence + rope tables
        cap = {}
        with torch.no_grad():
            forward(P, cfg, rope, [ids_list[ACT_SEQ]], capture=cap)
            cos32, sin32 = rope_cos_sin(inv_freq, attn_factor, torch.arange(ROPE_TABLE_LEN, dtype=torch.int64))
        acts = {k: v.detach().clone().contiguous() for k, v in cap.items()}
        acts["rope.inv_freq"] = inv_freq.clone()
        acts["rope.cos"] = cos32.contiguous()
        acts["rope.sin"] = sin32.contiguous()
        write_safetensors(os.path.join(folder, "activations.safetensors"), acts,
                          {"format": "pt", "sequence_index": str(ACT_SEQ)})
        # the single-sequence logits must agree with the packed ones
        start = sum(SEQ_LENS[:ACT_SEQ])
        d = (cap["logits"] - logits.detach()[start:start + SEQ_LENS[ACT_SEQ]]).abs().max().item()
        check(d < 1e-12, "activation logits differ from packed logits by %g" % d)

        prompt = ids_list[0][:GREEDY_PROMPT]
        cont, margins = greedy(P, cfg, rope, prompt)
        # greedy step 0 must match the packed forward's argmax at position 15 of sequence 0
        check(int(logits[GREEDY_PROMPT - 1].argmax()) == int(cont[0]), "greedy step 0 mismatch")
        log("  greedy: %d distinct tokens in continuation, min top1-top2 logit margin %.3g"
            % (len(set(cont.tolist())), min(margins)))
        with open(os.path.join(folder, "greedy.json"), "w") as f:
            json.dump({
                "prompt": prompt.tolist(),
                "continuation": cont.tolist(),
                "top2_margin": margins,
                "note": "argmax of float64 logits, full forward over prompt+generated tokens each step "
                        "(no KV cache, positions 0..n-1); top2_margin[i] = logit(top1) - logit(top2) at step i",
            }, f, indent=1)
            f.write("\n")

        ref = {
            "model": name,
            "family": family,
            "weights_dtype": {"f32": "F32", "bf16": "BF16", "f16": "F16"}[tag],
            "reference_dtype": "float64",
            "seed": SEED,
            "torch_version": torch.__version__,
            "note": "Sequences are independent (positions restart at 0; packed with a block-diagonal "
                    "causal mask). logprobs[i] = log p(ids[i+1] | ids[:i+1]), float64. loss = mean of "
                    "-logprobs over all predicted tokens of all sequences. grads.safetensors holds "
                    "d loss/d param (F64) under the HF parameter names (tied embedding: both uses summed "
                    "into model.embed_tokens.weight).",
            "sequences": [{"ids": s.tolist(), "logprobs": lp.detach().tolist()} for s, lp in zip(ids_list, lps)],
            "num_predicted_tokens": n_pred,
            "loss": loss.item(),
            "grads_file": "grads.safetensors",
            "grad_names": sorted(grads),
            "activations_file": "activations.safetensors",
            "activations_sequence_index": ACT_SEQ,
            "activations": {k: {"dtype": ST_DTYPE[v.dtype], "shape": list(v.shape)} for k, v in sorted(acts.items())},
            "rope": {
                "inv_freq": inv_freq.tolist(),
                "inv_freq_unscaled": unscaled.tolist(),
                "attention_factor": attn_factor,
                "scaling_branches": branches,
            },
        }
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(ref, f, indent=1)
            f.write("\n")
        # JSON floats must round-trip exactly
        with open(os.path.join(folder, "reference.json")) as f:
            again = json.load(f)
        check(again["loss"] == loss.item() and again["sequences"][0]["logprobs"] == lps[0].detach().tolist(),
              "reference.json float round trip")


def autocast_reference(stored, cfg, rope, ids_list, lps64, grads64, folder, log):
    """bf16 mixed precision as PyTorch does it: float32 parameters, the same
    forward under torch.autocast("cpu", dtype=torch.bfloat16) (every matrix
    product rounds its inputs to bf16 and returns bf16; the residual stream,
    RMSNorm, RoPE, softmax and log-softmax stay float32), backward outside the
    autocast region as usual.  Written beside the float64 reference as
    reference_bf16.json (log-probs, loss, and the autocast run's own error
    against float64) and grads_bf16.safetensors (F32)."""
    P = {k: v.detach().to(torch.float32).clone().requires_grad_(True) for k, v in stored.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lps, loss, logits = seq_logprobs(P, cfg, rope, ids_list, dt=torch.float32)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in P.items()}
    check(logits.dtype == torch.bfloat16, "autocast did not run the lm_head product in bf16")
    lp_err = max((a.double() - b).abs().max().item() for a, b in zip(lps, lps64) if a.numel())
    g_err = {}
    for k in grads:
        num = (grads[k].double() - grads64[k]).pow(2).sum().item()
        den = grads64[k].pow(2).sum().item()
        g_err[k] = math.sqrt(num / max(den, 1e-300))
    worst = max(g_err, key=g_err.get)
    log("  bf16 autocast: loss %.6f; log-probs worst abs error %.3g, gradients worst rel L2 error %.3g (%s) against float64"
        % (loss.item(), lp_err, g_err[worst], worst))
    write_safetensors(os.path.join(folder, "grads_bf16.safetensors"), grads,
                      {"format": "pt", "content": "d(mean NLL)/d(param) under bf16 autocast, float32"})
    ref = {
        "note": "bf16 autocast reference: float32 parameters (this folder's), torch.autocast('cpu', "
                "dtype=torch.bfloat16) around the forward; log-probs and loss as in reference.json. "
                "autocast_error is this run's own error against the float64 reference.",
        "torch_version": torch.__version__,
        "sequences": [{"logprobs": lp.detach().double().tolist()} for lp in lps],
        "loss": loss.item(),
        "grads_file": "grads_bf16.safetensors",
        "autocast_error": {"logprobs_max_abs": lp_err, "grads_rel_l2": g_err},
    }
    with open(os.path.join(folder, "reference_bf16.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


# LoRA fixtures: per family, adapters over its f32 folder's weights. PEFT's layout: A [r, in] drawn as
# kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B [out, r] (zeros in PEFT; random here so
# that every gradient is non-zero), y = x W^T + (alpha/r) (x A^T) B^T.
LORA_FIXTURES = {
    "qwen2": {"r": 4, "alpha": 8.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    "llama": {"r": 3, "alpha": 16.0, "targets": ["q_proj", "v_proj", "o_proj", "down_proj"]},
}
LORA_MODULES = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def build_lora(family, cfg, gen, log):
    """<family>_lora/: adapter_config.json and adapter_model.safetensors (PEFT names, F32) over
    <family>_f32/, reference.json (log-probs and mean NLL of the same packed batch with the adapters on)
    and grads.safetensors (d loss / d adapter, F64, PEFT names; the base is frozen)."""
    lc = LORA_FIXTURES[family]
    base_dir = os.path.join(HERE, family + "_f32")
    folder = os.path.join(HERE, family + "_lora")
    os.makedirs(folder, exist_ok=True)
    log("[%s_lora] r %d, alpha %g, targets %s" % (family, lc["r"], lc["alpha"], ",".join(lc["targets"])))
    stored, _ = read_safetensors(os.path.join(base_dir, "model.safetensors"))
    with open(os.path.join(base_dir, "reference.json")) as f:
        base_ref = json.load(f)
    ids_list = [torch.tensor(q["ids"], dtype=torch.int64) for q in base_ref["sequences"]]
    inv_freq, _, attn_factor = rope_inv_freq(cfg)
    rope = (inv_freq, attn_factor)
    shapes = param_shapes(cfg)
    adapters = {}
    for i in range(cfg["num_hidden_layers"]):
        for t in lc["targets"]:
            mod = "model.layers.%d.%s.%s" % (i, LORA_MODULES[t], t)
            out, inn = shapes[mod + ".weight"]
            bound = 1.0 / math.sqrt(inn)
            adapters[mod + ".lora_A.weight"] = (torch.rand((lc["r"], inn), generator=gen, dtype=torch.float32) * 2 - 1) * bound
            adapters[mod + ".lora_B.weight"] = 0.05 * torch.randn((out, lc["r"]), generator=gen, dtype=torch.float32)
    peft = {"base_model.model." + k: v for k, v in adapters.items()}
    write_safetensors(os.path.join(folder, "adapter_model.safetensors"), peft, {"format": "pt"})
    acfg = {"base_model_name_or_path": "../%s_f32" % family, "bias": "none", "fan_in_fan_out": False,
            "inference_mode": True, "init_lora_weights": True, "lora_alpha": lc["alpha"], "lora_dropout": 0.0,
            "peft_type": "LORA", "r": lc["r"], "target_modules": lc["targets"], "task_type": "CAUSAL_LM",
            "use_dora": False, "use_rslora": False}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write(json.dumps(acfg, indent=2, sort_keys=True) + "\n")
    LORA_SCALE["value"] = lc["alpha"] / lc["r"]
    P = to_f64(stored)
    for k, v in adapters.items():
        P[k] = v.to(torch.float64).requires_grad_(True)
    lps, loss, _ = seq_logprobs(P, cfg, rope, ids_list)
    loss.backward()
    grads = {"base_model.model." + k: P[k].grad.detach().clone() for k in adapters}
    # the merged weights W + scale B A give the same log-probs (what serl merge writes)
    with torch.no_grad():
        M = {k: v for k, v in to_f64(stored).items()}
        for k in adapters:
            if k.endswith(".lora_A.weight"):
                mod = k[:-len(".lora_A.weight")]
                M[mod + ".weight"] = M[mod + ".weight"] + LORA_SCALE["value"] * (P[mod + ".lora_B.weight"] @ P[k])
        mlps, _, _ = seq_logprobs(M, cfg, rope, ids_list)
    d = max((a.detach() - b).abs().max().item() for a, b in zip(lps, mlps) if a.numel())
    check(d < 1e-10, "merged LoRA log-probs differ by %g" % d)
    base_lp = [torch.tensor(q["logprobs"], dtype=torch.float64) for q in base_ref["sequences"]]
    moved = max((a.detach() - b).abs().max().item() for a, b in zip(lps, base_lp) if a.numel())
    check(moved > 1e-3, "the adapters do not change the log-probs (%g)" % moved)
    # central differences on a few entries of every adapter tensor
    with torch.no_grad():
        for k in sorted(adapters):
            for _ in range(2):
                j = int(torch.randint(0, P[k].numel(), (1,), generator=gen))
                h = 1e-6
                old = P[k].view(-1)[j].item()
                P[k].view(-1)[j] = old + h
                lp_ = seq_logprobs(P, cfg, rope, ids_list)[1].item()
                P[k].view(-1)[j] = old - h
                lm_ = seq_logprobs(P, cfg, rope, ids_list)[1].item()
                P[k].view(-1)[j] = old
                fd = (lp_ - lm_) / (2 * h)
                an = grads["base_model.model." + k].view(-1)[j].item()
                check(abs(fd - an) <= 1e-6 + 1e-5 * abs(an), "LoRA finite difference %s[%d]: %g vs %g" % (k, j, fd, an))
    LORA_SCALE["value"] = None
    log("  loss %.12f (base %.12f); adapters move log-probs by up to %.3g; merged agrees to %.2g; finite differences pass"
        % (loss.item(), base_ref["loss"], moved, d))
    write_safetensors(os.path.join(folder, "grads.safetensors"), grads,
                      {"format": "pt", "content": "d(mean NLL)/d(adapter), float64, base frozen"})
    ref = {"base": family + "_f32", "r": lc["r"], "lora_alpha": lc["alpha"], "target_modules": lc["targets"],
           "note": "log-probs of reference.json's packed batch of the base folder, with the adapters on (PEFT math: "
                   "x W^T + (alpha/r) (x A^T) B^T), float64; loss = mean NLL; grads.safetensors = d loss / d adapter.",
           "sequences": [{"ids": s.tolist(), "logprobs": lp.detach().tolist()} for s, lp in zip(ids_list, lps)],
           "loss": loss.item(), "grad_names": sorted(grads)}
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)   # deterministic reductions
    logf = []

    def log(s):
        print(s)
        sys.stdout.flush()
        logf.append(s)
    # separate seeded generators per family so each is reproducible on its own
    lora_only = sys.argv[1:] == ["lora"]   # gen_fixtures.py lora: the LoRA folders only
    for k, (family, cfg) in enumerate((("qwen2", QWEN2_CONFIG), ("llama", LLAMA_CONFIG))):
        if not lora_only:
            gen = torch.Generator().manual_seed(SEED + k)
            log("== %s" % family)
            build_family(family, cfg, gen, log)
        build_lora(family, cfg, torch.Generator().manual_seed(SEED + 100 + k), log)
    log("all self-checks passed")


if __name__ == "__main__":
    main()
