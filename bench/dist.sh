#!/usr/bin/env bash
# Data-parallel scaling of serl train (issue 19): SeRL steps per second on the built-in model with one
# process and with `mpirun -np 2`, one CPU thread per process. Each process count runs twice, for 1 and
# for STEPS+1 steps with the same settings; steps/s = STEPS / (difference of the wall times), so start-up,
# the estimate and the two evaluations (kept to one greedy problem) cancel out.
#
#   bench/dist.sh                 STEPS=4 ROLLOUT=8 SAMPLES=8 by default; NP="1 2" process counts
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-4}
ROLLOUT=${ROLLOUT:-8}
SAMPLES=${SAMPLES:-8}
NP=${NP:-1 2}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
if [[ ! -x bin/serl || -n $(find cmd engine kernels csrc loader -newer bin/serl -name '*.[ch]' -o -newer bin/serl -name '*.go' | head -1) ]]; then
	./build.sh >&2
fi

run() { # np steps → wall seconds
	local np=$1 steps=$2 dir="$OUT/np$1_s$2"
	rm -rf "$dir"
	local args=(train --device cpu --threads 1 --iterations 1 --instructions-per-iteration $((steps * ROLLOUT))
		--rollout-batch "$ROLLOUT" --samples "$SAMPLES" --train-batch $((ROLLOUT * SAMPLES / 2))
		--eval-limit 1 --eval-k 0 --max-new-tokens 64 --instr-max-new-tokens 96 --run "$dir")
	local t0 t1
	t0=$(date +%s.%N)
	if ((np == 1)); then
		bin/serl "${args[@]}" >/dev/null 2>"$dir.log"
	else
		mpirun --allow-run-as-root --oversubscribe -np "$np" bin/serl "${args[@]}" >/dev/null 2>"$dir.log"
	fi
	t1=$(date +%s.%N)
	awk "BEGIN { print $t1 - $t0 }"
}

declare -A rate
for np in $NP; do
	a=$(run "$np" 1)
	b=$(run "$np" $((STEPS + 1)))
	rate[$np]=$(awk "BEGIN { print $STEPS / ($b - $a) }")
	printf 'np %d: 1 step %.1fs, %d steps %.1fs → %.4f steps/s\n' "$np" "$a" $((STEPS + 1)) "$b" "${rate[$np]}"
done
first=${NP%% *}
for np in $NP; do
	printf 'np %d: %.2f× np %d\n' "$np" "$(awk "BEGIN { print ${rate[$np]} / ${rate[$first]} }")" "$first"
done
