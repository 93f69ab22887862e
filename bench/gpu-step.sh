#!/usr/bin/env bash
# A SeRL step's time split on the Qwen2.5-0.5B-shaped model (issue 17, deliverable 5), on a device
# machine with no Go and no network, from the archive bench/gpu-prepare.sh builds (only bin/serl is
# used). A random-weight model writes no problem that passes self-instruction's filters, so no step
# would ever happen: the routine first teaches a 0.5B-shaped body the built-in world, then times real
# SeRL steps of it.
#
#   device run:  bench/gpu-step.sh build/gpu.tar.gz          (carry: ["build/gpu.tar.gz"])
#   CPU dry run: SCALE=tiny bench/gpu-step.sh                 (bin/serl built here, about 15 seconds)
#
#   1. pretrain: `serl pretrain` of Qwen2.5-0.5B's body (hidden 896, 24 layers, 14/2 heads, head_dim 64,
#      intermediate 4864, tied embeddings) on the built-in world of arithmetic word problems, bf16 on
#      the GPU. What differs from Qwen2.5-0.5B: the vocabulary is serl's own BPE of 1,024 tokens, not
#      151,936 (the embedding and LM head are 0.9M parameters instead of 136M, so a token costs ~27% fewer
#      FLOPs and sampling reads 148× fewer logits), the context is 1,024 positions with RoPE θ 10⁴ (not
#      32,768 and 10⁶), and the weights are the world's, not Qwen's.
#   2. probe: `serl eval --self-instruct 16` on what it learnt — how many of the problems it writes pass
#      SeRL's rule and ROUGE-L filters. None passing means no step can happen: the train stage is then
#      skipped with that reason rather than left to run into its timeout.
#   3. train: `serl train --model <it>` for STEPS (2) steps of the default shape, 16 problems × 16 samples
#      per step, with the built-in model's lengths (prompts 640, responses and self-instruction 320
#      tokens), bf16, no held-out evaluation; stopped with SIGINT at TRAIN_S, keeping the steps done.
#   Then one table: pretrain tokens/s, and per step each phase's seconds and share of the step, the
#   decode tokens/s of self-instruction and of the rollouts, the training tokens/s of scoring and update.
#
# The pretrain length (PRETRAIN_S, 120 s of training; PRETRAIN_STEPS, 290 steps of 32,768 tokens, LR
# 1e-3, 10% warm-up) is reasoned from CPU pretrains probed with `serl eval --self-instruct 32`
# (4,096-token steps; candidates are the problems parsed from 32 completions, of which "passed" went
# through the rule and ROUGE-L filters):
#
#   shape                            LR    steps  tokens  final loss  candidates  passed
#   built-in: 256 × 4 layers, 3.2M   3e-3   100   0.41M     2.01         31       27 (87%)
#                                    3e-3   200   0.82M     ~1.45        77       77 (100%)
#                                    3e-3   400   1.6M      ~1.15        80       77 (96%)
#   deep: 128 × 24 layers, 7.8M      1e-3   100   0.41M     2.58         20       19 (95%)
#                                    3e-3   100   0.41M     2.27         18       17 (94%)
#   wide: 896 × 2 layers, 31M        1e-3    60   0.25M     1.77         78       73 (94%)
#
# The filters judge form (length, words, a question, ROUGE-L against the pool), so passing them takes the
# world's surface, not its arithmetic (held-out pass@1 was 0–6% in every run). Each SeRL round has 4
# prompts, so ~1 candidate a prompt means ~4 rounds for a step's 16 problems and ~2.4 means 2. Depth 24
# trained stably at 1e-3 and 3e-3, and width 896 at 1e-3 learnt fastest of all (loss 2.47 after 21
# steps, where the built-in shape had 3.79): the 0.5B body, both at once, gets 1e-3. 290 × 32,768 =
# 9.5M tokens is 38× what the wide run needed and 12× the built-in shape's 200-step run, so the body
# writes passing problems even if serl trains it several times slower than planned. At the ~80k tokens/s
# PyTorch trains this body on an H200 the 290 steps are the 120 s; if serl is slower, SIGINT at
# PRETRAIN_S (+ setup) stops it after its current step (the checkpoint's model is used, its LR not yet
# annealed), so the stage stays bounded.
# Setup and ending are mostly writing: the first and last checkpoints (weights and AdamW moments, 4.3 GB
# each in float32) and the final model (1.4 GB; too large to pack, so it is not).
#
# The difficulty band: by default every group is kept (BAND="0 1", as gt mode does), so each rollout of
# 16 problems makes a step whatever the young model's answers are and the split is the cost of one
# step's compute; BAND="0.2 0.8" uses SeRL's band, where dropped groups cost extra rollouts (the table's
# ticks and groups kept/dropped say how many).
#
# Environment: OUT (logs, default ./gpu-out), SCALE (0.5B or tiny), DEVICE (cuda; tiny: cpu), PRECISION
# (bf16; tiny on the CPU: f32), PRETRAIN_S, PRETRAIN_STEPS, PRETRAIN_LR, STEPS, TRAIN_S, BAND. Each stage
# has its own timeout: SIGINT to pretrain at PRETRAIN_S + 60 s, to serl train at TRAIN_S (180 s), each
# killed 60 s later; the probe gets 75 s. About 6 minutes in all, at most 9 1/4.
set -uo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-0.5B}
if [[ $# -gt 0 ]]; then
	. bench/gpu-unpack.sh
	serl=$g/serl
	commit=$(cat "$g/commit")
else # the serl built here (the CPU dry run)
	root=$(pwd)
	OUT=${OUT:-$root/gpu-out}
	mkdir -p "$OUT"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	serl=$root/bin/serl
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	[[ -x $serl ]] || { echo "bench/gpu-step.sh: no $serl (run ./build.sh, or pass the archive of bench/gpu-prepare.sh)" >&2; exit 1; }
fi
case $SCALE in
0.5B)
	DEVICE=${DEVICE:-cuda} PRECISION=${PRECISION:-bf16}
	shape=(--hidden 896 --layers 24 --heads 14 --kv-heads 2 --intermediate 4864 --vocab 1024)
	PRETRAIN_S=${PRETRAIN_S:-120} PRETRAIN_STEPS=${PRETRAIN_STEPS:-290} PRETRAIN_LR=${PRETRAIN_LR:-1e-3}
	batch=(--batch-tokens 32768 --micro-tokens 16384 --micro-seqs 256)
	TRAIN_S=${TRAIN_S:-180}
	;;
tiny)
	DEVICE=${DEVICE:-cpu}
	PRECISION=${PRECISION:-$([[ $DEVICE == cpu ]] && echo f32 || echo bf16)}
	shape=(--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176 --vocab 512)
	PRETRAIN_S=${PRETRAIN_S:-40} PRETRAIN_STEPS=${PRETRAIN_STEPS:-120} PRETRAIN_LR=${PRETRAIN_LR:-3e-3}
	batch=(--batch-tokens 4096 --micro-tokens 2048)
	TRAIN_S=${TRAIN_S:-90}
	;;
