"""The output layer's rows that the runtime feeds a shortlist step graph (``shortlist_rows.npz``).

A batch's candidates stay the same at every step of its search, and so do the output layer's
rows for them. A step graph that gathers those rows from its own weights repeats the gather at
every step (a tenth of a beam step on the Multi30k model); one whose rows are inputs takes them
once per batch from here. In an int8 export the rows are int8 with one scale per vocabulary
id, so the product runs on int8 weights (com.microsoft DynamicQuantizeMatMul), where weights
gathered inside the graph came out of DequantizeLinear as float32. numpy only; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class OutputRows:
    """weight (V, H) float32, or int8 with scale (V,) float32 (w = scale * q); bias (V,) float32."""

    weight: np.ndarray
    bias: np.ndarray
    scale: np.ndarray | None = None

    @classmethod
    def quantized(cls, weight: np.ndarray, bias: np.ndarray) -> OutputRows:
        """Symmetric int8 per vocabulary id (a row of zeros keeps scale 1)."""
        peak = np.abs(weight).max(axis=1)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8)
        return cls(q, bias.astype(np.float32), scale)

    def take(self, candidates: np.ndarray, rest: np.ndarray | None, vocab: int) -> tuple[np.ndarray, ...]:
        """The rows the graph takes for a batch: those of ``candidates`` (C,) then of ``rest`` (R,)
        (None: no rest sample) as (weight (H, C + R), bias (C + R,)[, scale (C + R,)]), the rest's
        biases raised by log((vocab - C) / R), so that the log_softmax over all C + R columns is
        each candidate's log-probability with the normalizer estimated from the sample."""
        ids = candidates if rest is None else np.concatenate([candidates, rest])
        weight = np.ascontiguousarray(self.weight[ids].T)
        bias = self.bias[ids]  # a copy (fancy indexing)
        if rest is not None and len(rest):
            bias[len(candidates) :] += np.float32(np.log((vocab - len(candidates)) / len(rest)))
        if self.scale is None:
            return weight, bias
        return weight, bias, self.scale[ids]

    def save(self, path: Path) -> None:
        arrays = {"weight": self.weight, "bias": self.bias}
        if self.scale is not None:
            arrays["scale"] = self.scale
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path, vocab: int) -> OutputRows:
        """Read ``path`` (float32, or int8 with its scale); ValueError when its arrays do not fit
        a vocabulary of ``vocab`` ids."""
        with np.load(path, allow_pickle=False) as data:
            weight, bias = data["weight"], data["bias"].astype(np.float32)
            scale = data["scale"].astype(np.float32) if weight.dtype == np.int8 else None
        if weight.dtype not in (np.float32, np.int8):
            raise ValueError(f"weight is {weight.dtype}; expected float32 or int8")
        if weight.ndim != 2 or weight.shape[0] != vocab:
            raise ValueError(f"weight has shape {weight.shape}; expected ({vocab}, H)")
        for name, arr in (("bias", bias), ("scale", scale)):
            if arr is not None and arr.shape != (vocab,):
                raise ValueError(f"{name} has shape {arr.shape}; expected ({vocab},)")
        return cls(weight, bias, scale)
