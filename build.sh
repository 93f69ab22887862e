#!/usr/bin/env bash
# serl build: native libraries (gcc, and nvcc where it exists), then bin/serl with the libraries
# embedded, built with CGO_ENABLED=0 on exactly the Go toolchain pinned in go.mod.
#
#   ./build.sh          build build/libserl_cpu.so [build/libserl_cuda.so] and bin/serl
#   ./build.sh test     build, go vet, and run every test
#   ./build.sh bench    build and run the benchmarks (BENCH=regexp, BENCHTIME=…, PKGS=…)
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

die() { echo "build.sh: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || die "Go is not installed: install Go (https://go.dev/dl/, or 'apt-get install golang') and retry"
command -v gcc >/dev/null 2>&1 || die "gcc is not installed: install it ('apt-get install gcc') and retry"

# purego's no-cgo mode depends on runtime internals: build with exactly the pinned toolchain
# (the go command fetches it through the module proxy when the local one differs).
toolchain=$(awk '/^toolchain /{print $2}' go.mod)
export GOTOOLCHAIN=${toolchain:-local}
export CGO_ENABLED=0

mkdir -p build bin cmd/serl/embedded

build_cpu() {
	go run ./tools/genlayout csrc/serl.h build/layout.c
	local cflags=(-std=gnu11 -O3 -fPIC -fvisibility=hidden -fno-math-errno -Wall -Wextra -Wno-unused-parameter
		-pthread -Icsrc -Icsrc/cpu)
	# One build runs on any x86-64 with AVX2; *_avx512.c files hold AVX-512 paths and *_avx512bf16.c files
	# AVX-512 BF16 ones (vdpbf16ps), each chosen at run time from what the CPU has.
	local base=(-mavx2 -mfma -mf16c)
	local avx512=(-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl)
	local avx512bf16=("${avx512[@]}" -mavx512bf16)
	local objs=() pids=() src obj
	for src in csrc/cpu/*.c build/layout.c; do
		obj=build/obj/$(basename "${src%.c}").o
		mkdir -p build/obj
		objs+=("$obj")
		if [[ $src == *_avx512bf16.c ]]; then
			gcc "${cflags[@]}" "${avx512bf16[@]}" -c "$src" -o "$obj" &
		elif [[ $src == *_avx512.c ]]; then
			gcc "${cflags[@]}" "${avx512[@]}" -c "$src" -o "$obj" &
		else
			gcc "${cflags[@]}" "${base[@]}" -c "$src" -o "$obj" &
		fi
		pids+=($!)
	done
	local fail=0
	for p in "${pids[@]}"; do wait "$p" || fail=1; done
	[[ $fail == 0 ]] || die "compiling csrc/cpu failed"
	gcc -shared -pthread -Wl,--no-undefined -Wl,-z,noexecstack -o build/libserl_cpu.so.tmp "${objs[@]}" -lm
	mv build/libserl_cpu.so.tmp build/libserl_cpu.so
}

# cuda_object SRC OBJ FLAGS...: one object of the CUDA library. A kernel of ours whose registers spill to
# local memory is an error: the tensor-core attention kernels sit near the 255-register limit, and a
# spill there costs more than any tuning gains, unseen until a GPU profile. cub's own sort kernels
# (sample.cu's top-p) spill a few bytes on sm_80 by their authors' choice and are let through.
cuda_object() {
	local src=$1 obj=$2
	shift 2
	if ! nvcc "$@" -Xptxas -warn-spills -c "$src" -o "$obj.tmp" 2>"$obj.log"; then
		cat "$obj.log" >&2
		return 1
	fi
	local spills
	spills=$(grep "Registers are spilled" "$obj.log" | grep -v "function '_ZN3cub" || true)
	grep -v "Registers are spilled" "$obj.log" >&2 || true
	if [[ -n $spills ]]; then
		echo "build.sh: $src: a kernel spills registers to local memory (ptxas):" >&2
		echo "$spills" >&2
		rm -f "$obj.tmp"
		return 1
	fi
	mv "$obj.tmp" "$obj"
}

# The CUDA library, wherever nvcc ≥ 11.8 exists: one object per csrc/cuda/*.cu (rebuilt only when it or
# a header is newer), for sm_80 and sm_90 with sm_90 PTX (SERL_CUDA_GENCODE overrides, e.g.
# "-arch=sm_90" while developing). The CUDA runtime is linked statically; cuBLAS is dlopened at run
# time (csrc/cuda/cublas_loader.cu), never linked.
build_cuda() {
	if ! command -v nvcc >/dev/null 2>&1 || [[ ! -d csrc/cuda ]]; then
		rm -f build/libserl_cuda.so cmd/serl/embedded/libserl_cuda.so
		return
	fi
	local ver
	ver=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
	read -r major minor <<<"$ver"
	if [[ -z $major ]] || ((major < 11 || (major == 11 && minor < 8))); then
		echo "build.sh: nvcc ${major:-?}.${minor:-?} is older than 11.8: skipping the CUDA library" >&2
		rm -f build/libserl_cuda.so cmd/serl/embedded/libserl_cuda.so
		return
	fi
	local gencode
	read -r -a gencode <<<"${SERL_CUDA_GENCODE:--gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90}"
	local flags=(-O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall -Icsrc "${gencode[@]}")
	mkdir -p build/cuda_obj
	# objects built for other targets are stale
	if [[ "$(cat build/cuda_obj/gencode 2>/dev/null)" != "${gencode[*]}" ]]; then
		rm -f build/cuda_obj/*.o
		echo "${gencode[*]}" >build/cuda_obj/gencode
	fi
	local objs=() pids=() src obj hdr newest=csrc/serl.h
	for hdr in csrc/*.h csrc/cuda/*.cuh; do [[ $hdr -nt $newest ]] && newest=$hdr; done
	local jobs
	jobs=$(nproc 2>/dev/null || echo 2)
	for src in csrc/cuda/*.cu; do
		obj=build/cuda_obj/$(basename "${src%.cu}").o
		objs+=("$obj")
		if [[ -f $obj && $obj -nt $src && $obj -nt $newest && $obj -nt build.sh ]]; then continue; fi
		while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
		rm -f "$obj"
		cuda_object "$src" "$obj" "${flags[@]}" &
		pids+=($!)
	done
	local fail=0
	for p in "${pids[@]}"; do wait "$p" || fail=1; done
	[[ $fail == 0 ]] || die "compiling csrc/cuda failed"
	for obj in "${objs[@]}"; do [[ -f $obj ]] || die "compiling csrc/cuda failed ($obj is missing)"; done
	# build/obj/layout.o: the generated field table (build_cpu compiled it with -fPIC), for the Go mirror test
	nvcc -shared -cudart static -Xlinker --exclude-libs,ALL,--no-undefined,--version-script=csrc/cuda/exports.map \
		-o build/libserl_cuda.so.tmp "${objs[@]}" build/obj/layout.o -Xlinker -ldl,-lpthread,-lrt
	mv build/libserl_cuda.so.tmp build/libserl_cuda.so
}

# The same CUDA library for the SIMT emulator (csrc/cudaemu), wherever build_cuda built the real one:
# each csrc/cuda/*.cu through translate.sed (the launch syntax) and g++ with simt.h force-included, into
# build/cudaemu/libserl_cuda.so, with the emulated cuBLAS beside it as libcublas.so.13. `./build.sh test`
# runs the conformance suite, graph capture and the model fixtures on it (SERL_LIB_DIR=build/cudaemu).
# -ffp-contract=off: each float operation one rounding, as the kernels spell out where it matters.
build_cudaemu() {
	if [[ ! -f build/libserl_cuda.so ]]; then
		rm -rf build/cudaemu
		return
	fi
	local inc
	inc=$(dirname "$(command -v nvcc)")/../include
	[[ -f $inc/cuda_runtime.h ]] || inc=/usr/include
	local flags=(-O2 -g -std=c++17 -fPIC -fvisibility=hidden -ffp-contract=off -Wall -Wno-unused-function -Wno-unknown-pragmas -Wno-sign-compare
		-include csrc/cudaemu/simt.h -Icsrc/cudaemu/include -Icsrc/cuda -Icsrc -I"$inc")
	mkdir -p build/cudaemu/src build/cudaemu/obj
	local objs=() pids=() src out obj newest=csrc/serl.h hdr jobs extra
	for hdr in csrc/*.h csrc/cuda/*.cuh csrc/cudaemu/*.h csrc/cudaemu/translate.sed build.sh; do [[ $hdr -nt $newest ]] && newest=$hdr; done
	jobs=$(nproc 2>/dev/null || echo 2)
	# the kernels' memory accesses call race.cpp's checks (g++'s ThreadSanitizer instrumentation, no runtime);
	# without scalar replacement of aggregates a uint4 or float4 load stays one 16-byte access there, as
	# it is on the GPU, so its alignment, shared-memory banks and global sectors are judged as the GPU sees them
	local race=(-fsanitize=thread --param=tsan-instrument-func-entry-exit=0 -fno-tree-sra)
	for src in csrc/cuda/*.cu csrc/cudaemu/simt.cpp csrc/cudaemu/runtime.cpp csrc/cudaemu/resources.cpp csrc/cudaemu/race.cpp csrc/cudaemu/traffic.cpp; do
		obj=build/cudaemu/obj/$(basename "${src%.*}").o
		objs+=("$obj")
		if [[ -f $obj && $obj -nt $src && $obj -nt $newest ]]; then continue; fi
		out=$src extra=()
		if [[ $src == *.cu ]]; then
			out=build/cudaemu/src/$(basename "${src%.cu}").cpp extra=("${race[@]}")
			{ echo "#line 1 \"$src\""; sed -f csrc/cudaemu/translate.sed "$src"; } >"$out"
		fi
		while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
		rm -f "$obj"
		g++ "${flags[@]}" "${extra[@]}" -c "$out" -o "$obj.tmp" && mv "$obj.tmp" "$obj" &
		pids+=($!)
	done
	local fail=0 p
	for p in "${pids[@]}"; do wait "$p" || fail=1; done
	[[ $fail == 0 ]] || die "compiling csrc/cuda for the SIMT emulator failed"
	g++ -shared -Wl,--exclude-libs,ALL,--no-undefined,--version-script=csrc/cuda/exports.map \
		-o build/cudaemu/libserl_cuda.so "${objs[@]}" build/obj/layout.o -ldl -lpthread
	# What ptxas gave each kernel of the real library for each target (registers a thread, static shared
	# memory): the emulator checks every launch against it, as a GPU would (csrc/cudaemu/resources.cpp).
	command -v cuobjdump >/dev/null 2>&1 || die "the SIMT emulator needs cuobjdump (it comes with nvcc)"
	cuobjdump -res-usage build/libserl_cuda.so | awk '
		/^arch = / { arch = $3 }
		/^ Function / { fn = $2; sub(/:$/, "", fn) }
		/^  REG:/ {
			split($1, r, ":"); shared = 0
			for (i = 2; i <= NF; i++) if ($i ~ /^SHARED:/) { split($i, v, ":"); shared = v[2] }
			print arch, r[2], shared, fn
		}' >build/cudaemu/libserl_cuda.so.resources.tmp
	grep -qE '^sm_(80|90) ' build/cudaemu/libserl_cuda.so.resources.tmp ||
		die "cuobjdump -res-usage build/libserl_cuda.so listed no sm_80 or sm_90 kernel"
	mv build/cudaemu/libserl_cuda.so.resources.tmp build/cudaemu/libserl_cuda.so.resources
	g++ -O3 -std=c++17 -fPIC -Wall -shared -Wl,-soname,libcublas.so.13,--no-undefined -I"$inc" \
		-o build/cudaemu/libcublas.so.13 csrc/cudaemu/cublas.cpp -lpthread
	# the emulator's own checks (selftest.cu), against the same executor and runtime objects
	local st=build/cudaemu/simt_selftest
	if [[ ! -f $st || csrc/cudaemu/selftest.cu -nt $st || build/cudaemu/obj/simt.o -nt $st || build/cudaemu/obj/runtime.o -nt $st ||
		build/cudaemu/obj/resources.o -nt $st || build/cudaemu/obj/race.o -nt $st || build/cudaemu/obj/traffic.o -nt $st ]]; then
		{ echo '#line 1 "csrc/cudaemu/selftest.cu"'; sed -f csrc/cudaemu/translate.sed csrc/cudaemu/selftest.cu; } \
			>build/cudaemu/src/selftest.cpp
		g++ "${flags[@]}" "${race[@]}" -c -o build/cudaemu/obj/selftest.o build/cudaemu/src/selftest.cpp
		g++ -o $st build/cudaemu/obj/selftest.o build/cudaemu/obj/simt.o build/cudaemu/obj/runtime.o \
			build/cudaemu/obj/resources.o build/cudaemu/obj/race.o build/cudaemu/obj/traffic.o -ldl -lpthread
	fi
}

build_go() {
	local tags=serl_embed
	cp build/libserl_cpu.so cmd/serl/embedded/
	if [[ -f build/libserl_cuda.so ]]; then
		cp build/libserl_cuda.so cmd/serl/embedded/
		tags+=,serl_embed_cuda
	fi
	go build -tags "$tags" -trimpath -o bin/serl ./cmd/serl
}

# What the tests need beyond Go and gcc: Open MPI for the data-parallel tests (mpirun and libmpi.so.40,
# which serl loads through purego). Installed here, not by hand, so `./build.sh test` runs on a fresh
# machine; without root or apt it says which packages to install.
test_deps() {
	# grep reads all of ldconfig's list: under pipefail, -q's early exit could fail ldconfig with SIGPIPE
	if command -v mpirun >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep 'libmpi\.so\.40 ' >/dev/null; then
		return
	fi
	if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
		echo "build.sh: installing Open MPI (openmpi-bin libopenmpi3) for the data-parallel tests" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi3 >/dev/null
	else
		die "the tests need Open MPI: install openmpi-bin and libopenmpi3 (Debian/Ubuntu) and retry"
	fi
}

if [[ ${1:-} == test ]]; then test_deps; fi
build_cpu
build_cuda
build_cudaemu
build_go

case "${1:-}" in
"")
	echo "built: build/libserl_cpu.so$([[ -f build/libserl_cuda.so ]] && echo ' build/libserl_cuda.so') bin/serl"
	;;
test)
	go vet ./...
	# -p 1: the native library already uses every core; parallel test binaries would only fight for them.
	go test -p 1 -count=1 -timeout 60m ./...
	# Again on a CPU device Go cannot read directly, as it cannot read a GPU's: every upload/download branch.
	SERL_CPU_HOST_VISIBLE=0 go test -p 1 -count=1 -timeout 60m ./...
	# Decoding with its ops issued one by one rather than launched as captured graphs (the default).
	SERL_GRAPHS=0 go test -p 1 -count=1 ./engine/generate/
	# The conformance suite on every other SIMD path (SERL_SIMD picks one; past what the CPU has, a run
	# repeats its best path). The default path has run above: the CPU's best, but avx512 on an Intel CPU
	# with AVX-512 BF16 (csrc/cpu/core.c), whose bf16 pair kernels run here under avx512bf16.
	native=$(bin/serl info 2>/dev/null | awk '$1 == "simd" { print $2 }')
	[[ -n $native ]] || die "bin/serl info names no SIMD path"
	for simd in avx512bf16 avx512 avx2; do
		[[ $simd == "$native" ]] || SERL_SIMD=$simd go test -p 1 -count=1 -run 'Conformance' ./kernels/
	done
	# The CUDA library's own kernels on the SIMT emulator (csrc/cudaemu), where build_cudaemu built it:
	# the conformance suite, graph capture and the CUDA-only checks, the CUDA-core attention too, the
	# model fixtures against PyTorch, the generation engine, and a kill and resume: what bench/gpu.sh
	# runs on a GPU, on the CPU.
	if [[ -f build/cudaemu/libserl_cuda.so ]]; then
		build/cudaemu/simt_selftest
		emu=(env SERL_LIB_DIR="$root/build/cudaemu" SERL_TEST_DEVICES=cuda)
		# Two SeRL steps on the built-in model, killed after the first and resumed, in f32 and bf16: the
		# CUDA path's checkpoint round trip and determinism (about 2 minutes each). The emulator runs
		# kernels on one core, so the bf16 run goes beside the rest, its output shown when it ends. Their
		# kernels' shared-memory races are the conformance suite's to find: the check is off for them.
		e2e_log=$(mktemp)
		"${emu[@]}" SERL_SIMT_RACE=0 go test -p 1 -count=1 -run 'TestE2EResumeReproducesNextStep/bf16' ./engine/builtin/ >"$e2e_log" 2>&1 &
		e2e_pid=$!
		trap 'kill "$e2e_pid" 2>/dev/null || true; rm -f "$e2e_log"' EXIT # if a test below fails first
		"${emu[@]}" go test -p 1 -count=1 -run 'TestConformance|TestCUDA' ./kernels/
		# decode attention as on a GPU with slow float64 (L4, A10, RTX): its scores' compensated float sum
		"${emu[@]}" SERL_SIMT_SM=89 go test -p 1 -count=1 -run 'TestConformance/cuda/(kv_decode|bf16_kv_decode)$|TestCUDADecodeScores' ./kernels/
		"${emu[@]}" SERL_CUDA_ATTN=cores go test -p 1 -count=1 -run 'TestConformance/cuda/^(attention|bf16_attention|graph)$' ./kernels/
		"${emu[@]}" SERL_CUDA_ATTN=cores go test -p 1 -count=1 -run 'TestCUDAAttention' ./kernels/
		# the fixtures (a LoRA group with some targets too), the fused head's bits and the head on an RL
		# step's rows alone (-short: in f32, and in bf16 with adapters, at one chunk size; 60 s)
		"${emu[@]}" go test -p 1 -count=1 -run 'Fixture|TestLoRASubsetOfGroup' ./engine/model/
		"${emu[@]}" go test -p 1 -count=1 -short -run 'TestHeadGradSameBits|TestHeadFrom' ./engine/model/
		# the generation engine: continuous batching, captured decode steps and padded batches (46 s)
		"${emu[@]}" SERL_SIMT_RACE=0 go test -p 1 -count=1 ./engine/generate/
		# the SeRL loop's resumes, in f32, bf16 and with LoRA (47 s; bench/gpu.sh runs the whole package)
		"${emu[@]}" SERL_SIMT_RACE=0 go test -p 1 -count=1 -run 'Resume' ./engine/selfplay/
		"${emu[@]}" SERL_SIMT_RACE=0 go test -p 1 -count=1 -run 'TestE2EResumeReproducesNextStep/f32' ./engine/builtin/
		e2e_rc=0
		wait "$e2e_pid" || e2e_rc=$?
		trap - EXIT
		cat "$e2e_log"
		rm -f "$e2e_log"
		((e2e_rc == 0)) || die "the emulated bf16 kill-and-resume failed (exit $e2e_rc)"
	fi
	;;
bench)
	go test -p 1 -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" ${PKGS:-./...}
	;;
*)
	die "unknown command '$1' (want: test, bench, or nothing to build)"
	;;
esac
