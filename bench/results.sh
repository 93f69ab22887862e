#!/usr/bin/env bash
# The README's results table: SeRL's comparison in miniature on the built-in model and world.
# Every setting trains for the same number of steps (the default `serl train` sizing) and evaluates on
# the 500 held-out problems: pass@1 at every iteration, maj@16 at the end. The base model's row is the
# serl_reinforce++ runs' evaluation before training, the only one that also samples maj@16 (the same
# model and seed give the same figures in every setting).
#
#   bench/results.sh                       every setting, seeds 1 2 3, then the table
#   SEEDS="1" SETTINGS="serl_reinforce++ gt7500" bench/results.sh
#
# Settings: serl_reinforce++ serl_grpo serl_rloo (SeRL from the 100 seeds), gt7500 and maj7500 (7,500
# generated problems with and without their labels), gt100 (the 100 seeds with labels). Runs land in
# OUT/<setting>_s<seed> (default OUT=runs/results); a finished run is kept, an interrupted one resumed.
# Extra `serl train` flags for every run: TRAIN_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-1 2 3}
SETTINGS=${SETTINGS:-serl_reinforce++ serl_grpo serl_rloo gt7500 maj7500 gt100}
OUT=${OUT:-runs/results}
read -r -a extra <<<"${TRAIN_FLAGS:-}"

if [[ ! -x bin/serl || -n $(find cmd engine kernels csrc loader -newer bin/serl -name '*.[ch]' -o -newer bin/serl -name '*.go' | head -1) ]]; then
	./build.sh >&2
fi
mkdir -p "$OUT"

flags_of() {
	case $1 in
	serl_*) echo "--mode serl --algorithm ${1#serl_}" ;;
	gt7500) echo "--mode gt --data builtin:train7500" ;;
	maj7500) echo "--mode maj --data builtin:train7500" ;;
	gt100) echo "--mode gt --data builtin:seed100" ;;
	*) echo "bench/results.sh: unknown setting $1" >&2; exit 2 ;;
	esac
}

for seed in $SEEDS; do
	for s in $SETTINGS; do
		dir="$OUT/${s}_s$seed"
		read -r -a f <<<"$(flags_of "$s")"
		if [[ -f $dir/checkpoint/state.json ]]; then
			echo "== $dir: resuming (a finished run just exits)" >&2
			bin/serl train --resume "$dir" >/dev/null
		else
			echo "== $dir" >&2
			rm -rf "$dir"
			before=false
			[[ $s == serl_reinforce++ ]] && before=true
			bin/serl train "${f[@]}" --seed "$seed" --eval-k 16 --eval-k-before=$before --run "$dir" "${extra[@]}" >/dev/null
		fi
	done
done
go run ./tools/results "$OUT"
