#!/usr/bin/env bash
# serl's generation engine vs PyTorch, side by side: batched generation with the same Qwen2 model
# (random weights, untied embeddings), prompts and token counts, on the same number of CPU threads,
# alternating serl and torch so machine noise hits both; prints one table.
#
#   bench/decode.sh                          S and M; greedy, sampled, shared; once
#   CONFIGS=S bench/decode.sh                only config S
#   REPEAT=2 CONFIGS=S bench/decode.sh       two alternating rounds: median [range]
#   PRECISIONS="f32 bf16" bench/decode.sh    serl in each precision (--precision), one row each
#
# serl: engine/generate's BenchmarkDecodeConfig/<config>/<workload> (one Generate call after a short
# warm-up, JSON through $SERL_BENCH_JSON). torch: bench/torch_decode.py (eager float32, DynamicCache-
# style KV cache, batched prefill then one token per step). Workloads, 128 new tokens after 64-token
# random prompts, EOS banned: greedy / sampled = 64 prompts × 1 sample at temperature 0 / 1; shared =
# 4 prompts × 16 samples at temperature 1 (serl prefills each prompt once; torch, like transformers'
# num_return_sequences, expands the prompts to 64 rows before its prefill).
# tokens/s = generated tokens / wall time of the whole generation (prefill included); decode tokens/s
# = tokens of the decode steps / their time (serl: Stats.DecodeTime + SampleTime).
#
# Environment: THREADS (default nproc: SERL_THREADS, torch.set_num_threads, OMP/OpenBLAS threads),
# OPENBLAS_CORETYPE (set where torch's OpenBLAS does not know the CPU: bench/openblas-core.sh),
# PYTHON (default /usr/bin/python3 with Debian's python3-torch), REPEAT (1), CONFIGS ("S M"),
# PRECISIONS (serl's, "f32"; torch runs float32 eager once per round),
# WORKLOADS ("greedy sampled shared"). OMP_WAIT_POLICY defaults to PASSIVE: Debian's torch runs its
# GEMMs on OpenBLAS's own threads, and spinning OpenMP workers beside them (and beside any other job
# on a shared machine) make torch's small decode ops up to 5–10× slower — PASSIVE is torch at its best.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-$(nproc)}
PYTHON=${PYTHON:-/usr/bin/python3}
REPEAT=${REPEAT:-1}
CONFIGS=${CONFIGS:-S M}
PRECISIONS=${PRECISIONS:-f32}
WORKLOADS=${WORKLOADS:-greedy sampled shared}
export SERL_THREADS=$THREADS OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
. bench/openblas-core.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export GOTOOLCHAIN=$(awk '/^toolchain /{print $2}' go.mod) CGO_ENABLED=0
GOTOOLCHAIN=${GOTOOLCHAIN:-local}

if [[ ! -f build/libserl_cpu.so || -n $(find csrc -newer build/libserl_cpu.so -name '*.[ch]' | head -1) ]]; then
	./build.sh >&2
fi
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "bench/decode.sh: $PYTHON has no torch (apt-get install -y python3-torch)" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go test -c -o "$out/generate.test" ./engine/generate
echo "threads $THREADS; OMP_WAIT_POLICY=$OMP_WAIT_POLICY; $(uptime | sed 's/.*load/load/')" >&2
i=0
for ((r = 1; r <= REPEAT; r++)); do
	for c in $CONFIGS; do
		for w in $WORKLOADS; do
			# Alternate which side goes first, run by run.
			order=(serl torch)
			((i++ % 2 == 1)) && order=(torch serl)
			for impl in "${order[@]}"; do
				load=$(sed 's/ [0-9]*\/.*//' /proc/loadavg)
				echo "round $r: $impl $c $w (load $load)" >&2
				if [[ $impl == serl ]]; then
					for p in $PRECISIONS; do
						(cd engine/generate && SERL_BENCH_PRECISION=$p SERL_BENCH_JSON="$out/serl.jsonl" "$out/generate.test" -test.run '^$' \
							-test.bench "^BenchmarkDecodeConfig/$c/$w\$" -test.benchtime 1x >"$out/log" 2>&1) ||
							{ cat "$out/log" >&2; exit 1; }
						echo "$p: $(grep '^Benchmark' "$out/log")" >&2
					done
				else
					"$PYTHON" bench/torch_decode.py --config "$c" --workload "$w" --threads "$THREADS" >>"$out/torch.jsonl"
				fi
				echo "{\"impl\":\"$impl\",\"config\":\"$c\",\"workload\":\"$w\",\"load\":\"$load\"}" >>"$out/load.jsonl"
			done
		done
	done
