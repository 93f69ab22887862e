#!/usr/bin/env bash
# The GPU performance routine (issue 17, deliverable 5): serl beside PyTorch and transformers on the same
# GPU, on Qwen2.5-shaped random models in bf16, from the archive bench/gpu-prepare.sh builds (only
# bin/serl is used). Run it as its own device call right after bench/gpu.sh (the machine stays warm only
# ~30 s between calls):
#
#   device run:  bench/gpu-perf.sh build/gpu.tar.gz     (carry: ["build/gpu.tar.gz"], timeout_s 240)
#
# The steps, in order: the acceptance figures first, then the rest while the budget lasts.
#
#   (always)     serl info --device $DEVICE; when it fails, every serl step is skipped (one row says so)
#   gemm         the card's bf16 GEMM rate (torch.matmul 8192³, cuBLAS), which MFU is quoted against
#   train0.5B    training, 0.5B shape, 16 × 1024 tokens: serl bench --precision bf16 against PyTorch eager
#                (bf16 autocast, SDPA attention, fused AdamW; bench/torch_model.py); tokens/s, MFU =
#                flops_per_token × tokens/s / GEMM rate (the same FLOP count for all: cmd/serl/bench.go's
#                flopsPerToken)
#   decode256    decoding, 0.5B shape, 256 prompts × 1 sample, 64-token prompts, 256 new tokens sampled at
#                temperature 1: serl bench --mode decode against transformers' generate (bench/hf_generate.py)
#   profile0.5B  serl's per-op table of a 0.5B training step (--op-profile: each op synchronised): the
#                top ops' shares in the row, the four dearest matrix products by shape (M×N×K) with their
#                TFLOP/s in another, the tables in the log; right after the acceptance figures, since it is
#                what tuning toward them reads
#   compile0.5B  torch.compile of the same model on the 0.5B shape (its first compile is most of its time)
#   train1.5B    training, 1.5B shape, 8 × 1024 tokens: serl against PyTorch eager
#   decode16     decoding, 16 prompts × 16 samples (they share the prompt's KV blocks), as decode256
#   compile1.5B  torch.compile on the 1.5B shape (the dearest)
#   ops          the memory-bound ops (log-softmax over the head, SwiGLU, RMSNorm, RoPE, AdamW …) at the
#                0.5B training shapes, and sampling 256 rows with and without top-p and decode attention
#                over 256 sequences of 320 cached tokens (decode256's last step), as GB/s (kernels'
#                BenchmarkCUDAOps; CUDA only)
#   attention    the attention kernels' forward and backward at the 0.5B and 1.5B training shapes as
#                TFLOP/s, on tensor cores (the default) and on CUDA cores (SERL_CUDA_ATTN=cores) (kernels'
#                BenchmarkCUDAAttention; CUDA only), beside PyTorch's SDPA (FlashAttention-2 where it can
#                be pinned) at the same shapes (bench/torch_attention.py), with the ratios
#
# The table ends with the issue's acceptance figures as ratios: serl/eager tokens/s on 0.5B training
# (target ≥ 1.0×), serl's MFU there (≥ 35% of the measured GEMM rate), serl/generate at 256 × 256 (≥ 10×).
#
# Time: the whole routine, unpacking included, ends within BUDGET seconds (default 225). A session's 15
# minutes of device time hold a machine start (1–2 minutes), bench/gpu.sh's correctness steps
# (BUDGET=200, timeout_s 260), this call (timeout_s 240) at once after it (the machine stays warm only
# 30 s), and the default serl train in what is left (README.md, "The GPU"); separate calls, since a
# machine that stops answering returns nothing of its call. The acceptance steps take about 2 minutes of
# it on the H200 (an estimate: torch's import and weight initialisation, generate at 2.9k tokens/s); the
# rest runs while the budget lasts. Each step's timeout is cut to what is left, and a step starts only
# while the budget holds what it usually takes (the seconds in the `unit` calls below); those left out
# for want of time are named in one `not run` row. STEPS="gemm train0.5B" runs only those (default
# all); BUDGET=580 (timeout_s 600) runs them all in a call of its own.
# DEVICE=cpu is a dry run on the CPU, here: tiny shapes in place of 0.5B and 1.5B (a 2-layer model of
# 64 hidden, 2 × 64 tokens, 8 × 16 decoded tokens), torch.matmul 512³; what this Python cannot run (no
# torch, no SDPA or torch.compile before torch 2.0, no transformers) says SKIP and why. PYTHON names the
# Python with torch (default: the first of python3, /usr/bin/python3 that imports torch).
#
# Full logs in $OUT (default ./gpu-out): perf.log and the table as it grows in perf-summary.txt; the
# table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-225}
STEPS=${STEPS:-all}
ALL_STEPS="gemm train0.5B decode256 profile0.5B compile0.5B train1.5B decode16 compile1.5B ops attention"
die() { echo "bench/gpu-perf.sh: $*" >&2; exit 2; }
[[ $DEVICE == cuda || $DEVICE == cpu ]] || die "DEVICE=$DEVICE: want cuda or cpu (the dry run)"
[[ $BUDGET =~ ^[0-9]+$ ]] || die "BUDGET=$BUDGET: want whole seconds"
if [[ $STEPS != all ]]; then
	for s in $STEPS; do
		[[ " $ALL_STEPS " == *" $s "* ]] || die "STEPS: no step $s (the steps: $ALL_STEPS)"
	done
