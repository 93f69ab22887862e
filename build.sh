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

build_cuda() {
	if ! command -v nvcc >/dev/null 2>&1 || [[ ! -d csrc/cuda ]]; then
		rm -f build/libserl_cuda.so cmd/serl/embedded/libserl_cuda.so
		return
	fi
	nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -cudart static \
		-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
		-Icsrc -o build/libserl_cuda.so.tmp csrc/cuda/*.cu build/layout.c -lcublas_static -lcublasLt_static -lculibos
	mv build/libserl_cuda.so.tmp build/libserl_cuda.so
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

build_cpu
build_cuda
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
	# The conformance suite on every other SIMD path the CPU has (SERL_SIMD caps the path, so on a CPU
	# without AVX-512 BF16 or AVX-512 a run repeats the best path it has).
	for simd in avx512 avx2; do
		SERL_SIMD=$simd go test -p 1 -count=1 -run 'Conformance' ./kernels/
	done
	;;
bench)
	go test -p 1 -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" ${PKGS:-./...}
	;;
*)
	die "unknown command '$1' (want: test, bench, or nothing to build)"
	;;
esac
