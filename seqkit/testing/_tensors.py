"""Tensor helpers of the model checks: the fixed inputs and comparisons with clear messages."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from seqkit.testing._common import fail

ATOL = 1e-5  # torch vs torch: the same arithmetic in another order
ONNX_ATOL = 1e-4  # torch vs onnxruntime: other kernels
RTOL = 1e-4
SRC_VOCAB, TGT_VOCAB = 13, 17
# The traced batch: S = 7 (a size no test layer has, so the exporter can tell the source axis
# apart), padding in two rows. The exported graphs then run on other B and S.
LENGTHS = (7, 4, 1)
OTHER_LENGTHS = (9, 1, 3, 5)


def source_batch(lengths: Sequence[int], vocab: int, pad_id: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """-> src (B, S) int64 right-padded with pad_id, lengths (B,) int64; tokens from 4..vocab-1."""
    if vocab <= 4:
        raise ValueError(f"vocab_size must exceed the 4 special ids, got {vocab}")
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    lens = torch.tensor(list(lengths), dtype=torch.long)
    src = torch.randint(4, vocab, (len(lengths), width), generator=gen)
    return src.masked_fill(torch.arange(width)[None] >= lens[:, None], pad_id), lens


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float() if x.dtype != torch.bool else x.detach().cpu()
        return x.numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def assert_close(label: str, what: str, got: Any, want: Any, atol: float = ATOL) -> None:
    """``got`` equals ``want`` (tensors or arrays); shapes and the max |difference| reported apart."""
    a, b = to_numpy(got), to_numpy(want)
    if a.shape != b.shape:
        fail(label, f"{what}: shape {a.shape}, expected {b.shape}")
    if a.size == 0 or np.allclose(a, b, atol=atol, rtol=RTOL):
        return
    diff = np.nan_to_num(np.abs(a - b), nan=np.inf)
    where = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
    fail(label, f"{what}: max |diff| {diff.max():.3g} at index {where} ({a[where]:.6g} vs {b[where]:.6g}) "
                f"exceeds atol {atol:g} + rtol {RTOL:g}")


def assert_shape(label: str, what: str, tensor: Any, expected: tuple[int, ...]) -> None:
    if not isinstance(tensor, torch.Tensor):
        fail(label, f"{what}: expected a tensor of shape {expected}, got {type(tensor).__name__}")
    if tuple(tensor.shape) != expected:
        fail(label, f"{what}: shape {tuple(tensor.shape)}, expected {expected}")