*)
	echo "bench/gpu-step.sh: SCALE=$SCALE: want 0.5B or tiny" >&2
	exit 1
	;;
esac
STEPS=${STEPS:-2}
read -r band_lo band_hi <<<"${BAND:-0 1}"
export PYTHONUNBUFFERED=1
summary=$OUT/step-summary.txt
: >"$summary"
row() { printf '%-22s %-8s %5ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$summary" >/dev/null; }

# step NAME TIMEOUT SIGNAL LOG CMD...: runs CMD with a timeout (SIGNAL first, then KILL 60 s later),
# appending to LOG; sets $status and $secs.
step() {
	local name=$1 limit=$2 sig=$3 log=$4
	shift 4
	echo "=== $name: $*" >>"$log"
	local t0=$SECONDS
	timeout -s "$sig" --kill-after=60 "$limit" "$@" >>"$log" 2>&1
	local rc=$?
	secs=$((SECONDS - t0))
	case $rc in
	0) status=ok ;;
	124 | 137) status=TIMEOUT ;;
	*) status=FAIL ;;
	esac
	echo "=== $name: exit $rc after ${secs}s" >>"$log"
}
lastline() { grep -v '^===' "$1" | tail -1 | cut -c1-150; }

# 1. pretrain. SIGINT at PRETRAIN_S plus 60 s of setup and ending (tokenizer, init, the first and last
#    checkpoints, the held-out check): pretrain then finishes its step, checkpoints and exits 0, and the
#    checkpoint's model is used.
pre=$work/pretrain
log=$OUT/step-1-pretrain.log
: >"$log"
step pretrain $((PRETRAIN_S + 60)) INT "$log" "$serl" pretrain --out "$pre" --device "$DEVICE" --precision "$PRECISION" \
	"${shape[@]}" "${batch[@]}" --steps "$PRETRAIN_STEPS" --lr "$PRETRAIN_LR" --warmup-ratio 0.1 \
	--save-every 0 --eval-problems 50
