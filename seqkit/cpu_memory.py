"""Keeping a CPU training process's memory flat (docs/benchmarks.md, "bf16 autocast on this CPU").

Under bf16 autocast on CPU every matmul and LSTM call goes through oneDNN, and oneDNN plus
its C++ wrapper (ideep) cache one primitive per distinct input shape, 1,024 entries each by
default. Token-budget batches give hundreds of distinct shapes (the packed encoder alone has
one batch size per time step), so both caches fill with primitives that each hold JIT code
and buffers. On the translate recipe that was +0.4 GiB held after 35 steps, and a 15-minute
bf16 run peaked at 3.41 GiB (fp32, whose matmuls run through BLAS: 1.40 GiB). With both
caches at 64 the same run peaked at 1.37 GiB (docs/benchmarks.md).

Neither cache has a Python API, but both read an environment variable the first time a
primitive is created, so seqkit sets them when it is imported (an explicit setting wins).
"""

from __future__ import annotations

import os

# Entries per cache. 64 keeps the shapes a step repeats; no cache (oneDNN 0, ideep 1: ideep
# fails on 0) re-creates a primitive per call and ran slowest of the settings we tried; the
# default 1,024 is the growth described above. Returning freed heap pages to the OS
# (malloc_trim every 25 steps) on top of this did not lower the peak, so seqkit does not.
ONEDNN_CACHE_CAPACITY = 64

_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN, ideep


def bound_onednn_caches() -> None:
    """Cap oneDNN's and ideep's primitive caches unless the environment already sets them.

    Takes effect only before the process creates its first oneDNN primitive.
    """
    for name in _CACHE_VARIABLES:
        os.environ.setdefault(name, str(ONEDNN_CACHE_CAPACITY))