fi
deadline=$BUDGET # $SECONDS counts from this shell's start: the unpacking is inside the budget
. bench/gpu-unpack.sh
export PYTHONUNBUFFERED=1
if [[ -z ${PYTHON:-} ]]; then
	PYTHON=python3
	for p in python3 /usr/bin/python3; do
		if "$p" -c 'import torch' >/dev/null 2>&1; then PYTHON=$p; break; fi
	done
fi
summary=$OUT/perf-summary.txt
log=$OUT/perf.log
: >"$summary"
: >"$log"
row() { # NAME STATUS SECONDS TEXT (python: printf pads bytes, and the names hold ×, ³)
	python3 -c 'import sys; print("%-36s %-7s %4ss  %s" % tuple(sys.argv[1:]))' "$@" >>"$summary"
}

notrun="" # the steps the budget had no room for
# unit NAME SECONDS: whether to run the routine's step NAME: asked for (STEPS), and the budget still
# holds SECONDS, what the step usually takes (a step begun without them would only time out).
unit() {
	[[ $STEPS == all || " $STEPS " == *" $1 "* ]] || return 1
	if ((deadline - SECONDS < $2)); then
		notrun+=" $1 (needs ~${2}s, $((deadline - SECONDS))s left)"
		return 1
	fi
}

