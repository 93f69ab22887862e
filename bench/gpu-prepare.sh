#!/usr/bin/env bash
# Builds what bench/gpu.sh runs on a GPU machine that has no Go and no network, as one archive:
# build/gpu.tar.gz holds bin/serl (the CPU and CUDA libraries embedded), the two libraries for the test
# binaries, and the test binaries cross-built with CGO_ENABLED=0 (kernels: the conformance suite;
# engine/model: the PyTorch fixtures; engine/generate and engine/selfplay: the decoding engine and the
# SeRL loop on the device). The repository's own files (fixtures' testdata, bench/*.py)
# travel with the working tree, so they are not copied. What travels — the archive and the working tree
# (tracked and untracked-not-ignored files) — must stay under the device tool's 64 MiB: this script
# prints both and refuses an archive over LIMIT_MB (default 36) or a total over 60 MiB.
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
cp build/libserl_cpu.so build/libserl_cuda.so "$stage/lib/"
toolchain=$(awk '/^toolchain /{print $2}' go.mod)
export GOTOOLCHAIN=${toolchain:-local} CGO_ENABLED=0
# bin/serl again without its symbol tables (4 MiB less to carry), both libraries embedded as build.sh does
go build -tags serl_embed,serl_embed_cuda -trimpath -ldflags='-s -w' -o "$stage/serl" ./cmd/serl
go test -c -trimpath -ldflags='-s -w' -o "$stage/kernels.test" ./kernels
go test -c -trimpath -ldflags='-s -w' -o "$stage/model.test" ./engine/model
go test -c -trimpath -ldflags='-s -w' -o "$stage/generate.test" ./engine/generate
go test -c -trimpath -ldflags='-s -w' -o "$stage/selfplay.test" ./engine/selfplay
git rev-parse --short HEAD >"$stage/commit" 2>/dev/null || echo unknown >"$stage/commit"
tar -C build -czf build/gpu.tar.gz gpu
mb=$(( $(stat -c %s build/gpu.tar.gz) / 1048576 ))
((mb <= LIMIT_MB)) || die "build/gpu.tar.gz is $mb MiB, over $LIMIT_MB MiB"
tree=$(( $(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}') / 1048576 ))
((mb + tree <= 60)) || die "build/gpu.tar.gz ($mb MiB) and the working tree ($tree MiB) make $((mb + tree)) MiB to carry, over 60 of the device tool's 64"
echo "build/gpu.tar.gz: $mb MiB ($(ls "$stage" | tr '\n' ' ')); with the working tree ($tree MiB) $((mb + tree)) MiB of 64 travel"
