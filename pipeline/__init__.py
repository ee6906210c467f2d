"""maskwatch runtime: types, rings, stages, sources, tracker, outbox, sinks, config, CLI."""

import os

# Small matrix products (mask coefficients x prototypes, mask IoU) run on the stage's own
# thread. A multi-threaded BLAS spins extra threads that fight the decoder and the
# inference runtime for the same cores: measured here, a 20x6400 @ 6400x20 product took
# 160 ms with OpenBLAS' default threads on a busy 2-core machine and 0.11 ms with one.
# Must happen before numpy is imported; users can still override it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