model=$pre/model
[[ -f $model/model.safetensors ]] || model=$pre/checkpoint/model
cp "$pre/metrics.jsonl" "$OUT/step-pretrain-metrics.jsonl" 2>/dev/null
pre_detail=$(python3 - "$pre/metrics.jsonl" "$model" <<'EOF'
import json, sys
try:
    lines = [json.loads(l) for l in open(sys.argv[1])]
except OSError:
    lines = []
steps = [l for l in lines if "eval" not in l]
evals = [l for l in lines if "eval" in l]
if not steps:
    print("no step trained")
    sys.exit()
s = steps[-1]
out = "%d steps, %.2fM tokens, %.0f tok/s, loss %.2f → %.2f" % (s["step"], s["total_tokens"] / 1e6, s["total_tokens"] / s["train_seconds"], steps[0]["loss"], s["loss"])
if evals:
    out += ", held-out pass@1 %.0f%%" % (100 * evals[-1]["eval"]["overall"]["pass@1"])
if sys.argv[2].endswith("checkpoint/model"):
    out += "; stopped at its time limit: the checkpoint's model, LR not annealed"
print(out)
EOF
)
if [[ ! -f $model/model.safetensors ]]; then
	status=FAIL
elif [[ $status == TIMEOUT ]]; then
	status=stopped
fi
row "pretrain $SCALE" "$status" "$secs" "${pre_detail:-?}$([[ $status == FAIL || $status == TIMEOUT ]] && echo "; $(lastline "$log")")"

# 2. self-instruction probe
accepted=0
if [[ -f $model/model.safetensors ]]; then
	log=$OUT/step-2-probe.log
	: >"$log"
	step probe 75 TERM "$log" "$serl" eval --model "$model" --device "$DEVICE" --precision "$PRECISION" --self-instruct 16 \
		--checker arith --max-new-tokens 320 --out "$work/probe.json"
	probe=$(python3 - "$work/probe.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("0 -"); sys.exit()
print(r["accepted"], "%d prompts wrote %d problems, %d pass the filters (%.0f%%), %d the world's checker solves; rejected: %s" % (
    r["prompts"], r["candidates"], r["accepted"], 100 * r["accept_rate"], r["solvable"],
    ", ".join("%s %d" % kv for kv in sorted(r["reasons"].items()) if kv[0] != "Accepted") or "none"))
EOF
	)
	read -r accepted probe_detail <<<"$probe"
	row "self-instruct probe" "$status" "$secs" "${probe_detail:-?}$([[ $status != ok ]] && echo "; $(lastline "$log")")"
fi

# 3. SeRL steps
run=$work/run
log=$OUT/step-3-train.log
: >"$log"
probe_ok=${status:-}
if [[ ${accepted:-0} -gt 0 ]]; then
	step train "$TRAIN_S" INT "$log" "$serl" train --model "$model" --seeds builtin:seed100 --run "$run" \
		--device "$DEVICE" --precision "$PRECISION" --iterations 1 --instructions-per-iteration $((16 * STEPS)) \
		--rollout-batch 16 --samples 16 --max-prompt-tokens 640 --max-new-tokens 320 --instr-max-new-tokens 320 \
		--lr 5e-5 --difficulty-low "$band_lo" --difficulty-high "$band_hi"
	cp "$run/metrics.jsonl" "$OUT/step-train-metrics.jsonl" 2>/dev/null
	cp "$run/config.json" "$OUT/step-train-config.json" 2>/dev/null
	n=$(cat "$run/metrics.jsonl" 2>/dev/null | wc -l)
	detail="$n of $STEPS steps (16 problems × 16 samples, band [$band_lo, $band_hi])"
	[[ $n -lt $STEPS ]] && detail+="; $(lastline "$log")"
	[[ $n -ge 1 && $status == TIMEOUT ]] && status=partial
	row "serl train" "$status" "$secs" "$detail"