UNAVAILABLE=69 # bench/torch_model.py's and bench/hf_generate.py's exit status for "this Python cannot run it"
# step NAME TIMEOUT CMD...: runs CMD with a timeout cut to the budget's remainder, its output appended
# to $log; sets $status (ok, FAIL, TIMEOUT, SKIP), $secs, $json (its last JSON line on stdout) and $why
# (its last line on stderr: the reason of a FAIL or SKIP).
step() {
	local name=$1 limit=$2
	shift 2
	local left=$((deadline - SECONDS - 10))
	((limit <= left)) || limit=$left
	json="" why="" secs=0
	if ((limit < 5)); then
		status=SKIP why="the time budget (BUDGET=${BUDGET}s) is spent"
		echo "=== $name: not run, $why" >>"$log"
		return
	fi
	echo "=== $name: $*" >>"$log"
	local t0=$SECONDS
	guarded "$limit" "$@" >"$work/out" 2>"$work/err"
	local rc=$?
	secs=$((SECONDS - t0))
	cat "$work/err" "$work/out" >>"$log"
	json=$(grep '^{' "$work/out" | tail -1)
	why=$(grep -v '^ *$' "$work/err" | tail -1 | sed 's/^serl [a-z]*: //' | cut -c1-220)
	case $rc in
	0) status=ok ;;
	124) status=TIMEOUT why="killed after its ${limit}s" ;;
	137) if ((secs >= limit)); then status=TIMEOUT why="killed after its ${limit}s"; else status=FAIL; fi ;;
	"$UNAVAILABLE") status=SKIP ;;
	*) status=FAIL ;;
	esac
	[[ ! -f $work/guard ]] || status=FAIL why=$(cat "$work/guard")
	echo "=== $name: exit $rc after ${secs}s (limit ${limit}s)" >>"$log"
}
field() { # JSON KEY: the value, or ? when absent
	python3 -c 'import json, sys
try: v = json.loads(sys.argv[1]).get(sys.argv[2])
except ValueError: v = None
print("?" if v is None else v)' "$1" "$2"
}
num() { python3 -c 'import sys; print(sys.argv[1] if sys.argv[1] == "?" else format(float(sys.argv[1]), sys.argv[2]))' "$1" "$2"; }
mfu() { # FLOPS_PER_TOKEN TOKENS_PER_S GEMM_TFLOPS: the model FLOP rate as a percentage of the GEMM rate
	python3 -c 'import sys
try: print("%.1f%%" % (100 * float(sys.argv[1]) * float(sys.argv[2]) / (float(sys.argv[3]) * 1e12)))
except (ValueError, ZeroDivisionError): print("?")' "$1" "$2" "$3"
}
ratio() { # A B: A/B as "1.23×", or ?
	python3 -c 'import sys
try: print("%.2f×" % (float(sys.argv[1]) / float(sys.argv[2])))
except (ValueError, ZeroDivisionError): print("?")' "$1" "$2"
}
vs() { # A B PEER: "= 1.23× PEER", or "(no PEER figure)"
	local r
	r=$(ratio "$1" "$2")
	if [[ $r == "?" ]]; then echo "(no $3 figure)"; else echo "= $r $3"; fi
}
# res STATUS WHY FIGURES: a step's figures when it ran, else the reason it did not
res() { if [[ $1 == ok ]]; then echo "$3"; else echo "$2"; fi; }

# The shapes: the issue's on the GPU; tiny ones in the dry run.
declare -A cfg batch
if [[ $DEVICE == cuda ]]; then
	for s in 0.5B 1.5B; do cfg[$s]=bench/qwen2.5-shapes/qwen2.5-$s/config.json; done
	batch=([0.5B]=16 [1.5B]=8) seq=1024 steps=(--steps 10 --warmup 3) gemm_n=8192
	dec_new=256 dec_plen=64 dec256=(256 1) dec16=(16 16) fused=(--fused) shape_note=""
else
	printf '%s\n' '{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":64,"num_hidden_layers":2,' \
		'"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":512,' \
		'"max_position_embeddings":512,"rms_norm_eps":1e-6,"rope_theta":10000.0,"tie_word_embeddings":true,"hidden_act":"silu"}' \
		>"$work/tiny.json"
	cfg=([0.5B]=$work/tiny.json [1.5B]=$work/tiny.json)
	batch=([0.5B]=2 [1.5B]=1) seq=64 steps=(--steps 3 --warmup 1) gemm_n=512
	dec_new=16 dec_plen=8 dec256=(8 1) dec16=(2 4) fused=() shape_note="(tiny)"
fi

# serl: does it open the device at all? If not, no serl step is run (one row).
serl_off=""
step "serl info" 20 "$g/serl" info --device "$DEVICE"
if [[ $status == ok ]]; then
	row "serl info ($DEVICE)" ok "$secs" "$(grep -m1 '^device' "$log" | sed 's/^device *//') ($(cat "$g/commit"))"
else
	serl_off="serl info --device $DEVICE failed"
	row "serl info ($DEVICE)" "$status" "$secs" "${why:-no output}; every serl step skipped"
