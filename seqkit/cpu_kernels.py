"""Which CPU kernels torch runs for seqkit's recurrent layers (docs/benchmarks.md, "oneDNN LSTM").

On CPU, float32 ``torch.lstm`` goes through oneDNN whenever torch was built with it. For the
shapes seqkit runs, oneDNN is the slow choice: each new shape (every decoding step's row count,
every packed time step's batch) creates a primitive first, and its kernels lose to torch's own
(BLAS gemm plus pointwise) at small batches. Measured on the 2-core VM, 2 threads, an LSTM
layer stack 2 x 256: a decoding step of 5 rows 5.4 ms with oneDNN vs 0.48 ms without, 160 rows
14.0 ms vs 4.7 ms (one thread: 1.25 vs 0.47 ms, 4.2 vs 3.5 ms). Training keeps oneDNN: the
trainer's fp32 steps ran 7-15% faster with it (translate recipe and OpenNMT-py's architecture,
both toggled in one process on the loaded VM), and bf16 (autocast) has no fast path outside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def native_rnn(device: torch.device, dtype: torch.dtype | None = torch.float32) -> Iterator[None]:
    """Within the block, float32 RNN kernels on CPU are torch's own, not oneDNN's.

    ``dtype``: the dtype the block computes in (None or a float16/bfloat16 autocast dtype leave
    oneDNN on). The flag is process-wide; the previous value is restored on exit.
    """
    if device.type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        yield
        return
    saved = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(saved)
