#!/usr/bin/env bash
# Data-parallel scaling of serl train (issue 19): SeRL steps per second on the built-in model with one
# process and with `mpirun -np 2`, one CPU thread per process. Each process count runs for 1 and for
# STEPS+1 steps with the same settings; steps/s = STEPS / (difference of the wall times), so start-up,
# the estimate and the two evaluations (one greedy problem each) cancel out. The CPU seconds per step
# (user + system of every process, from the same difference) show the work the split adds, which a
# loaded machine's wall times hide. Process counts alternate, REPS times; the medians are reported.
# Runs of several processes are traced (SERL_DIST_TRACE) for their critical path: the slowest rank's
# CPU seconds between one collective and the next, summed with the collectives' own: an estimate of a
# step on idle cores, which a machine shared with other jobs cannot show in wall time (CPU seconds
# there are inflated too, by the contention for caches and memory).
#
#   bench/dist.sh                 STEPS=2 ROLLOUT=16 SAMPLES=16 REPS=3 NP="1 2" (the built-in model's rollout shape)
#   SERL=/tmp/serl-old bench/dist.sh   another build of serl (to compare two versions)
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-2}
ROLLOUT=${ROLLOUT:-16}
SAMPLES=${SAMPLES:-16}
REPS=${REPS:-3}
NP=${NP:-1 2}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SERL=${SERL:-bin/serl}
if [[ $SERL == bin/serl && (! -x bin/serl || -n $(find cmd engine kernels csrc loader -newer bin/serl -name '*.[ch]' -o -newer bin/serl -name '*.go' | head -1)) ]]; then
	./build.sh >&2
fi

# secs: user + system seconds of a `times` line of the shell's finished children ("0m1.5s 0m0.2s").
secs() { tail -1 "$1" | tr 'ms' '  ' | awk '{ print $1 * 60 + $2 + $3 * 60 + $4 }'; }

run() { # np steps → "wall cpu" seconds
	local np=$1 steps=$2 dir="$OUT/np$1_s$2"
	rm -rf "$dir"
	local args=(train --device cpu --threads 1 --iterations 1 --instructions-per-iteration $((steps * ROLLOUT))
		--rollout-batch "$ROLLOUT" --samples "$SAMPLES" --train-batch $((ROLLOUT * SAMPLES / 2))
		--eval-limit 1 --eval-k 0 --max-new-tokens 64 --instr-max-new-tokens 96 --run "$dir")
	local launch=()
	((np == 1)) || launch=(mpirun --allow-run-as-root --oversubscribe -np "$np" -x SERL_DIST_TRACE=1)
	local t0 t1 c0 c1
	t0=$(date +%s.%N)
	times >"$dir.t0" # in this shell: run is called in a subshell of its own, whose children are the job
	"${launch[@]}" "$SERL" "${args[@]}" >/dev/null 2>"$dir.log"
	t1=$(date +%s.%N)
	times >"$dir.t1"
	c0=$(secs "$dir.t0")
	c1=$(secs "$dir.t1")
	awk "BEGIN { print $t1 - $t0, $c1 - $c0 }" | tr '\n' ' '
	critical "$dir.log"
}

# critical: the critical path of a traced run's log in CPU seconds (0 for one process): for each
# collective, the most CPU any rank spent since its previous one plus the most it spent inside it.
# Trace lines end "cpu <at the call> <after it>".
critical() {
	awk '/^dist trace: rank [0-9]+: .* cpu [0-9.]+ [0-9.]+$/ {
		r = $4; i = ++n[r]; w[r, i] = $(NF - 1) - last[r]; c[r, i] = $NF - $(NF - 1); last[r] = $NF }
	END {
		t = 0
		for (i = 1; i <= n["0:"]; i++) {
			mw = 0; mc = 0
			for (r in n) { if (w[r, i] > mw) mw = w[r, i]; if (c[r, i] > mc) mc = c[r, i] }
			t += mw + mc
		}
		print t
	}' "$1"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A rates cpus crits
for rep in $(seq "$REPS"); do
	for np in $NP; do
		read -r wa ca ka <<<"$(run "$np" 1)"
		read -r wb cb kb <<<"$(run "$np" $((STEPS + 1)))"
		r=$(awk "BEGIN { print $STEPS / ($wb - $wa) }")
		c=$(awk "BEGIN { print ($cb - $ca) / $STEPS }")
		k=$(awk "BEGIN { print ($kb - $ka) / $STEPS }")
		rates[$np]+="$r "
		cpus[$np]+="$c "
		crits[$np]+="$k "
		path=""
		((np == 1)) || path=$(printf ', critical path %.2f CPU-s/step' "$k")
		printf 'rep %d np %d: 1 step %.1fs, %d steps %.1fs → %.3f steps/s, %.2f CPU-s/step%s (load %s)\n' \
			"$rep" "$np" "$wa" $((STEPS + 1)) "$wb" "$r" "$c" "$path" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done
first=${NP%% *}
base=$(tr ' ' '\n' <<<"${rates[$first]}" | grep . | median)
cbase=$(tr ' ' '\n' <<<"${cpus[$first]}" | grep . | median)
for np in $NP; do
	m=$(tr ' ' '\n' <<<"${rates[$np]}" | grep . | median)
	c=$(tr ' ' '\n' <<<"${cpus[$np]}" | grep . | median)
	k=$(tr ' ' '\n' <<<"${crits[$np]}" | grep . | median)
	if ((np == 1)); then
		printf 'np %d: median %.3f steps/s (%.2f× np %d), %.2f CPU-s/step\n' "$np" "$m" "$(awk "BEGIN { print $m / $base }")" "$first" "$c"
	else
		printf 'np %d: median %.3f steps/s (%.2f× np %d), %.2f CPU-s/step, critical path %.2f CPU-s/step (%.2f× np %d'"'"'s CPU-s/step)\n' \
			"$np" "$m" "$(awk "BEGIN { print $m / $base }")" "$first" "$c" "$k" "$(awk "BEGIN { print $cbase / $k }")" "$first"
	fi
done
