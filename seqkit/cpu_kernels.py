"""Which CPU kernels torch runs for seqkit's decoding (docs/benchmarks.md, "oneDNN LSTM", "torch's
float32 products").

On CPU, float32 ``torch.lstm`` goes through oneDNN whenever torch was built with it. For the
shapes seqkit runs, oneDNN is the slow choice: each new shape (every decoding step's row count,
every packed time step's batch) creates a primitive first, and its kernels lose to torch's own
(BLAS gemm plus pointwise) at small batches. Measured on the 2-core VM, 2 threads, an LSTM
layer stack 2 x 256: a decoding step of 5 rows 5.4 ms with oneDNN vs 0.48 ms without, 160 rows
14.0 ms vs 4.7 ms (one thread: 1.25 vs 0.47 ms, 4.2 vs 3.5 ms). Training keeps oneDNN: the
trainer's fp32 steps ran 7-15% faster with it (translate recipe and OpenNMT-py's architecture,
both toggled in one process on the loaded VM), and bf16 (autocast) has no fast path outside it.

The products themselves are the other half. torch's float32 ``linear`` and the LSTM's gate
products run on MKL's sgemm, which on the VM's AMD EPYC (Zen 5) reached 94 / 143 GFLOP/s (1 / 2
threads) for a beam step's (160 x 256) x (256 x 8,000) output product, against 227 / 373 for
oneDNN's inner product with the weight packed in its own layout (numpy's OpenBLAS 187 on one,
onnxruntime's MLAS 162 / 319; tools/bench_products.py). :class:`OneDnnDecoding` is a torch
function mode that sends a decoding step's ``linear`` and single-step ``lstm`` calls there, each
weight packed once (and again if it changes): torch decoding 1.19-1.25x (greedy) and 1.35x
(beam 5) faster, the same hypotheses on test2016 (docs/benchmarks.md, runs M and M2), where the
products are large enough (:func:`onednn_pays`). It changes sums at float32 rounding, not the
method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode


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


_LINEAR = torch.nn.functional.linear
_LSTM = torch._C._VariableFunctions.lstm  # what nn.LSTM.forward calls (torch._VF.lstm)


# When the mode pays. It intercepts every torch call of a step in Python (~0.25 ms a step in all),
# which a small product does not win back: on the VM, 2 threads, a decoding step was slower with
# the mode for a 64-wide model at any row count (0.37-0.75x) and for 256 x 8,000 at one row
# (0.94x), faster from 256 x 8,000 at two rows (1.28x; 1.65x at 160) and for a 512-wide LSTM
# from four rows (2.88x). So a step takes it when the model's largest product has at least
# ONEDNN_MIN_WEIGHT weight elements and rows x that many reach ONEDNN_MIN_WORK.
ONEDNN_MIN_WEIGHT = 1 << 18
ONEDNN_MIN_WORK = 3_000_000


def largest_product(model: torch.nn.Module) -> int:
    """Weight elements of the model's largest product under :class:`OneDnnDecoding`: an
    ``nn.Linear``'s weight, or one LSTM layer's ``[W_ih W_hh]``."""
    sizes = [0]
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            sizes.append(module.weight.numel())
        elif isinstance(module, torch.nn.LSTM):
            flat = module._flat_weights
            per_layer = len(flat) // max(module.num_layers * (2 if module.bidirectional else 1), 1)
            sizes += [flat[i].numel() + flat[i + 1].numel() for i in range(0, len(flat), max(per_layer, 1))]
    return max(sizes)


def onednn_pays(rows: int, largest: int) -> bool:
    """A step of ``rows`` rows over a model whose largest product is ``largest`` (see above)."""
    return largest >= ONEDNN_MIN_WEIGHT and rows * largest >= ONEDNN_MIN_WORK


def onednn_available() -> bool:
    """torch has oneDNN's packed inner product (``mkldnn._linear_pointwise``) on this machine."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


