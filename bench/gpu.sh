#!/usr/bin/env bash
# The GPU routine: runs on a device machine with an NVIDIA GPU, no Go and no network, from the
# repository root, on what bench/gpu-prepare.sh built here (build/gpu.tar.gz, carried to the machine).
# Correctness first, speed after, so that a routine cut short has answered the acceptance items:
#
#   info         the device and library (serl info --device cuda); when it fails (no GPU answers) the
#                rest is not run: one row says so
#   conformance  the kernels conformance suite on CUDA against the reference (captured graphs included),
#                and the CUDA-vs-CPU checks
#   cores        the attention cases again with the CUDA-core kernels (SERL_CUDA_ATTN=cores), the
#                reference on the GPU of the tensor-core ones that conformance ran (the default); where
#                those failed and these pass, the steps after it run on CUDA cores, and a row says so
#   fixtures     the model fixtures (Qwen2 and Llama, f32/bf16/f16 weights) against PyTorch's float64,
#                the head's fused gradient (dlogits in the forward) giving the recomputed one's bits, and
#                the head on an RL step's rows alone (ForwardFrom) giving the whole batch's head's values
#   generate     engine/generate's tests on the device (log: 3-fixtures.log): continuous batching, the
#                decode state advanced on the device, captured decode steps against their ops issued one
#                by one, batches padded to their bucket against exact ones (and padding rows reaching no
#                sequence, which holds whatever kernel cuBLAS picks per row count), the transfers of each step
#   selfplay     engine/selfplay's tests on the device (log: 3-fixtures.log): every mode and algorithm, and
#                resumes reproducing the next step bit for bit in f32, bf16 and with LoRA
#   train        a short serl train --device cuda on the built-in model (FULL=1: the default run, which
#                needs BUDGET=600 STEPS=train)
#   killresume   the same short run three times smaller: once uninterrupted, once SIGKILLed in its second
#                step (SERL_CRASH_AT=selfplay.train:2: its rollouts done, its update not) and --resumed;
#                both run folders must hold the same metrics, records and weights (bench/compare_runs.py)
#   nccl         issue 19: the kernels' 1-rank NCCL test, then killresume's run under `mpirun -np 1`
#                (all-reduce through NCCL) against its uninterrupted run. NCCL is found as SERL_NCCL_LIB,
#                the loader's libnccl.so.2, or PyTorch's nvidia/nccl/lib; the MPI run needs mpirun
#   graphs       a launch-bound chain of 97 small ops issued one by one against one graph launch
#   bench        serl bench --device cuda beside PyTorch on the same GPU (bench/torch_model.py, float32;
#                config M, or BENCH_CONFIGS="S M"), and a per-op profile of a training step in the log
#   decode       decoding throughput (engine/generate's benchmark, configs S and M), with the decode steps
#                as captured graphs and, unless DECODE_GRAPHS=1, with their ops issued one by one
#   sanitizer    SANITIZE=1: the conformance suite under compute-sanitizer (slow: minutes)
#   full         last, in what the budget has left (at least 40 s): the default serl train --device cuda
#                on the built-in model, the issue's acceptance run; cut short, its row says how far it got
#                (FULL=1 runs it as the train step instead, and not again here)
#
# Time: the whole routine ends within BUDGET seconds (default 345, under the issue's 6 minutes): each
# step has its own timeout, cut to what the budget has left; once the budget is spent, or the device
# stops answering after a failed step, the remaining steps are not run and one row names them.
# STEPS="train killresume" runs only those (the names above, another is an error; default all). NCCL=0 leaves nccl out.
# DEVICE=cpu is a dry run of the routine on the CPU (the tests and serl on the CPU, one thread for the
# runs that must match bit for bit; no PyTorch, no NCCL). DEVICE=emu is a dry run of its CUDA path on
# the SIMT emulator (build/cudaemu's libraries in place of the CUDA library; docs/ARCHITECTURE.md,
# "Testing"): STEPS="info conformance cores fixtures" fits its budget there (600 s by default; 301 s
# measured on the EPYC, 406 s on the Xeon, where the emulator runs slower, with its steps' limits
# raised; the race check is off, as ./build.sh test runs it; a GPU runs those steps in seconds).
#
# Full logs go to $OUT (default ./gpu-out; at most 8 files, as the device tool returns); one short
# table is printed last, and is in $OUT/summary.txt as it grows.
#
#   device run:  bench/gpu.sh build/gpu.tar.gz          (carry: ["build/gpu.tar.gz"])
#   in a 15-minute session, three calls instead (README.md, "The GPU"): this routine's correctness steps,
#   bench/gpu-perf.sh, then FULL=1 STEPS="info train nccl graphs" for the default run
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-all}
ALL_STEPS="info conformance cores fixtures generate selfplay train killresume nccl graphs bench decode sanitizer full"
if [[ $STEPS != all ]]; then # a misspelt step would otherwise just not run
	for s in $STEPS; do
		[[ " $ALL_STEPS " == *" $s "* ]] || { echo "bench/gpu.sh: STEPS: no step $s (the steps: $ALL_STEPS)" >&2; exit 2; }
	done
