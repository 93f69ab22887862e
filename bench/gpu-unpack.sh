# Sourced by the GPU routines (bench/gpu.sh, bench/gpu-perf.sh) from the repository root, with the
# archive bench/gpu-prepare.sh built as $1: unpacks it into a temporary $work (removed on exit) and sets
# $g (its gpu/ folder: serl, the libraries, the test binaries) and $OUT (the logs, default ./gpu-out).
root=$(pwd)
bundle=${1:-build/gpu.tar.gz}
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$bundle" || { echo "$0: cannot unpack $bundle (run bench/gpu-prepare.sh first)" >&2; exit 1; }
g=$work/gpu