class OneDnnDecoding(TorchFunctionMode):
    """Within the mode, under ``torch.inference_mode`` on CPU float32 tensors: ``F.linear`` (every
    ``nn.Linear``) and ``nn.LSTM`` on a one-step, unpacked, unidirectional input run as oneDNN
    inner products with packed weights; every other call, and these where those conditions do
    not hold, run as they are. The packed weights go into ``cache`` (pass the same dict to the
    modes of one model: :class:`seqkit.models.TorchStepper` enters a new mode per call, in
    whichever thread decodes) keyed on the parameters' memory and shapes, and are packed again when a
    parameter changes (its in-place version counter moves); an entry keeps its parameters alive,
    so a key is never some later tensor's."""

    def __init__(self, cache: dict | None = None) -> None:
        super().__init__()
        self._packed: dict[tuple, tuple[tuple[int, ...], Tensor, Tensor | None, list[Tensor]]] = (
            {} if cache is None else cache)

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is _LINEAR and torch.is_inference_mode_enabled():
            out = self._linear(*args, **kwargs)
            if out is not None:
                return out
        elif func is _LSTM and not kwargs and len(args) == 9 and torch.is_inference_mode_enabled():
            out = self._lstm(*args)
            if out is not None:
                return out
        return func(*args, **kwargs)

    # -- packed weights ---------------------------------------------------------------------------
    def _weight(self, parts: tuple[Tensor, ...], bias: tuple[Tensor | None, ...]) -> tuple[Tensor, Tensor | None]:
        """(oneDNN-packed cat(parts, dim=1), sum of the biases or None), cached on the tensors'
        storage and versions."""
        tensors = [t for t in (*parts, *bias) if t is not None]
        key = tuple((t.data_ptr(), *t.shape, *t.stride()) for t in tensors)  # views of one storage differ
        version = tuple(-1 if t.is_inference() else t._version for t in tensors)  # no counter: never changed outside
        hit = self._packed.get(key)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        weight = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())
        present = [b for b in bias if b is not None]
        total = None if not present else (present[0] if len(present) == 1 else sum(present[1:], present[0])).contiguous()
        self._packed[key] = (version, packed, total, tensors)
        return packed, total

    @staticmethod
    def _fits(*tensors: Tensor | None) -> bool:
        return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided)
                   for t in tensors)

    def _product(self, x: Tensor, parts: tuple[Tensor, ...], bias: tuple[Tensor | None, ...]) -> Tensor:
        packed, total = self._weight(parts, bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed, total, "none", [], "")

    # -- the two calls ----------------------------------------------------------------------------
    def _linear(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor | None:
        if not (isinstance(x, Tensor) and isinstance(weight, Tensor) and self._fits(x, weight, bias)
                and weight.dim() == 2 and x.dim() >= 2 and x.numel() > 0):
            return None
        return self._product(x.contiguous(), (weight,), (bias,))

    def _lstm(self, x: Tensor, hx: Any, weights: Any, has_bias: Any, num_layers: Any, dropout: Any, train: Any,
              bidirectional: Any, batch_first: Any) -> tuple[Tensor, Tensor, Tensor] | None:
        """torch's lstm(input, (h0, c0), flat weights, bias, layers, dropout, train, bidirectional,
        batch_first) for one time step; None for anything else (a PackedSequence comes with
        other arguments, so it never gets here)."""
        if not (isinstance(x, Tensor) and isinstance(hx, (tuple, list)) and len(hx) == 2 and has_bias is True
                and not bidirectional and not train and isinstance(num_layers, int)
                and len(weights) == 4 * num_layers and x.dim() == 3 and x.size(1 if batch_first else 0) == 1):
            return None
        h0, c0 = hx
        if not self._fits(x, h0, c0, *weights) or h0.size(-1) != weights[1].size(1):  # proj_size: not here
            return None
        layer_in = x[:, 0] if batch_first else x[0]  # (B, I)
        hs, cs = [], []
        for layer in range(num_layers):
            w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
            h, c = h0[layer], c0[layer]
            gates = self._product(torch.cat([layer_in, h], dim=1), (w_ih, w_hh), (b_ih, b_hh))
            # torch's own cell, in its order (aten/src/ATen/native/RNN.cpp, LSTMCell)
            i, f, g, o = gates.unsafe_chunk(4, 1)
            c = (f.sigmoid_() * c).add_(i.sigmoid_() * g.tanh_())
            h = o.sigmoid_() * c.tanh()
            hs.append(h)
            cs.append(c)
            layer_in = h
        out = layer_in[:, None] if batch_first else layer_in[None]
        return out, torch.stack(hs), torch.stack(cs)
