# Sourced by the CPU side-by-side scripts (model.sh, decode.sh) after PYTHON is set: makes sure the
# OpenBLAS under Debian's torch runs kernels for this CPU. An OpenBLAS older than the CPU does not
# know it and falls back to its SSE3 "Prescott" kernels: Debian 12's 0.3.21 on a Xeon of model 207
# (Emerald Rapids) runs an sgemm at 64 GFLOP/s on 2 cores where its SkylakeX kernels run 310-320, and
# torch with it would be no peer. Then OPENBLAS_CORETYPE picks the AVX-512 (SkylakeX) or AVX2
# (Haswell) kernels, and a line says so. A value already set is left as it is. The cores with AVX2
# kernels are kernels/matmul_test.go's list, whose GEMM benchmark refuses such a peer instead.
if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
	openblas_core=$("$PYTHON" - 2>/dev/null <<'PY' || true
import ctypes
for name in ("libopenblas.so.0", "libopenblas.so"):
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        continue
    lib.openblas_get_corename.restype = ctypes.c_char_p
    print(lib.openblas_get_corename().decode())
    break
PY
)
	case ${openblas_core,,} in
	"" | haswell | zen | skylakex | cooperlake | sapphirerapids | excavator) ;;
	*)
		if grep -qw avx512f /proc/cpuinfo; then
			export OPENBLAS_CORETYPE=SkylakeX
		elif grep -qw avx2 /proc/cpuinfo; then
			export OPENBLAS_CORETYPE=Haswell
		fi
		[[ -n ${OPENBLAS_CORETYPE:-} ]] &&
			echo "$(basename "$0"): OpenBLAS does not know this CPU (it picked its $openblas_core kernels): OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE for torch" >&2
		;;
	esac
	unset openblas_core
fi
