#!/usr/bin/env bash
# Builds what bench/gpu.sh runs on a GPU machine that has no Go and no network, as one archive:
# build/gpu.tar.gz holds bin/serl (the CPU and CUDA libraries embedded), the two libraries for the test
# binaries, and the test binaries cross-built with CGO_ENABLED=0 (kernels: the conformance suite;
# engine/model: the PyTorch fixtures). The repository's own files (fixtures' testdata, bench/*.py)
# travel with the working tree, so they are not copied. The archive must stay well under the device
# tool's 64 MiB (the working tree counts too); this script refuses one over LIMIT_MB (default 36).
#
#   bench/gpu-prepare.sh            then, on the device:  bench/gpu.sh build/gpu.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT_MB=${LIMIT_MB:-36}
die() { echo "bench/gpu-prepare.sh: $*" >&2; exit 1; }

./build.sh >&2
[[ -f build/libserl_cuda.so ]] || die "build.sh built no CUDA library (is nvcc ≥ 11.8 installed?)"
stage=build/gpu
rm -rf "$stage" build/gpu.tar.gz
mkdir -p "$stage/lib"
cp bin/serl "$stage/"
cp build/libserl_cpu.so build/libserl_cuda.so "$stage/lib/"
toolchain=$(awk '/^toolchain /{print $2}' go.mod)
export GOTOOLCHAIN=${toolchain:-local} CGO_ENABLED=0
go test -c -trimpath -ldflags='-s -w' -o "$stage/kernels.test" ./kernels
go test -c -trimpath -ldflags='-s -w' -o "$stage/model.test" ./engine/model
go test -c -trimpath -ldflags='-s -w' -o "$stage/generate.test" ./engine/generate
git rev-parse --short HEAD >"$stage/commit" 2>/dev/null || echo unknown >"$stage/commit"
tar -C build -czf build/gpu.tar.gz gpu
mb=$(( $(stat -c %s build/gpu.tar.gz) / 1048576 ))
((mb <= LIMIT_MB)) || die "build/gpu.tar.gz is $mb MiB, over $LIMIT_MB MiB"
echo "build/gpu.tar.gz: $mb MiB ($(ls "$stage" | tr '\n' ' '))"