fi
# serl_step NAME TIMEOUT ARGS...: serl ARGS as a step, unless serl is off ($serl_gone set: the step has
# no row, the row that turned serl off says it); a failure after which serl info no longer answers turns
# serl off for the rest (its row says so).
serl_step() {
	local name=$1 limit=$2
	shift 2
	serl_gone=""
	if [[ -n $serl_off ]]; then
		status=SKIP secs=0 json="" why="$serl_off" serl_gone=1
		return
	fi
	step "$name" "$limit" "$g/serl" "$@"
	if [[ $status == FAIL || $status == TIMEOUT ]] && ! timeout 20 "$g/serl" info --device "$DEVICE" >/dev/null 2>&1; then
		serl_off="the $DEVICE device stopped answering after $name"
		why+="; then serl info failed: the later serl steps are skipped"
	fi
}

peak="?" # the GEMM rate, TFLOP/s
declare -A s_tps fpt # serl's training tokens/s and FLOPs per token by shape
s_tps=([0.5B]="?" [1.5B]="?") fpt=([0.5B]="?" [1.5B]="?")
eager_tps="?" dec_ratio="?"

if unit gemm 15; then
	step "GEMM" 60 "$PYTHON" -c '
import json, platform, sys, time
try:
    import torch
except ImportError as e:
    print(f"{sys.executable} has no torch ({e})", file=sys.stderr)
    sys.exit(69)
dev, n = sys.argv[1], int(sys.argv[2])
if dev == "cuda" and not torch.cuda.is_available():
    print(f"torch {torch.__version__} sees no CUDA device", file=sys.stderr)
    sys.exit(69)
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
for _ in range(3): a @ b
sync()
best = 0.0
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(10): a @ b
    sync()
    best = max(best, 10 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e12)
name = torch.cuda.get_device_name() if dev == "cuda" else platform.processor() or platform.machine()
print(json.dumps({"gemm_tflops": best, "n": n, "gpu": name, "torch": torch.__version__}))' "$DEVICE" "$gemm_n"
	peak=$(field "$json" gemm_tflops)
	[[ $status == ok ]] || peak="?"
	row "bf16 GEMM ${gemm_n}³ (torch)" "$status" "$secs" "$(res "$status" "$why" "$(num "$peak" .1f) TFLOP/s on $(field "$json" gpu) (torch $(field "$json" torch)): MFU's denominator")"
fi

