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

The second concern is speed. glibc's malloc serves every block over 32 MiB with a fresh
``mmap`` and unmaps it on free, and a training step allocates several such blocks (the logits
and their gradient: target positions x vocabulary, 88 MB at 2,750 x 8,000 in float32), so every
step the kernel faults in and zeroes those pages again: filling a fresh 88 MB tensor took
~70 ms against ~4 ms for a reused one on the 2-core VM. :func:`keep_freed_memory` makes malloc
serve them from its heap and keep what is freed there for the next step: the translate recipe
trained 1.12x faster, OpenNMT-py's architecture 1.08x in fp32 (1.00x in bf16, whose blocks are
half the size), for 0.07-0.24 GiB more peak RSS (2 threads, docs/benchmarks.md, run T).
``seqkit train`` calls it on the CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Mapping

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


# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# Free memory at the top of the heap kept rather than returned to the OS: a step's largest
# blocks are a few hundred MB. The heap holds what the process had in use at its peak, plus what
# fragmentation leaves between blocks (measured: 0.07-0.24 GiB more peak RSS than glibc's default).
TRIM_THRESHOLD = 1 << 30
# glibc's own environment settings for the same parameters, and allocators that replace it.
_MALLOC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> str:
    """Make glibc's malloc serve large blocks from its heap and keep freed memory for reuse
    (``mallopt``: no ``mmap``, a 1 GiB trim threshold), process-wide, from now on.

    Nothing changes where the environment already tunes malloc (``MALLOC_*_`` variables,
    ``glibc.malloc`` tunables) or preloads another allocator, or where the C library is not
    glibc. Returns what was done, as the training log records it.
    """
    if any(name in environ for name in _MALLOC_VARIABLES) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return "malloc as the environment tunes it"
    if any(name in environ.get("LD_PRELOAD", "") for name in _ALLOCATORS):
        return "malloc preloaded"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "malloc unchanged (not glibc)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        done = False
    return "malloc keeps freed blocks" if done else "malloc unchanged (mallopt refused)"
