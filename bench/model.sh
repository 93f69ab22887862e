#!/usr/bin/env bash
# serl vs PyTorch, side by side: the same Qwen2 model (random weights, untied embeddings), batch and
# step, on the same number of CPU threads, alternating serl and torch so machine noise hits both.
#
#   bench/model.sh                      S and M, train and score, once
#   REPEAT=3 bench/model.sh             three alternating rounds: the table gives the median and range
#   CONFIGS="S" MODES="train" bench/model.sh
#   PRECISIONS="f32 bf16" bench/model.sh  serl in each precision (--precision), one row each
#
# Environment: THREADS (default nproc: SERL_THREADS, torch.set_num_threads, OMP/OpenBLAS threads),
# OPENBLAS_CORETYPE (set where torch's OpenBLAS does not know the CPU: bench/openblas-core.sh),
# PYTHON (default /usr/bin/python3 with Debian's python3-torch), REPEAT (1), CONFIGS ("S M"),
# MODES ("train score"), PRECISIONS (serl's, "f32"; torch runs float32 eager), and STEPS_S / WARMUP_S / STEPS_M / WARMUP_M (10 / 3 / 3 / 1).
# serl allocs/step is the Go heap allocation count over the timed steps divided by their number.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-$(nproc)}
PYTHON=${PYTHON:-/usr/bin/python3}
REPEAT=${REPEAT:-1}
CONFIGS=${CONFIGS:-S M}
MODES=${MODES:-train score}
PRECISIONS=${PRECISIONS:-f32}
export SERL_THREADS=$THREADS OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
. bench/openblas-core.sh

if [[ ! -x bin/serl || -n $(find cmd engine kernels csrc loader -newer bin/serl -name '*.[ch]' -o -newer bin/serl -name '*.go' | head -1) ]]; then
	./build.sh >&2
fi
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "bench/model.sh: $PYTHON has no torch (apt-get install -y python3-torch)" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "threads $THREADS; $(uptime | sed 's/.*load/load/')" >&2
for ((r = 1; r <= REPEAT; r++)); do
	for c in $CONFIGS; do
		steps_var=STEPS_$c warmup_var=WARMUP_$c
		if [[ $c == S ]]; then steps=${!steps_var:-10} warmup=${!warmup_var:-3}; else steps=${!steps_var:-3} warmup=${!warmup_var:-1}; fi
		for m in $MODES; do
			# Alternate which side goes first, round by round.
			order=(serl torch)
			((r % 2 == 0)) && order=(torch serl)
			for impl in "${order[@]}"; do
				echo "round $r: $impl $c $m ($warmup warmup + $steps steps; $(uptime | sed 's/.*load average: //'))" >&2
				if [[ $impl == serl ]]; then
					for p in $PRECISIONS; do
						bin/serl bench --config "$c" --mode "$m" --precision "$p" --steps "$steps" --warmup "$warmup" --threads "$THREADS" --json 2>"$out/log" >>"$out/serl.jsonl" ||
							{ cat "$out/log" >&2; exit 1; }
					done
				else
					"$PYTHON" bench/torch_model.py --config "$c" --mode "$m" --steps "$steps" --warmup "$warmup" --threads "$THREADS" >>"$out/torch.jsonl"
				fi
			done
		done
	done
done

"$PYTHON" - "$out/serl.jsonl" "$out/torch.jsonl" <<'PY'
import json, statistics, sys
rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)
        rows.setdefault((r["config"], r["mode"]), {}).setdefault((r["impl"], r.get("precision", "f32")), []).append(r)
def rng(xs, fmt):
    return fmt % statistics.median(xs) + ("" if len(xs) == 1 else " [" + fmt % min(xs) + "–" + fmt % max(xs) + "]")
W = "%-6s %-5s %-9s %21s %21s %18s %15s %15s %18s %9s %16s %22s"
print(W % ("config", "mode", "precision", "serl tokens/s", "torch tokens/s", "ratio serl/torch", "best-step ratio", "CPU-time ratio",
           "serl RSS/plan", "torch RSS", "serl allocs/step", "vs serl f32"))
order = list(rows)  # configs in run order, train before score
for (c, m) in sorted(rows, key=lambda k: ([c for c, _ in order].index(k[0]), k[1] != "train")):
    t = rows[(c, m)][("torch", "f32")]
    for p in sorted((k[1] for k in rows[(c, m)] if k[0] == "serl"), key=lambda p: p != "f32"):
        s = rows[(c, m)][("serl", p)]
        ratios = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(s, t)]
        best = [b["ms_min"] / a["ms_min"] for a, b in zip(s, t)]
        cpu = [b["cpu_ms_per_step"] / a["cpu_ms_per_step"] for a, b in zip(s, t)]
        mid = sorted(s, key=lambda a: a["rss_over_plan"])[len(s) // 2]
        f = rows[(c, m)].get(("serl", "f32"))
        vs = (rng([a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(s, f)], "%.2f×") + " (CPU " +
              rng([b["cpu_ms_per_step"] / a["cpu_ms_per_step"] for a, b in zip(s, f)], "%.2f×") + ")") if f and p != "f32" else ""
        print(W % (c, m, p, rng([a["tokens_per_s"] for a in s], "%.0f"), rng([b["tokens_per_s"] for b in t], "%.0f"),
                   rng(ratios, "%.2f×"), rng(best, "%.2f×"), rng(cpu, "%.2f×"),
                   "%.0f/%.0f MiB %.2f×" % (mid["peak_rss_bytes"] / 2**20, mid["plan_bytes"] / 2**20, mid["rss_over_plan"]),
                   "%.0f MiB" % statistics.median([b["peak_rss_bytes"] / 2**20 for b in t]),
                   "%.2f (%d/%d steps)" % (max(a["allocs_per_step"] for a in s), sum(a["alloc_steps"] for a in s), sum(a["steps"] for a in s)),
                   vs))
print("threads %d (serl on %s; torch %s, %d threads); tokens = batch × seq per step; median [range] over %d round(s);"
      % (s[0]["threads"], s[0]["device"], t[0]["torch"], t[0]["threads"], len(s)))
print("best-step ratio = torch's fastest step / serl's fastest; CPU-time ratio = torch CPU-s per step / serl's;"
      " vs serl f32 = tokens/s over serl f32's (CPU-time: f32's CPU-s per step over this row's);"
      " allocs: the most per step over rounds (steps that allocated at all / timed steps)")
PY
