# The two pieces of CUDA syntax that C++ lacks, rewritten for the SIMT emulator (simt.h), one line for
# one line so that compiler messages keep csrc/cuda's line numbers:
#   kernel<<<grid, block, shm, stream>>>(args)  ->  simt::Launch(grid, block, shm, stream)("kernel", kernel, args)
#   extern __shared__ T name[];                 ->  T *name = (T *)simt::dynamic_smem();
s/\b\([A-Za-z_][A-Za-z0-9_]*\(<[^<>]*>\)\{0,1\}\)<<<\(.*\)>>>(/simt::Launch(\3)("\1", \1, /
s/extern __shared__ \([A-Za-z_][A-Za-z0-9_ ]*[A-Za-z0-9_]\) \([A-Za-z_][A-Za-z0-9_]*\)\[\];/\1 *\2 = (\1 *)simt::dynamic_smem();/
