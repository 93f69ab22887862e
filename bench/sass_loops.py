#!/usr/bin/env python3
"""The instruction mix of each CUDA kernel's hottest loop, from the static SASS (cuobjdump -sass), on a
machine without a GPU: how many instructions a loop body issues per tensor-core mma (HMMA), and of
which kinds. A tensor core waits on issue when that number is high; the forward attention's loop at
head_dim 64 had 21 per mma before its softmax went to base 2 (docs/ARCHITECTURE.md).

  bench/sass_loops.py [--arch sm_90] [--lib build/libserl_cuda.so] [REGEX]

A loop is the span from a backward branch's target to the branch; the one with the most HMMA is shown
(the largest, for a kernel with none). Its count is static: both sides of a branch in the body are in it.
"""
import argparse
import collections
import re
import subprocess
import sys

INS = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
PRED = re.compile(r"^@!?U?P[T0-9]+\s+")


def kernels(sass):
    name, body = None, []
    for line in sass.splitlines():
        if "Function :" in line:
            if name:
                yield name, body
            name, body = line.split("Function :", 1)[1].strip(), []
            continue
        m = INS.search(line)
        if name and m:
            text = PRED.sub("", m.group(2).strip())
            body.append((int(m.group(1), 16), text.split()[0] if text else "", text))
    if name:
        yield name, body


def hottest_loop(body):
    at = {addr: i for i, (addr, _, _) in enumerate(body)}
    best = None
    for i, (addr, op, text) in enumerate(body):
        m = re.search(r"\b0x([0-9a-f]+)", text) if op == "BRA" else None
        if not m:
            continue
        target = int(m.group(1), 16)
        if target >= addr or target not in at:
            continue
        loop = body[at[target]:i + 1]
        key = (sum(op.startswith("HMMA") for _, op, _ in loop), len(loop))
        if best is None or key > best[0]:
            best = (key, target, addr, loop)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("regex", nargs="?", default="mma", help="kernels whose mangled name matches (default: mma)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--lib", default="build/libserl_cuda.so")
    a = ap.parse_args()
    try:
        sass = subprocess.run(["cuobjdump", "-sass", "-arch", a.arch, a.lib], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"sass_loops: cuobjdump -sass -arch {a.arch} {a.lib}: {e}")
    rows = 0
    for name, body in kernels(sass):
        if not re.search(a.regex, name):
            continue
        best = hottest_loop(body)
        if not best:
            print(f"{name}: no loop")
            continue
        (hmma, n), lo, hi, loop = best
        mix = collections.Counter(op.split(".")[0] for _, op, _ in loop)
        per = f"{n / hmma:.1f} per HMMA" if hmma else "no HMMA"
        print(f"{name}\n  loop {lo:#x}-{hi:#x}: {n} instructions, {hmma} HMMA, {per}")
        print("  " + ", ".join(f"{k} {v}" for k, v in mix.most_common(16)))
        rows += 1
    if not rows:
        sys.exit(f"sass_loops: no kernel of {a.lib} ({a.arch}) matches {a.regex!r}")


if __name__ == "__main__":
    main()