fi
. bench/gpu-unpack.sh
export PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
testshort=()
# the limits of the steps the emulator also runs: seconds on a GPU
conformance_secs=150
cores_secs=90
fixtures_secs=90
if [[ $DEVICE == emu ]]; then
	[[ -f build/cudaemu/libserl_cuda.so ]] || { echo "bench/gpu.sh: DEVICE=emu needs build/cudaemu (./build.sh where nvcc exists)" >&2; exit 2; }
	cp build/cudaemu/libserl_cuda.so build/cudaemu/libserl_cuda.so.resources build/cudaemu/libcublas.so.13 "$g/lib/"
	# the routine is what this checks; ./build.sh test runs the same kernels under the race check
	export SERL_SIMT_RACE=0
	DEVICE=cuda
	testshort=(-test.short) # the head's bits in two of its six cases, at one chunk size (a GPU runs them all in seconds)
	# measured on the emulator: conformance 163 s, cores 106 s, fixtures 105-144 s (2026-12-06/07)
	conformance_secs=240
	cores_secs=180
	fixtures_secs=240
	BUDGET=${BUDGET:-600}
fi
BUDGET=${BUDGET:-345}
export SERL_TEST_DEVICES=$DEVICE # the tests on that device alone (a CUDA that does not open fails them)
deadline=$((SECONDS + BUDGET))
summary=$OUT/summary.txt
: >"$summary"
rm -f "$OUT"/[0-9]-*.log "$OUT"/2b-*.log # each step appends to its log
row() { printf '%-26s %-8s %6ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$summary" >/dev/null; }

xid0=$(dmesg 2>/dev/null | grep -ciE 'NVRM: Xid') # the GPU faults logged before the routine (see its end)
stop=""   # why the remaining steps are not run (empty: they are)
notrun="" # the steps that were not run for it
# unit NAME: whether to run the routine's part NAME: asked for (STEPS), nothing stopped the routine,
# and at least 20 s of the budget left.
unit() {
	[[ $STEPS == all || " $STEPS " == *" $1 "* ]] || return 1
	[[ -n $stop ]] || ((deadline - SECONDS >= 20)) || stop="the time budget (BUDGET=${BUDGET}s) is spent"
	if [[ -n $stop ]]; then
		notrun+=" $1"
		return 1
	fi
}

# [wd=DIR] step NAME TIMEOUT LOG CMD...: runs CMD (in DIR) with a timeout cut to the budget's remainder,
# appending to LOG; sets $status, $secs and $rc. A failure that leaves the device silent stops the routine.
step() {
	local name=$1 limit=$2 log=$3
	shift 3
	local left=$((deadline - SECONDS - 10))
	((limit <= left)) || limit=$left
	if ((limit < 5)); then
		status=SKIP secs=0 rc=-1
		stop="the time budget (BUDGET=${BUDGET}s) is spent"
		echo "=== $name: not run, $stop" >>"$log"
		return
	fi
	echo "=== $name: $*" >>"$log"
	local t0=$SECONDS
	(cd "${wd:-.}" && guarded "$limit" "$@") >>"$log" 2>&1
	rc=$?
	secs=$((SECONDS - t0))
	case $rc in
	0) status=ok ;;
	124) status=TIMEOUT ;;
	137) if ((secs >= limit)); then status=TIMEOUT; else status=FAIL; fi ;; # SIGKILL: the timeout's, or another's
	*) status=FAIL ;;
	esac
	echo "=== $name: exit $rc after ${secs}s (limit ${limit}s)" >>"$log"
	if [[ -f $work/guard ]]; then
		status=FAIL
		cat "$work/guard" >>"$log" # the step's row shows it (its log's last line)
	fi
	if [[ $status != ok && -z $stop ]] && ! timeout 20 "$g/serl" info --device "$DEVICE" >/dev/null 2>&1; then
		stop="the $DEVICE device stopped answering after $name"
	fi
}