else
	why="no step can happen: the model wrote no problem that passes the filters (probe above)"
	[[ $probe_ok == ok ]] || why="the pretrain or the probe did not finish (above)"
	row "serl train" SKIP 0 "$why"
fi

echo
echo "serl SeRL step on the $SCALE-shaped model, $DEVICE $PRECISION ($commit), logs in $OUT"
cat "$summary"
if [[ -s $run/metrics.jsonl ]]; then
	echo
	python3 - "$run/metrics.jsonl" <<'EOF' | tee -a "$summary"
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1])]
phases = [
    ("self-instruction decode", "time_instruct_s"),
    ("self-instruction filter", "time_filter_s"),
    ("rollouts (sampling)", "time_rollout_s"),
    ("reward (vote, checker)", "time_reward_s"),
    ("scoring (policy, ref)", "time_score_s"),
    ("update (fwd/bwd, AdamW)", "time_update_s"),
]
def other(m):
    return m["time_step_s"] - sum(m[k] for _, k in phases) - (m["time_train_s"] - m["time_score_s"] - m["time_update_s"])
def cell(s, m):
    return "%8.2fs %4.0f%%" % (s, 100 * s / m["time_step_s"] if m["time_step_s"] else 0)
head = "%-26s" % "phase" + "".join("%16s" % ("step %d" % m["step"]) for m in ms)
print(head)
for name, k in phases:
    print("%-26s" % name + "".join(cell(m[k], m) for m in ms))
print("%-26s" % "advantages, reshaping" + "".join(cell(m["time_train_s"] - m["time_score_s"] - m["time_update_s"], m) for m in ms))
print("%-26s" % "other (prompts, records)" + "".join(cell(other(m), m) for m in ms))
print("%-26s" % "step (wall)" + "".join(cell(m["time_step_s"], m) for m in ms))
print("%-26s" % "checkpoint before it" + "".join("%8.2fs %5s" % (m["time_checkpoint_s"], "") for m in ms))
def rate(n, s):
    return "%14.0f  " % (n / s) if s > 0 else "%14s  " % "-"
print("%-26s" % "decode tok/s: self-instr" + "".join(rate(m["instruct_tokens"], m["time_instruct_s"]) for m in ms))
print("%-26s" % "decode tok/s: rollouts" + "".join(rate(m["gen_tokens"] - m["instruct_tokens"], m["time_rollout_s"]) for m in ms))
print("%-26s" % "train tok/s: scoring" + "".join(rate(m["train_tokens"], m["time_score_s"]) for m in ms))
print("%-26s" % "train tok/s: update" + "".join(rate(m["train_tokens"], m["time_update_s"]) for m in ms))
for name, f in (("tokens: self-instruction", lambda m: m["instruct_tokens"]), ("tokens: rollouts", lambda m: m["gen_tokens"] - m["instruct_tokens"]),
                ("tokens: trained", lambda m: m["train_tokens"])):
    print("%-26s" % name + "".join("%14d  " % f(m) for m in ms))
ticks = [m["ticks"] - (ms[i - 1]["ticks"] if i else 0) for i, m in enumerate(ms)]
print("%-26s" % "ticks, groups kept/dropped" + "".join("%16s" % ("%d, %d/%d" % (t, m["groups_kept"], m["groups_dropped"])) for t, m in zip(ticks, ms)))
print("%-26s" % "problems accepted/written" + "".join("%16s" % ("%d/%d" % (m["problems_accepted"], m["problems_generated"])) for m in ms))
print("%-26s" % "device memory peak MiB" + "".join("%16.0f" % (m["device_peak_bytes"] / 2**20) for m in ms))
EOF
fi