done
echo "end: $(uptime | sed 's/.*load/load/')" >&2

"$PYTHON" - "$out/serl.jsonl" "$out/torch.jsonl" "$out/load.jsonl" <<'PY'
import json, statistics, sys
rows, loads = {}, {}
for path in sys.argv[1:3]:
    for line in open(path):
        r = json.loads(line)
        rows.setdefault((r["config"], r["workload"]), {}).setdefault((r["impl"], r.get("precision", "f32")), []).append(r)
for line in open(sys.argv[3]):
    r = json.loads(line)
    loads.setdefault((r["config"], r["workload"]), []).append(r["load"].split()[0])
def rng(xs, fmt):
    return fmt % statistics.median(xs) + ("" if len(xs) == 1 else " [" + fmt % min(xs) + "–" + fmt % max(xs) + "]")
TARGET = {"S": 2.0, "M": 1.0}
W = "%-6s %-8s %-9s %15s %15s %14s %7s %19s %19s %15s %12s %22s"
print(W % ("config", "workload", "precision", "serl tokens/s", "torch tokens/s", "ratio", "target", "serl decode tok/s",
           "torch decode tok/s", "serl prefills", "load (1 min)", "decode vs f32"))
order = {"greedy": 0, "sampled": 1, "shared": 2}
for (c, w) in sorted(rows, key=lambda k: ("SM".find(k[0]), order.get(k[1], 9))):
    t = rows[(c, w)][("torch", "f32")]
    for p in sorted((k[1] for k in rows[(c, w)] if k[0] == "serl"), key=lambda p: p != "f32"):
        s = rows[(c, w)][("serl", p)]
        ratios = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(s, t)]
        ok = "met" if statistics.median(ratios) >= TARGET[c] else "MISSED"
        f = rows[(c, w)].get(("serl", "f32"))
        vs = (rng([a["decode_tokens_per_s"] / b["decode_tokens_per_s"] for a, b in zip(s, f)], "%.2f×") + " (CPU " +
              rng([b["cpu_s"] / a["cpu_s"] for a, b in zip(s, f)], "%.2f×") + ")") if f and p != "f32" else ""
        print(W % (c, w, p, rng([a["tokens_per_s"] for a in s], "%.0f"), rng([b["tokens_per_s"] for b in t], "%.0f"),
                   rng(ratios, "%.2f×"), "≥%.0f× %s" % (TARGET[c], ok),
                   rng([a["decode_tokens_per_s"] for a in s], "%.0f"), rng([b["decode_tokens_per_s"] for b in t], "%.0f"),
                   "%d for %d seqs" % (statistics.median(a["prefills"] for a in s), s[0]["sequences"]),
                   ",".join(loads[(c, w)]), vs))
print("threads %s (torch %s, %d threads, OMP_WAIT_POLICY=%s); %d new tokens per sequence after 64-token prompts, "
      "EOS banned; median [range] over %d round(s); torch prefills every row (64 per run); "
      "serl allocs per Generate: %s"
      % (s[0]["threads"], t[0]["torch"], t[0]["threads"], t[0]["omp_wait_policy"], t[0]["tokens"] // t[0]["sequences"],
         len(s), "/".join("%s %s %.0f" % (c, w, statistics.median(a["allocs_per_op"] for a in rows[(c, w)][("serl", "f32")]))
                          for (c, w) in sorted(rows, key=lambda k: ("SM".find(k[0]), order.get(k[1], 9))))))
PY
