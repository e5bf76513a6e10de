"""Recurrent encoder plugins: source embedding + fused ``nn.RNN``/``nn.LSTM``/``nn.GRU``.

The fused module runs over a packed sequence (``enforce_sorted=False``), so padding never
enters the recurrence: a sentence encodes to the same vectors alone or padded in a batch.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqkit.contracts import MAX_LAYERS, MAX_WIDTH, EncoderOutput


class EncoderConfig(BaseModel):
    """Options shared by every built-in recurrent encoder (recipe: ``model.encoder``)."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(256, ge=1, le=MAX_WIDTH)
    hidden_size: int = Field(256, ge=1, le=MAX_WIDTH)  # per direction
    num_layers: int = Field(2, ge=1, le=MAX_LAYERS)
    bidirectional: bool = True
    dropout: float = Field(0.2, ge=0.0, lt=1.0)  # between layers and on the outputs
    embedding_dropout: float = Field(0.1, ge=0.0, lt=1.0)


class RNNEncoderConfig(EncoderConfig):
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class _RecurrentEncoder(nn.Module):
    """``__init__(config, vocab_size, pad_id)``; see :class:`seqkit.contracts.Encoder`."""

    Config: ClassVar[type[EncoderConfig]] = EncoderConfig
    has_cell: ClassVar[bool] = False

    def __init__(self, config: EncoderConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional else 1
        self.output_size = config.hidden_size * directions
        self.final_size = self.output_size
        self.num_layers = config.num_layers
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = self._make_rnn(config)
        self.output_dropout = nn.Dropout(config.dropout)

    def _make_rnn(self, config: EncoderConfig) -> nn.RNNBase:
        raise NotImplementedError

    def forward(self, src: Tensor, lengths: Tensor) -> EncoderOutput:
        """src (B, S) int64 padded with pad_id; lengths (B,) int64 -> EncoderOutput."""
        batch, src_len = src.shape
        emb = self.embedding_dropout(self.embedding(src))  # (B, S, E)
        # pack_padded_sequence wants lengths on the CPU whatever the device of the data, and
        # refuses empty sequences: an empty source reads one pad (a zero vector) instead.
        packed = pack_padded_sequence(emb, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src_len)  # (B, S, H_enc)
        memory = self.output_dropout(memory)
        positions = torch.arange(src_len, device=src.device)
        mask = positions[None, :] < lengths.to(src.device)[:, None]  # (B, S) True at real tokens
        if self.has_cell:
            hidden, cell = final
            return EncoderOutput(memory, mask, self._per_layer(hidden, batch), self._per_layer(cell, batch))
        return EncoderOutput(memory, mask, self._per_layer(final, batch), None)

    def _per_layer(self, state: Tensor, batch: int) -> Tensor:
        """(L * D, B, H) -> (L, B, D * H): both directions of a layer side by side."""
        directions = 2 if self.config.bidirectional else 1
        state = state.view(self.num_layers, directions, batch, self.config.hidden_size)
        return state.permute(0, 2, 1, 3).reshape(self.num_layers, batch, self.final_size)


def _rnn_kwargs(config: EncoderConfig) -> dict:
    return {
        "input_size": config.embedding_dim,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "bidirectional": config.bidirectional,
        # nn.RNNBase warns when inter-layer dropout is set on a single layer.
        "dropout": config.dropout if config.num_layers > 1 else 0.0,
        "batch_first": True,
    }


class RNNEncoder(_RecurrentEncoder):
    """Elman RNN encoder (``tanh`` or ``relu``)."""

    Config = RNNEncoderConfig

    def _make_rnn(self, config: RNNEncoderConfig) -> nn.RNNBase:  # type: ignore[override]
        return nn.RNN(nonlinearity=config.nonlinearity, **_rnn_kwargs(config))


class LSTMEncoder(_RecurrentEncoder):
    """LSTM encoder; ``EncoderOutput.cell`` holds the final cell state."""

    Config = EncoderConfig
    has_cell = True

    def _make_rnn(self, config: EncoderConfig) -> nn.RNNBase:
        return nn.LSTM(**_rnn_kwargs(config))


class GRUEncoder(_RecurrentEncoder):
    """GRU encoder."""

    Config = EncoderConfig

    def _make_rnn(self, config: EncoderConfig) -> nn.RNNBase:
        return nn.GRU(**_rnn_kwargs(config))
