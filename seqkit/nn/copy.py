"""Copy (pointer-generator) output layer, See et al. 2017 ("Get To The Point").

A decoder with ``copy_source: true`` mixes two distributions over the shared vocabulary at each step::

    p_gen  = sigmoid(w · [c_t; h~_t; emb(y_{t-1})] + b)            (B, T, 1)
    P(w)   = p_gen · softmax(W_o h~_t)[w] + (1 - p_gen) · Σ_{i: src_i = w} a_t[i]

where ``a_t`` are the attention weights over source positions. The scatter-add of the attention
onto the source ids is what lets the model emit a source word its softmax has barely learned
(a name, a number), which is most of what a small headline corpus asks for.

The layer returns ``log(P)``, not logits. ``log_softmax`` (search, the exported step graph) and
``cross_entropy`` / the label-smoothed loss leave a normalized log-distribution unchanged, so no
consumer needs to know which kind of decoder produced it. Mixing happens in probability space,
in float32, and probabilities are clamped at ``EPS`` before the log: a word that neither the
softmax nor the attention gives any mass gets log(EPS) instead of -inf (no NaN in the loss or its
gradient under label smoothing, which averages log P over the whole vocabulary).

Source ids travel as a float32 memory tensor (exported memory is float32 by contract); float32
holds integers exactly up to 2**24, far above any vocabulary size. The scatter-add exports to
ONNX ScatterElements(reduction="add"), which needs opset >= :data:`MIN_OPSET`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-10  # probability floor before the log
MIN_OPSET = 16  # ONNX ScatterElements gained reduction="add" in opset 16


class CopyGenerator(nn.Module):
    """The generation gate and the mixture. ``context_size``: attention context C,
    ``hidden_size``: attentional output H, ``embedding_dim``: decoder input embedding E."""

    def __init__(self, context_size: int, hidden_size: int, embedding_dim: int):
        super().__init__()
        self.gate = nn.Linear(context_size + hidden_size + embedding_dim, 1)

    def forward(self, logits: Tensor, weights: Tensor, src_ids: Tensor, context: Tensor,
                att_out: Tensor, emb: Tensor) -> Tensor:
        """Log of the mixture, float32.

        logits (B, [T,] V); weights (B, [T,] S) attention (zero at padding); src_ids (B, S)
        int64; context (B, [T,] C); att_out (B, [T,] H); emb (B, [T,] E). Returns (B, [T,] V).
        """
        p_gen = torch.sigmoid(self.gate(torch.cat([context, att_out, emb], dim=-1)).float())  # (B, [T,] 1)
        p_vocab = torch.softmax(logits.float(), dim=-1)
        index = src_ids if weights.dim() == 2 else src_ids.unsqueeze(1).expand_as(weights)  # (B, [T,] S)
        p_copy = torch.zeros_like(p_vocab).scatter_add(-1, index, weights.float())
        mix = p_gen * p_vocab + (1.0 - p_gen) * p_copy
        return torch.log(mix.clamp_min(EPS))


def source_ids(memory_tensor: Tensor) -> Tensor:
    """The float32 source-id memory tensor (B, S) back to int64 indices."""
    return memory_tensor.long()