gotest_counts() { # pass/fail/skip counts of a -test.v log section
	printf '%s passed, %s failed, %s skipped' "$(grep -c -- '--- PASS' "$1")" "$(grep -c -- '--- FAIL' "$1")" \
		"$(grep -c -- '--- SKIP' "$1")"
}
lastline() { grep -v '^===' "$1" | grep -v '^ *$' | tail -1 | sed "s|$g/lib/||; s|^serl [a-z]*: ||" | cut -c1-${2:-150}; }

# info
if unit info; then
	log=$OUT/1-info.log
	{ command -v nvidia-smi >/dev/null && nvidia-smi -L && nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv; } >>"$log" 2>&1
	echo "commit $(cat "$g/commit")" >>"$log"
	step info 20 "$log" "$g/serl" info --device "$DEVICE"
	row "device" "$status" "$secs" "$(if [[ $status == ok ]]; then grep -m1 '^device' "$log" | sed 's/^device *//'; else lastline "$log" 220; fi)"
	[[ $status == ok ]] || stop="no $DEVICE device answered (serl info failed, row device)"
fi

# conformance (-test.v for the per-case lines; the suites run from their package directory)
log=$OUT/2-conformance.log
if unit conformance; then
	wd=kernels step conformance "$conformance_secs" "$log" "$g/kernels.test" -test.v -test.count=1 -test.run 'Conformance|CUDA' \
		-test.timeout "$((conformance_secs - 5))s"
	row "conformance ($DEVICE)" "$status" "$secs" "$(gotest_counts "$log")"
	grep -- '--- FAIL' "$log" | head -20 | sed 's/^/    /' >>"$summary"
fi

# the attention on CUDA cores (forward and backward; conformance ran the tensor-core kernels where they apply)
if unit cores; then
	SERL_CUDA_ATTN=cores wd=kernels step "attention (cores)" "$cores_secs" "$log" sh -c \
		'"$0" -test.v -test.count=1 -test.run "Conformance/$1/attention" && "$0" -test.v -test.count=1 -test.run "CUDAAttentionHeadDims"' \
		"$g/kernels.test" "$DEVICE"
	row "attention cores ($DEVICE)" "$status" "$secs" "$(sed -n '/=== attention (cores)/,$p' "$log" | grep -c -- '--- FAIL') failures (SERL_CUDA_ATTN=cores)"
	# The tensor-core attention failed cases that the CUDA-core one passes: the steps below run on CUDA
	# cores, so that one kernel's fault does not cost the rest of a GPU session, and a row says so.
	mma_fails=$(sed -n '/^=== conformance: /,/^=== conformance: exit/p' "$log" |
		grep -cE -- '--- FAIL: (TestConformance/[a-z]+/(bf16_)?attention|TestCUDAAttention)')
	if [[ $status == ok && $mma_fails -gt 0 && ${SERL_CUDA_ATTN:-mma} == mma ]]; then
		export SERL_CUDA_ATTN=cores
		row "attention fallback" FAIL 0 "tensor cores failed $mma_fails attention case(s) that CUDA cores pass: the steps below run SERL_CUDA_ATTN=cores"
	fi
fi

if [[ ${SANITIZE:-0} == 1 ]] && command -v compute-sanitizer >/dev/null 2>&1 && unit sanitizer; then
	log=$OUT/2b-sanitizer.log
	wd=kernels step sanitizer 240 "$log" compute-sanitizer --tool memcheck \
		"$g/kernels.test" -test.count=1 -test.run 'Conformance' -test.timeout 230s
	row "memcheck ($DEVICE)" "$status" "$secs" "$(grep -m1 'ERROR SUMMARY' "$log")"
fi

