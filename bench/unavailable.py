"""What the bench scripts do when this Python cannot run what was asked (no torch, no CUDA device, no
transformers): exit with sysexits' EX_UNAVAILABLE and one line saying why, which bench/gpu-perf.sh
reports as SKIP. Imports nothing beyond the standard library, so it works where torch is missing."""

import os
import sys

UNAVAILABLE = 69  # EX_UNAVAILABLE


def unavailable(why):
    prog = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    print(f"{prog}: {why}", file=sys.stderr)
    sys.exit(UNAVAILABLE)
