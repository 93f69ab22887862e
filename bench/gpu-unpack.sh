# Sourced by the GPU routines (bench/gpu.sh, bench/gpu-perf.sh) from the repository root, with the
# archive bench/gpu-prepare.sh built as $1: unpacks it into a temporary $work (removed on exit) and sets
# $g (its gpu/ folder: serl, the libraries, the test binaries), SERL_LIB_DIR (its libraries) and $OUT
# (the logs, default ./gpu-out).
root=$(pwd)
bundle=${1:-build/gpu.tar.gz}
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$bundle" || { echo "$0: cannot unpack $bundle (run bench/gpu-prepare.sh first)" >&2; exit 1; }
g=$work/gpu
# the libraries built with the archive's serl and tests, not whatever a build/ beside them holds (a dry
# run here from an archive older than the tree would otherwise load a library of another ABI)
export SERL_LIB_DIR=$g/lib

# guarded LIMIT CMD...: timeout --kill-after=10 LIMIT CMD..., its exit status, with the machine's memory
# watched: once its available memory falls under HOST_FLOOR_MB (default a sixteenth of it) the command's
# process group gets SIGTERM, then SIGKILL 10 s later, and $work/guard says why. A device machine that
# runs out of memory stops answering and the call returns nothing at all (logs included), so a step that
# grows too large must die first; a step so stopped exits 143 or 137 before its limit, a FAIL.
host_floor_mb=${HOST_FLOOR_MB:-$(awk '/^MemTotal:/{print int($2 / 1024 / 16)}' /proc/meminfo)}
guarded() {
	local limit=$1
	shift
	rm -f "$work/guard"
	timeout --kill-after=10 "$limit" "$@" & # timeout leads a process group of its own: -$pid is the command's
	local pid=$!
	(
		while kill -0 "$pid" 2>/dev/null; do
			avail=$(awk '/^MemAvailable:/{print int($2 / 1024)}' /proc/meminfo)
			if ((avail < host_floor_mb)); then
				echo "stopped: the machine had ${avail} MiB of memory available, under HOST_FLOOR_MB=${host_floor_mb}" >"$work/guard"
				kill -TERM -- "-$pid" 2>/dev/null
				sleep 10
				kill -KILL -- "-$pid" 2>/dev/null
				exit
			fi
			sleep 1
		done
	) &
	local watch=$!
	wait "$pid"
	local rc=$?
	kill "$watch" 2>/dev/null
	wait "$watch" 2>/dev/null
	return $rc
}