# train SHAPE: serl, then PyTorch eager, on one shape
train() {
	local s=$1 B=${batch[$1]}
	local label="train $s$shape_note ${B}×$seq"
	serl_step "serl train $s" 120 bench --device "$DEVICE" --precision bf16 --config "${cfg[$s]}" --batch "$B" --seq $seq \
		--mode train "${steps[@]}" --json
	local st=$status ss=$secs sw=$why
	s_tps[$s]=$(field "$json" tokens_per_s) fpt[$s]=$(field "$json" flops_per_token)
	# the same with the attention on CUDA cores: what the tensor-core attention (the default) gives
	SERL_CUDA_ATTN=cores serl_step "serl train $s (cores attention)" 90 bench --device "$DEVICE" --precision bf16 \
		--config "${cfg[$s]}" --batch "$B" --seq $seq --mode train "${steps[@]}" --json
	local cst=$status css=$secs csw=$why ctps=$(field "$json" tokens_per_s) cgone=$serl_gone
	step "torch eager train $s" 90 "$PYTHON" bench/torch_model.py --device "$DEVICE" --config "${cfg[$s]}" --batch "$B" --seq $seq \
		--mode train --precision bf16 --attn sdpa "${fused[@]}" "${steps[@]}"
	local t=$(field "$json" tokens_per_s)
	[[ $status == ok ]] || t="?"
	[[ ${fpt[$s]} != "?" ]] || fpt[$s]=$(field "$json" flops_per_token) # the same count (bench/torch_model.py)
	[[ $s != 0.5B ]] || eager_tps=$t
	[[ -n $serl_gone ]] || row "$label serl" "$st" "$ss" "$(res "$st" "$sw" "$(num "${s_tps[$s]}" .0f) tok/s $(vs "${s_tps[$s]}" "$t" eager), MFU $(mfu "${fpt[$s]}" "${s_tps[$s]}" "$peak")")"
	[[ -n $cgone ]] || row "$label serl, cores attn" "$cst" "$css" "$(res "$cst" "$csw" "$(num "$ctps" .0f) tok/s $(vs "$ctps" "$t" eager), MFU $(mfu "${fpt[$s]}" "$ctps" "$peak") (SERL_CUDA_ATTN=cores)")"
	row "$label torch eager" "$status" "$secs" "$(res "$status" "$why" "$(num "$t" .0f) tok/s, MFU $(mfu "${fpt[$s]}" "$t" "$peak") (bf16 autocast, SDPA, $([[ ${#fused[@]} -gt 0 ]] && echo fused || echo unfused) AdamW)")"
}
# compile SHAPE: torch.compile of the same model
compile() {
	local s=$1 B=${batch[$1]}
	step "torch.compile train $s" 240 "$PYTHON" bench/torch_model.py --device "$DEVICE" --config "${cfg[$s]}" --batch "$B" --seq $seq \
		--mode train --precision bf16 --attn sdpa "${fused[@]}" "${steps[@]}" --compile
	local t=$(field "$json" tokens_per_s)
	[[ ${fpt[$s]} != "?" ]] || fpt[$s]=$(field "$json" flops_per_token)
	row "train $s$shape_note ${B}×$seq torch.compile" "$status" "$secs" \
		"$(res "$status" "$why" "$(num "$t" .0f) tok/s, MFU $(mfu "${fpt[$s]}" "$t" "$peak"); serl $(vs "${s_tps[$s]}" "$t" compile)")"
}
# decode PROMPTS SAMPLES: serl, then transformers' generate, on the 0.5B shape
decode() {
	local P=$1 N=$2
	local label="decode 0.5B$shape_note ${P}×${N}×$dec_new"
	serl_step "serl decode ${P}×${N}" 90 bench --device "$DEVICE" --precision bf16 --config "${cfg[0.5B]}" --mode decode \
		--prompts "$P" --samples "$N" --new $dec_new --prompt-len $dec_plen --warmup 1 --steps 1 --json
	local st=$status ss=$secs sw=$why s=$(field "$json" tokens_per_s) sd=$(field "$json" decode_tokens_per_s)
	step "transformers generate ${P}×${N}" 90 "$PYTHON" bench/hf_generate.py --device "$DEVICE" --config "${cfg[0.5B]}" \
		--prompts "$P" --samples "$N" --new $dec_new --prompt-len $dec_plen --warmup 1 --runs 1
	local t=$(field "$json" tokens_per_s)
	[[ $status == ok ]] || t="?"
	[[ $P/$N != "${dec256[0]}/${dec256[1]}" ]] || dec_ratio=$(ratio "$s" "$t")
	[[ -n $serl_gone ]] || row "$label serl" "$st" "$ss" "$(res "$st" "$sw" "$(num "$s" .0f) tok/s $(vs "$s" "$t" generate); decode steps alone $(num "$sd" .0f) tok/s")"
	row "$label generate" "$status" "$secs" "$(res "$status" "$why" "$(num "$t" .0f) tok/s (transformers $(field "$json" transformers), $(field "$json" attn) attention)")"
}

# The seconds in each unit call: what the step should take on the H200, not yet measured there: each
# process's import and random weights (serl ~4 s for 0.5B and ~12 s for 1.5B of Go normals, torch a
# few), the timed steps at the peers' speeds in ../shared/NOTES.md (generate 2.9k tokens/s at 256 × 1,
# 10k at 16 × 16), torch.compile's first compile (about a minute and a half).
if unit train0.5B 50; then train 0.5B; fi
if unit decode256 60; then decode "${dec256[@]}"; fi
# where a 0.5B training step's time goes: serl's per-op table (each op synchronised, so times are real
# and the step slower than train0.5B's), its top ops in the row, the whole table in the log
if [[ -z $serl_off ]] && unit profile0.5B 30; then
	serl_step "serl train 0.5B op-profile" 60 bench --device "$DEVICE" --precision bf16 --config "${cfg[0.5B]}" \
		--batch "${batch[0.5B]}" --seq $seq --mode train --steps 2 --warmup 1 --op-profile
	figs=$(sed -n '/=== serl train 0.5B op-profile: /,$p' "$log" | awk '$1 == "op" && $2 == "calls" { on = 1; next }
		on && $1 == "total" { printf "; total %s", $2; exit }
		on && n < 6 { printf "%s%s %s", (n++ ? ", " : ""), $1, $4 }')
	[[ -n $serl_gone ]] || row "train 0.5B$shape_note op profile" "$status" "$secs" "$(res "$status" "$why" "${figs:-?}")"
	# the four dearest products by shape (the table's columns are two or more spaces apart), as TFLOP/s
	figs=$(sed -n '/=== serl train 0.5B op-profile: /,$p' "$log" | awk -F '  +' '$2 ~ /^matmul shape/ { on = 1; next }
		on && NF >= 7 && n < 4 { printf "%s%s %s %.3g TFLOP/s", (n++ ? ", " : ""), $2, $5, $6 / 1000 } n == 4 { exit }')
	[[ -n $serl_gone || $status != ok ]] || row "train 0.5B$shape_note matmul shapes" "$status" "$secs" "${figs:-?}"
fi
if unit compile0.5B 110; then compile 0.5B; fi
if unit train1.5B 60; then train 1.5B; fi
if unit decode16 40; then decode "${dec16[@]}"; fi
if unit compile1.5B 150; then compile 1.5B; fi
# the memory-bound ops at the 0.5B training shapes, as GB/s of the bytes each must move (kernels'
# BenchmarkCUDAOps; it skips where no GPU answers, so not in the dry run)
if [[ $DEVICE == cuda && -z $serl_off ]] && unit ops 20; then
	(cd kernels && SERL_TEST_DEVICES=cuda step "ops" 60 "$g/kernels.test" -test.run '^$' -test.bench CUDAOps -test.benchtime 20x
		printf '%s\n' "$status" "$secs" "$why" >"$work/ops.st")
	{ read -r status; read -r secs; read -r why; } <"$work/ops.st"
	[[ $status != FAIL ]] || why=$(grep -A1 -- '--- FAIL: BenchmarkCUDAOps' "$log" | tail -1 | sed 's/^ *//' | cut -c1-200)
	figs=$(grep '^BenchmarkCUDAOps/' "$log" | awk '{ n = $1; sub(/^BenchmarkCUDAOps\//, "", n); sub(/-[0-9]+$/, "", n)
		for (i = 2; i < NF; i++) if ($(i + 1) == "GB/s") printf "%s%s %.0f", (k++ ? ", " : ""), n, $i }')
	row "ops at 0.5B shapes (GB/s)" "$status" "$secs" "$(res "$status" "$why" "${figs:-?}")"
fi
# the attention kernels, tensor cores and CUDA cores (the variable is read once a process), as TFLOP/s
# (kernels' BenchmarkCUDAAttention), then PyTorch's SDPA at the same shapes
if [[ $DEVICE == cuda && -z $serl_off ]] && unit attention 45; then
	declare -A attn_figs
	for mode in mma cores; do
		(cd kernels && SERL_TEST_DEVICES=cuda SERL_CUDA_ATTN=$mode step "attention ($mode)" 40 "$g/kernels.test" \
			-test.run '^$' -test.bench CUDAAttention -test.benchtime 5x
			printf '%s\n' "$status" "$secs" "$why" >"$work/attn.st")
		{ read -r status; read -r secs; read -r why; } <"$work/attn.st"
		[[ $status != FAIL ]] || why=$(sed -n "/=== attention ($mode): /,/=== attention ($mode): exit/p" "$log" | grep -A1 -- '--- FAIL: BenchmarkCUDAAttention' | tail -1 | sed 's/^ *//' | cut -c1-200)
		figs=$(sed -n "/=== attention ($mode): /,/=== attention ($mode): exit/p" "$log" | grep '^BenchmarkCUDAAttention/' | awk '{ n = $1; sub(/^BenchmarkCUDAAttention\//, "", n); sub(/-[0-9]+$/, "", n)
			for (i = 2; i < NF; i++) if ($(i + 1) == "TFLOP/s") printf "%s%s %.0f", (k++ ? ", " : ""), n, $i }')
		row "attention, $mode (TFLOP/s)" "$status" "$secs" "$(res "$status" "$why" "${figs:-?}")"
		attn_figs[$mode]=$figs
	done
	step "torch attention" 40 "$PYTHON" bench/torch_attention.py --device "$DEVICE" --iters 5
	# "0.5B/fwd 310 (serl mma 0.65×, cores 0.08×), …": each figure with serl's over it
	figs=$(grep '^{' "$work/out" | python3 -c 'import json, sys
serl = {m: dict((p.split()[0], float(p.split()[1])) for p in f.split(", ") if p) for m, f in zip(("mma", "cores"), sys.argv[1:])}
out, how = [], ""
for line in sys.stdin:
    r = json.loads(line)
    how = "%s, %s GQA, torch %s" % (r["backend"], r["gqa"], r["torch"])
    vs = ", ".join("%s %.2f×" % (m, serl[m][r["name"]] / r["tflops"]) for m in ("mma", "cores") if r["name"] in serl[m])
    out.append("%s %.0f%s" % (r["name"], r["tflops"], " (serl " + vs + ")" if vs else ""))
print(", ".join(out) + ("; " + how if how else ""))' "${attn_figs[mma]:-}" "${attn_figs[cores]:-}")
	row "attention, torch SDPA (TFLOP/s)" "$status" "$secs" "$(res "$status" "$why" "${figs:-?}")"
fi
[[ -z $notrun ]] || row "not run" SKIP 0 "the time budget (BUDGET=${BUDGET}s) had too little left for:$notrun"

# The acceptance figures (issue 17), when their steps ran.
# accept WHAT FIGURE AFTER TARGET: one acceptance line: FIGURE ("1.23×", "36.2%" or ?) and AFTER beside
# it, against TARGET (the same unit)
accept() {
	python3 -c 'import sys
what, fig, after, target = sys.argv[1:]
f, t = fig.rstrip("%×"), target.rstrip("%×")
verdict = "not measured" if f == "?" else "met" if float(f) >= float(t) else "NOT met"
print("  %-40s %-30s target ≥ %-5s %s" % (what, fig if f == "?" else fig + after, target, verdict))' "$@" >>"$summary"
}
if [[ $STEPS == all || " $STEPS " == *" train0.5B "* || " $STEPS " == *" decode256 "* ]]; then
	echo "acceptance (issue 17)$([[ $DEVICE == cuda ]] || echo ": a dry run on the CPU, tiny shapes, the figures mean nothing"):" >>"$summary"
	accept "train 0.5B$shape_note, serl/eager tokens/s" "$(ratio "${s_tps[0.5B]}" "$eager_tps")" " eager" "1.0×"
	accept "train 0.5B$shape_note, serl MFU" "$(mfu "${fpt[0.5B]}" "${s_tps[0.5B]}" "$peak")" " of $(num "$peak" .1f) TFLOP/s" "35%"
	accept "decode ${dec256[0]}×$dec_new, serl/generate" "$dec_ratio" " generate" "10×"
fi

echo
echo "serl GPU performance ($(cat "$g/commit"), $DEVICE, ${SECONDS}s of BUDGET=${BUDGET}s), logs in $OUT"
cat "$summary"