# the model fixtures
if unit fixtures; then
	log=$OUT/3-fixtures.log
	wd=engine/model step fixtures "$fixtures_secs" "$log" "$g/model.test" -test.v -test.count=1 "${testshort[@]}" \
		-test.run 'TestFixtures|TestLoRA|TestSaveLoadRoundTrip|TestHeadGrad|TestHeadFrom' -test.timeout "$((fixtures_secs - 5))s"
	row "fixtures ($DEVICE)" "$status" "$secs" "$(gotest_counts "$log"); worst: $(grep -o 'worst [a-z ]*error [0-9.e+-]*' "$log" | sort -t' ' -k5 -g | tail -1)"
fi

# package_tests PKG LIMIT: an engine package's tests (its test binary PKG.test, run in engine/PKG) on the
# device, as one step and one row; the log goes beside the fixtures' (the device tool returns 8 files).
package_tests() {
	local log
	log=$(mktemp)
	wd=engine/$1 step "$1" "$2" "$log" "$g/$1.test" -test.v -test.count=1 -test.run '^Test' -test.timeout $(($2 - 5))s
	row "$1 ($DEVICE)" "$status" "$secs" "$(gotest_counts "$log")"
	grep -- '--- FAIL' "$log" | head -10 | sed 's/^/    /' >>"$summary"
	cat "$log" >>"$OUT/3-fixtures.log"
	rm -f "$log"
}
# the generation engine: continuous batching, captured decode steps, padded batches, transfers
if unit generate; then package_tests generate 60; fi
# the SeRL loop: every mode and algorithm, and resumes that must reproduce the next step bit for bit,
# in f32, bf16 and with LoRA adapters
if unit selfplay; then package_tests selfplay 90; fi

# serl train on the built-in model
log=$OUT/4-train.log
threads=()
[[ $DEVICE == cpu ]] && threads=(--threads 1) # runs that must match bit for bit: one CPU thread
if unit train; then
	if [[ ${FULL:-0} == 1 ]]; then
		step "train (default)" 560 "$log" "$g/serl" train --device "$DEVICE" --run "$work/run" --op-profile
	else
		step "train (short)" 90 "$log" "$g/serl" train --device "$DEVICE" --run "$work/run" --iterations 1 \
			--instructions-per-iteration 16 --rollout-batch 8 --samples 8 --eval-limit 100 --eval-k 0 --op-profile
	fi
	row "train" "$status" "$secs" "$(if [[ $status == ok ]]; then grep -i 'pass@1' "$log" | tail -1; else lastline "$log"; fi | cut -c1-120)"
fi

# kill and --resume: 3 steps (24 problems in rollouts of 8), 10 problems evaluated before and after
short=(train --device "$DEVICE" "${threads[@]}" --iterations 1 --instructions-per-iteration 24 --rollout-batch 8 --samples 8
	--eval-limit 10 --eval-k 0)
