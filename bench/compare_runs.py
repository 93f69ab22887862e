#!/usr/bin/env python3
"""Compares two serl run directories that must hold the same run (bench/gpu.sh: a 1-rank NCCL run
against the no-backend run): metrics.jsonl line by line without its clock and memory fields, every other
*.jsonl record file byte for byte, and the trained weights (checkpoint/model/model.safetensors) as
the relative L2 distance over all tensors. Prints one line; exits 1 when they differ beyond TOL
(default 0: an all-reduce over one rank must be an exact copy).

    bench/compare_runs.py RUN_A RUN_B [TOL]
"""
import glob
import json
import math
import os
import struct
import sys


def metrics(run):
    out = []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            out.append({k: v for k, v in m.items() if k != "time" and "sec" not in k and not k.endswith(("_s", "_ms", "_bytes"))})
    return out


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return header, data


def values(dtype, raw):
    if dtype == "F32":
        return struct.unpack(f"<{len(raw) // 4}f", raw)
    if dtype == "BF16":
        half = struct.unpack(f"<{len(raw) // 2}H", raw)
        return struct.unpack(f"<{len(half)}f", struct.pack(f"<{len(half)}I", *(h << 16 for h in half)))
    raise SystemExit(f"compare_runs: tensor dtype {dtype} not handled")


def rel_l2(a, b):
    ha, da = tensors(a)
    hb, db = tensors(b)
    if sorted(ha) != sorted(hb):
        raise SystemExit(f"compare_runs: {a} and {b} hold different tensors")
    if da == db:
        return 0.0
    num = den = 0.0
    for name, ia in ha.items():
        ib = hb[name]
        va = values(ia["dtype"], da[ia["data_offsets"][0]:ia["data_offsets"][1]])
        vb = values(ib["dtype"], db[ib["data_offsets"][0]:ib["data_offsets"][1]])
        num += sum((x - y) ** 2 for x, y in zip(va, vb))
        den += sum(x * x for x in va)
    return math.sqrt(num / den) if den else math.sqrt(num)


def main():
    a, b = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    problems = []
    ma, mb = metrics(a), metrics(b)
    if len(ma) != len(mb):
        problems.append(f"metrics of {len(ma)} vs {len(mb)} steps")
    elif ma != mb:
        i = next(i for i, (x, y) in enumerate(zip(ma, mb)) if x != y)
        keys = sorted(k for k in ma[i].keys() | mb[i].keys() if ma[i].get(k) != mb[i].get(k))
        problems.append(f"metrics differ from line {i + 1} in {', '.join(keys[:4])}{', …' if len(keys) > 4 else ''}")
    records = sorted(os.path.basename(p) for p in glob.glob(os.path.join(a, "*.jsonl")) if not p.endswith("metrics.jsonl"))
    w = "checkpoint/model/model.safetensors"
    d = rel_l2(os.path.join(a, w), os.path.join(b, w))
    if d > tol:
        problems.append(f"weights relative L2 {d:.3g} > {tol:g}")
    differ = [r for r in records if not os.path.exists(os.path.join(b, r)) or
              open(os.path.join(a, r), "rb").read() != open(os.path.join(b, r), "rb").read()]
    if differ:
        problems.append(f"{len(differ)} record files differ ({differ[0]}{', …' if len(differ) > 1 else ''})")
    summary = f"{len(ma)} steps, {len(records)} record files, weights relative L2 {d:.3g}"
    print(("SAME: " if not problems else "DIFFERENT: " + "; ".join(problems) + "; ") + summary)
    sys.exit(1 if problems else 0)


main()
