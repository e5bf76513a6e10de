"""Attention plugins: score a query against every source position, return a context vector.

Each plugin follows :class:`seqkit.contracts.Attention`: ``__init__(config, query_size,
memory_size)``, ``precompute(memory) -> keys`` run once per source, and
``forward(query, keys, memory, mask) -> (context, weights)`` run for one step (T = 1) or for a
whole target sequence at once (Luong style without input feeding).

=================  ======================================  ======================
name               score(q, m)                             query
=================  ======================================  ======================
``none``           (no attention: a plain RNN decoder)     -
``bahdanau``       v . tanh(W_k m + W_q q)                 previous decoder state
``luong-dot``      q . m                                   current RNN output
``luong-general``  q . (W m)                               current RNN output
``luong-concat``   v . tanh(W [q; m])                      current RNN output
=================  ======================================  ======================

Padding is masked with the dtype's most negative finite value (not ``-inf``, not boolean
indexing) so that the same code runs under fp16 autocast and exports to ONNX.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from seqkit.contracts import MAX_WIDTH
from seqkit.errors import PluginError


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """scores (B, T, S), mask (B, S) bool or float (nonzero = real token) -> weights (B, T, S)."""
    pad = (mask <= 0)[:, None, :]  # (B, 1, S); works for bool and float masks alike
    scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)


def _context(weights: Tensor, memory: Tensor) -> Tensor:
    """weights (B, T, S) @ memory (B, S, H) -> (B, T, H)."""
    return torch.bmm(weights, memory.to(weights.dtype))


class NoAttentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoAttention(nn.Module):
    """No attention: ``output_size`` is 0 and the decoder runs as a plain RNN decoder.

    Decoders never call it; ``forward`` still honours the contract (an empty context and
    uniform weights over real tokens) for code that does.
    """

    Config = NoAttentionConfig
    needs_previous_state: ClassVar[bool] = False

    def __init__(self, config: NoAttentionConfig, query_size: int, memory_size: int):
        super().__init__()
        self.output_size = 0

    def precompute(self, memory: Tensor) -> Tensor:
        return memory[..., :0]  # (B, S, 0)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = query.new_zeros(query.size(0), query.size(1), memory.size(1))  # (B, T, S)
        return query[..., :0], masked_softmax(scores, mask)


class AdditiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attention_size: int = Field(256, ge=1, le=MAX_WIDTH)  # size of the hidden layer the scores are read from


class _Additive(nn.Module):
    """v . tanh(W_k m + W_q q): the additive score shared by Bahdanau and Luong's concat.

    Luong's ``W [q; m]`` is the same function with W split into its query and memory columns;
    splitting lets the memory half be computed once per source in ``precompute``.
    """

    Config = AdditiveConfig

    def __init__(self, config: AdditiveConfig, query_size: int, memory_size: int):
        super().__init__()
        self.output_size = memory_size
        self.key_proj = nn.Linear(memory_size, config.attention_size, bias=False)
        self.query_proj = nn.Linear(query_size, config.attention_size, bias=True)
        self.energy = nn.Linear(config.attention_size, 1, bias=False)

    def precompute(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (B, S, A)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        q = self.query_proj(query)  # (B, T, A)
        hidden = torch.tanh(q[:, :, None, :] + keys[:, None, :, :])  # (B, T, S, A)
        scores = self.energy(hidden).squeeze(-1)  # (B, T, S)
        weights = masked_softmax(scores, mask)
        return _context(weights, memory), weights


class BahdanauAttention(_Additive):
    """Additive attention queried with the decoder's previous state s_{t-1} (Bahdanau et al. 2015).

    The context then feeds the RNN input, so teacher forcing has to step through the target.
    """

    needs_previous_state: ClassVar[bool] = True


class LuongConcatAttention(_Additive):
    """Luong et al. (2015) "concat" score, v . tanh(W [h_t; m]), queried with the current output."""

    needs_previous_state: ClassVar[bool] = False


class MultiplicativeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Multiplicative(nn.Module):
    """score = q . k with keys from ``precompute``: one batched matmul for all T steps."""

    Config = MultiplicativeConfig
    needs_previous_state: ClassVar[bool] = False

    def __init__(self, config: MultiplicativeConfig, query_size: int, memory_size: int):
        super().__init__()
        self.output_size = memory_size

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = torch.bmm(query, keys.to(query.dtype).transpose(1, 2))  # (B, T, S)
        weights = masked_softmax(scores, mask)
        return _context(weights, memory), weights


class LuongDotAttention(_Multiplicative):
    """score = h_t . m. Needs the decoder hidden size to equal the encoder output size."""

    def __init__(self, config: MultiplicativeConfig, query_size: int, memory_size: int):
        if query_size != memory_size:
            raise PluginError(
                f"luong-dot attention needs the decoder hidden size ({query_size}) to equal the "
                f"encoder output size ({memory_size}; 2 x hidden_size when bidirectional); "
                "change one of them or use luong-general"
            )
        super().__init__(config, query_size, memory_size)

    def precompute(self, memory: Tensor) -> Tensor:
        return memory  # (B, S, H_enc)


class LuongGeneralAttention(_Multiplicative):
    """score = h_t . (W m); W m is computed once per source, so each step is one bmm."""

    def __init__(self, config: MultiplicativeConfig, query_size: int, memory_size: int):
        super().__init__(config, query_size, memory_size)
        self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def precompute(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (B, S, Q)