whole=""
if unit killresume; then
	t0=$SECONDS
	kr() { row "kill/resume ($DEVICE)" "$1" $((SECONDS - t0)) "$2"; }
	step "kill/resume: uninterrupted" 60 "$log" "$g/serl" "${short[@]}" --run "$work/whole"
	if [[ $status != ok ]]; then
		kr "$status" "the uninterrupted run: $([[ $status == SKIP ]] && echo "$stop" || lastline "$log")"
	else
		whole=$work/whole
		SERL_CRASH_AT=selfplay.train:2 SERL_CRASH_TRACE=$work/trace \
			step "kill/resume: killed in step 2" 60 "$log" "$g/serl" "${short[@]}" --run "$work/part"
		killed_at=$(tail -1 "$work/trace" 2>/dev/null)
		if [[ $status == SKIP ]]; then
			kr SKIP "the run to kill: $stop"
		elif [[ $rc != 137 || $killed_at != selfplay.train ]]; then
			[[ $status == FAIL || $status == ok ]] && status=FAIL
			kr "$status" "the run to kill was not killed at selfplay.train:2 (exit $rc, last point ${killed_at:-none}): $(lastline "$log")"
		else
			step "kill/resume: resumed" 60 "$log" "$g/serl" train --device "$DEVICE" "${threads[@]}" --resume "$work/part"
			if [[ $status != ok ]]; then
				kr "$status" "the resumed run: $(lastline "$log")"
			else
				from=$(grep -o 'resuming .* at step [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
				step "kill/resume: compare" 20 "$log" python3 bench/compare_runs.py "$work/whole" "$work/part"
				kr "$status" "killed in step 2, resumed at step ${from:-?}: $(lastline "$log" 170)"
			fi
		fi
	fi
fi

# NCCL: one rank through NCCL must equal the run without any backend
if [[ ${NCCL:-1} != 0 ]] && unit nccl; then
	log=$OUT/5-nccl.log
	if [[ $DEVICE != cuda ]]; then
		row "nccl" SKIP 0 "NCCL runs on CUDA only (DEVICE=$DEVICE)"
	else
		if [[ -z ${SERL_NCCL_LIB:-} ]] && ! ldconfig -p 2>/dev/null | grep 'libnccl\.so\.2 ' >/dev/null; then
			SERL_NCCL_LIB=$(python3 -c 'import glob, site; print(next(iter(sorted(p for d in site.getsitepackages() for p in glob.glob(d + "/nvidia/nccl/lib/libnccl.so.2"))), ""))' 2>/dev/null)
			[[ -n $SERL_NCCL_LIB ]] && export SERL_NCCL_LIB
		fi
		echo "SERL_NCCL_LIB=${SERL_NCCL_LIB:-} (empty: the soname libnccl.so.2)" >>"$log"
		SERL_TEST_NCCL=1 wd=kernels step "nccl kernels" 30 "$log" "$g/kernels.test" -test.v -test.count=1 \
			-test.run 'NCCL' -test.timeout 25s
		row "nccl (1 rank, kernels)" "$status" "$secs" "$(gotest_counts "$log")"
		if ! command -v mpirun >/dev/null 2>&1; then
			row "nccl (1 rank, train)" SKIP 0 "no mpirun on this machine (Open MPI): only the kernels' NCCL test ran"
		else
			if [[ -z $whole ]]; then # killresume did not run (STEPS) or failed: the no-backend run first
				step "train, no backend" 60 "$log" "$g/serl" "${short[@]}" --run "$work/solo"
				[[ $status == ok ]] && whole=$work/solo
			fi
			step "train, mpirun -np 1, NCCL" 60 "$log" mpirun --allow-run-as-root -np 1 "$g/serl" "${short[@]}" --run "$work/nccl"
			if [[ -n $whole && $status == ok ]] && grep -q 'all-reduced through NCCL' "$log"; then
				step "compare" 20 "$log" python3 bench/compare_runs.py "$whole" "$work/nccl"
				row "nccl (1 rank, train)" "$status" "$secs" "$(lastline "$log" | cut -c1-120)"
			else
				row "nccl (1 rank, train)" FAIL "$secs" "no-backend run ${whole:+ok}${whole:-failed}, NCCL run $status: $(lastline "$log")"
			fi
		fi
	fi
fi

# graphs: a launch-bound chain of 97 small ops issued one by one against one graph launch
log=$OUT/6-bench.log
if unit graphs; then
	wd=kernels step "graph launch" 30 "$log" "$g/kernels.test" -test.run '^$' -test.bench 'GraphLaunch' -test.benchtime 200x
	gl() { grep "BenchmarkGraphLaunch/$DEVICE/$1" "$log" | tail -1 | awk '{printf "%.0f", $3 / 1000}'; }
	row "graphs ($DEVICE)" "$status" "$secs" "97 ops a step: direct $(gl direct) µs, one graph launch $(gl graph) µs"
fi

# serl bench beside PyTorch on the same GPU (float32, bench/torch_model.py's model)
if unit bench; then
	have_torch=0
	[[ $DEVICE == cuda ]] && python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1 && have_torch=1
	for cfg in ${BENCH_CONFIGS:-M}; do
		for mode in train score; do
			step "serl $cfg $mode" 45 "$log" "$g/serl" bench --device "$DEVICE" --config "$cfg" --mode "$mode" --steps 5 --warmup 2 --json
			s_status=$status s_secs=$secs
			s_tps=$(grep '^{"impl":"serl"' "$log" | tail -1 | grep -o '"tokens_per_s":[0-9.]*' | cut -d: -f2)
			t_tps="-"
			if [[ $have_torch == 1 ]]; then
				step "torch $cfg $mode" 45 "$log" python3 bench/torch_model.py --device cuda --config "$cfg" --mode "$mode" --steps 5 --warmup 2
				t_tps=$(grep '^{"impl": "torch"' "$log" | tail -1 | grep -o '"tokens_per_s": [0-9.]*' | cut -d' ' -f2)
			fi
			row "bench $cfg $mode" "$s_status" "$s_secs" "serl $(printf '%.0f' "${s_tps:-0}" | sed 's/^0$/?/') tok/s, torch f32 $(printf '%.0f' "${t_tps:-0}" 2>/dev/null | sed 's/^0$/?/') tok/s"
		done
	done
	# where a training step's time goes: the per-op table (it synchronises after every op, so its steps
	# are slower than the figures above), in the log
	step "serl M train op-profile" 30 "$log" "$g/serl" bench --device "$DEVICE" --config M --mode train --steps 2 --warmup 1 --op-profile
fi

# decoding (64-token prompts, 128 new tokens; greedy and sampled = 64 prompts × 1, shared = 4 prompts ×
# 16 samples), configs S and M, graphs on (the default) and off (SERL_GRAPHS=0)
if unit decode; then
	for cfg in S M; do
		for graphs in ${DECODE_GRAPHS:-1 0}; do
			mode=$([[ $graphs == 1 ]] && echo graphs || echo "no graphs")
			SERL_GRAPHS=$graphs SERL_BENCH_JSON=$work/decode.jsonl wd=engine/generate step "decode $cfg $mode" 60 "$log" \
				"$g/generate.test" -test.run '^$' -test.bench "DecodeConfig/$cfg/" -test.benchtime 1x
			figs=$(grep "\"config\":\"$cfg\"" "$work/decode.jsonl" 2>/dev/null | grep "\"graphs\":$([[ $graphs == 1 ]] && echo true || echo false)" |
				sed 's/.*"workload":"\([a-z]*\)".*"tokens_per_s":\([0-9.]*\).*/\1 \2/' |
				awk '{printf "%s%s %.0f", (NR > 1 ? ", " : ""), $1, $2}')
			row "decode $cfg $mode" "$status" "$secs" "tok/s: ${figs:-?}"
			[[ -z $stop ]] || break 2
		done
	done
fi

# the default run, in what is left: it takes no time from the steps above, and a GPU may well finish it
# (the CPU takes about 80 s with two cores)
if [[ ${FULL:-0} != 1 ]] && unit full; then
	if ((deadline - SECONDS < 40)); then
		notrun+=" full"
	else
		log=$OUT/4-train.log
		step "train (default, in the budget's remainder)" 600 "$log" "$g/serl" train --device "$DEVICE" --run "$work/full"
		case $status in
		ok) what=$(grep 'overall.*pass@1' "$log" | tail -1 | sed 's/^ *//') ;;
		TIMEOUT) what="cut by the budget after $(sed -n '/=== train (default/,$p' "$log" | grep -o '^step [0-9]*/[0-9]*' | tail -1)" ;;
		*) what=$(lastline "$log") ;;
		esac
		row "train (default)" "$status" "$secs" "$(echo "$what" | cut -c1-120)"
	fi
fi

[[ -z $notrun ]] || row "not run" SKIP 0 "$stop:$notrun"
# The driver's reports of GPU faults during the routine (Xid: a kernel's illegal address, a hang, the
# card falling off the bus) since it began, which a failing step's own message may not name; the kernel
# log's NVRM lines, where it can be read, go to the info log.
if [[ $DEVICE == cuda ]] && dmesg >/dev/null 2>&1; then
	xid=$(dmesg | grep -iE 'NVRM: Xid' | tail -n +$((xid0 + 1)) | tail -20)
	{ echo "=== kernel log: NVRM lines"; dmesg | grep -i 'NVRM' | tail -40; } >>"$OUT/1-info.log"
	[[ -z $xid ]] || row "GPU faults (Xid)" FAIL 0 "$(echo "$xid" | wc -l) in the kernel log, last: $(echo "$xid" | tail -1 | sed 's/.*NVRM: //' | cut -c1-150)"
fi
echo
echo "serl GPU routine ($(cat "$g/commit"), $DEVICE, ${SECONDS}s of BUDGET=${BUDGET}s), logs in $OUT"
cat "$summary"
