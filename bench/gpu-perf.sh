#!/usr/bin/env bash
# The GPU performance routine (issue 17, deliverable 5): serl beside PyTorch and transformers on the same
# GPU, on Qwen2.5-shaped random models, from the archive bench/gpu-prepare.sh builds (only bin/serl is
# used). Run it as its own device call after bench/gpu.sh has passed:
#
#   device run:  bench/gpu-perf.sh build/gpu.tar.gz         (carry: ["build/gpu.tar.gz"])
#
#   0. the card's bf16 GEMM rate (torch.matmul 8192³, cuBLAS): the peak MFU is quoted against
#   1. training, bf16, 0.5B shape 16 × 1024 and 1.5B shape 8 × 1024 tokens: serl bench --precision bf16
#      against PyTorch eager (bf16 autocast, SDPA attention, fused AdamW) and torch.compile of the same
#      model (bench/torch_model.py); tokens/s and MFU = flops_per_token × tokens/s / GEMM rate, the
#      same FLOP count for all (cmd/serl/bench.go's flopsPerToken)
#   2. decoding, bf16, 0.5B shape, 64-token prompts, 256 new tokens sampled at temperature 1: 256 prompts
#      × 1 and 16 prompts × 16 samples, serl bench --mode decode against transformers' generate
#      (bench/hf_generate.py)
#
# Full logs in $OUT (default ./gpu-out); the table last. Each step has its own timeout; the whole fits
# in about 7 minutes (torch.compile's first compile is most of it). COMPILE=0 leaves torch.compile out;
# SHAPES="0.5B" leaves the 1.5B shape out.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/gpu-unpack.sh
export PYTHONUNBUFFERED=1
summary=$OUT/perf-summary.txt
log=$OUT/perf.log
: >"$summary"
: >"$log"
row() { printf '%-34s %-8s %6ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$summary" >/dev/null; }

step() { # NAME TIMEOUT CMD...: appends CMD's output to $log; sets $status, $secs and $json (its last JSON line)
	local name=$1 limit=$2
	shift 2
	echo "=== $name: $*" >>"$log"
	local t0=$SECONDS
	timeout --kill-after=10 "$limit" "$@" >"$work/out" 2>>"$log"
	local rc=$?
	cat "$work/out" >>"$log"
	secs=$((SECONDS - t0))
	json=$(grep '^{' "$work/out" | tail -1)
	case $rc in
	0) status=ok ;;
	124 | 137) status=TIMEOUT ;;
	*) status=FAIL ;;
	esac
	echo "=== $name: exit $rc after ${secs}s" >>"$log"
}
field() { python3 -c 'import json, sys; v = json.loads(sys.argv[1] or "{}").get(sys.argv[2]); print("?" if v is None else v)' "$1" "$2"; }
fmt() { python3 -c 'import sys; print(sys.argv[1] if sys.argv[1] == "?" else format(float(sys.argv[1]), sys.argv[2]))' "$1" "$2"; }
mfu() { python3 -c 'import sys
try: print("%.1f%%" % (100 * float(sys.argv[1]) * float(sys.argv[2]) / (float(sys.argv[3]) * 1e12)))
except ValueError: print("?")' "$1" "$2" "$3"; }
ratio() { python3 -c 'import sys
try: print("%.2f×" % (float(sys.argv[1]) / float(sys.argv[2])))
except (ValueError, ZeroDivisionError): print("?")' "$1" "$2"; }

if ! python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
	echo "bench/gpu-perf.sh: python3 has no CUDA-enabled torch: no peer to compare with" >&2
	exit 1
fi

# 0. the card's bf16 GEMM rate
step "bf16 GEMM 8192³ (torch)" 60 python3 -c '
import json, time, torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(3): a @ b
torch.cuda.synchronize()
best = 0.0
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(10): a @ b
    torch.cuda.synchronize()
    best = max(best, 10 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e12)
print(json.dumps({"gemm_tflops": best, "gpu": torch.cuda.get_device_name()}))'
peak=$(field "$json" gemm_tflops)
row "bf16 GEMM 8192³" "$status" "$secs" "$(fmt "$peak" .0f) TFLOP/s on $(field "$json" gpu)"

# 1. training, bf16
for shape in ${SHAPES:-0.5B 1.5B}; do
	cfg=bench/qwen2.5-shapes/qwen2.5-$shape/config.json
	B=16
	[[ $shape == 0.5B ]] || B=8
	step "serl train $shape" 120 "$g/serl" bench --device cuda --precision bf16 --config "$cfg" --batch $B --seq 1024 \
		--mode train --steps 10 --warmup 3 --json
	s_tps=$(field "$json" tokens_per_s) fpt=$(field "$json" flops_per_token)
	row "train $shape ${B}×1024 serl" "$status" "$secs" "$(fmt "$s_tps" .0f) tok/s, MFU $(mfu "$fpt" "$s_tps" "$peak")"
	peers=(eager)
	[[ ${COMPILE:-1} == 0 ]] || peers+=(compile)
	for peer in "${peers[@]}"; do
		extra=()
		[[ $peer == compile ]] && extra=(--compile)
		step "torch train $shape $peer" 240 python3 bench/torch_model.py --device cuda --config "$cfg" --batch $B --seq 1024 \
			--mode train --precision bf16 --attn sdpa --fused --steps 10 --warmup 3 "${extra[@]}"
		t_tps=$(field "$json" tokens_per_s)
		row "train $shape torch $peer" "$status" "$secs" "$(fmt "$t_tps" .0f) tok/s, MFU $(mfu "$fpt" "$t_tps" "$peak"); serl/torch $(ratio "$s_tps" "$t_tps")"
	done
done

# 2. decoding, bf16, 0.5B shape
cfg=bench/qwen2.5-shapes/qwen2.5-0.5B/config.json
for w in "256 1" "16 16"; do
	read -r P N <<<"$w"
	step "serl decode ${P}×${N}" 180 "$g/serl" bench --device cuda --precision bf16 --config "$cfg" --mode decode \
		--prompts "$P" --samples "$N" --new 256 --prompt-len 64 --warmup 1 --steps 1 --json
	s_tps=$(field "$json" tokens_per_s)
	row "decode 0.5B ${P}×${N}×256 serl" "$status" "$secs" "$(fmt "$s_tps" .0f) tok/s (decode steps alone $(fmt "$(field "$json" decode_tokens_per_s)" .0f))"
	step "transformers generate ${P}×${N}" 180 python3 bench/hf_generate.py --device cuda --config "$cfg" \
		--prompts "$P" --samples "$N" --new 256 --prompt-len 64 --warmup 1 --runs 1
	t_tps=$(field "$json" tokens_per_s)
	row "decode 0.5B ${P}×${N}×256 generate" "$status" "$secs" "$(fmt "$t_tps" .0f) tok/s; serl/generate $(ratio "$s_tps" "$t_tps")"
done

echo
echo "serl GPU performance ($(cat "$g/commit")), logs in $OUT"
cat "$summary"
