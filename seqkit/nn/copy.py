"""Copy (pointer-generator) output layer, See et al. 2017 ("Get To The Point").

A decoder with ``copy_source: true`` mixes two distributions over the shared vocabulary at each step::

    p_gen  = sigmoid(w · [c_t; h~_t; emb(y_{t-1})] + b)            (B, T, 1)
    P(w)   = p_gen · softmax(W_o h~_t)[w] + (1 - p_gen) · Σ_{i: src_i = w} a_t[i]

where ``a_t`` are the attention weights over source positions. The scatter-add of the attention
onto the source ids is what lets the model emit a source word its softmax has barely learned
(a name, a number), which is most of what a small headline corpus asks for.

The layer returns ``log(P)``, not logits. ``log_softmax`` (search, the exported step graph) and
``cross_entropy`` / the label-smoothed loss leave a normalized log-distribution unchanged, so no
consumer needs to know which kind of decoder produced it. The mixture is computed in float32
and mostly in log space: every word gets ``log p_gen + log_softmax`` (finite, exact), and only
the words present in the source, S << V of them, get ``logaddexp`` with ``log((1 - p_gen) ·
copy mass)``, the copy mass clamped at ``EPS`` (a padding position has none) so nothing is
-inf or NaN in the loss or its gradient. Mixing whole (B, T, V) probability tensors and taking
their log costs more passes over the vocabulary-sized tensor and loses every word whose
probability underflows float32.

Source ids travel as a float32 memory tensor (exported memory is float32 by contract); float32
holds integers exactly up to 2**24, far above any vocabulary size. The final write is an ONNX
ScatterElements without reduction (opset 11+). Repeated source words are written several times
with one identical value, so the order ONNX leaves undefined for duplicate indices cannot change
the result.

With ``extended`` (``model.decoder.copy_oov``, :mod:`seqkit.oov`) source ids ``V + k`` name a
sentence's own unknown words. The output grows by S columns (B, [T,] V + S): generation gives
them no mass (``log EPS``, a floor that keeps the loss finite), so a column ``V + k`` holds the
copy probability of that word alone. Columns past a sentence's unknown words keep the floor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-10  # floor on a source word's copy mass before the log
LOG_EPS = math.log(EPS)


class CopyGenerator(nn.Module):
    """The generation gate and the mixture. ``context_size``: attention context C,
    ``hidden_size``: attentional output H, ``embedding_dim``: decoder input embedding E."""

    def __init__(self, context_size: int, hidden_size: int, embedding_dim: int, extended: bool = False):
        super().__init__()
        self.gate = nn.Linear(context_size + hidden_size + embedding_dim, 1)
        self.extended = extended

    def forward(self, logits: Tensor, weights: Tensor, src_ids: Tensor, context: Tensor,
                att_out: Tensor, emb: Tensor) -> Tensor:
        """Log of the mixture, float32.

        logits (B, [T,] V); weights (B, [T,] S) attention (zero at padding); src_ids (B, S)
        int64; context (B, [T,] C); att_out (B, [T,] H); emb (B, [T,] E). Returns (B, [T,] V),
        (B, [T,] V + S) when ``extended``.
        """
        if weights.dim() == 2:  # one step: give it a time axis of 1
            return self(logits[:, None], weights[:, None], src_ids, context[:, None], att_out[:, None], emb[:, None])[:, 0]
        gate = self.gate(torch.cat([context, att_out, emb], dim=-1)).float()  # (B, T, 1)
        # Generation in log space: log p_gen + log_softmax is exact and finite for every word, and
        # only S << V entries need the mixture.
        out = torch.log_softmax(logits.float(), dim=-1) + F.logsigmoid(gate)  # (B, T, V)
        if self.extended:  # the sentence's unknown words, V + k: no generation mass
            out = torch.cat([out, torch.full_like(weights, LOG_EPS, dtype=torch.float32)], dim=-1)  # (B, T, V + S)
        same = (src_ids[:, :, None] == src_ids[:, None, :]).float()  # (B, S, S) same word
        mass = weights.float() @ same  # (B, T, S) copy mass of the word at each source position
        copied = F.logsigmoid(-gate) + torch.log(mass.clamp_min(EPS))
        index = src_ids[:, None, :].expand_as(weights)  # (B, T, S)
        mixed = _logaddexp(out.gather(-1, index), copied)  # (B, T, S)
        # A repeated word is written once per repeat, the same value each time; only its first
        # position passes the gradient back (scatter's backward would send it once per repeat).
        first = first_occurrence(src_ids)[:, None, :]
        mixed = first * mixed + (1.0 - first) * mixed.detach()
        return out.scatter(-1, index, mixed)


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """log(exp(a) + exp(b)) written out: torch.onnx has no export for aten::logaddexp."""
    return torch.maximum(a, b) + torch.log(1.0 + torch.exp(-(a - b).abs()))


def first_occurrence(src_ids: Tensor) -> Tensor:
    """(B, S) int64 -> (B, S) float 1.0 where the id does not occur at an earlier position."""
    positions = torch.arange(src_ids.size(1), device=src_ids.device)
    earlier = positions[None, :] < positions[:, None]  # (S, S): j < i
    repeat = (src_ids[:, :, None] == src_ids[:, None, :]) & earlier  # (B, S_i, S_j)
    return 1.0 - repeat.any(dim=-1).float()


def source_ids(memory_tensor: Tensor) -> Tensor:
    """The float32 source-id memory tensor (B, S) back to int64 indices."""
    return memory_tensor.long()
