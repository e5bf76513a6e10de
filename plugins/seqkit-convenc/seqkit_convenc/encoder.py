"""A ConvS2S-style gated convolutional encoder (Gehring et al. 2017) as a seqkit encoder plugin.

::

    e      = tok_emb(x) + pos_emb(0..S-1)                    (B, S, E)
    h^0    = W_in e                                          (B, S, H)
    h^l    = (h^{l-1} + GLU(Conv1d_l(h^{l-1}))) * sqrt(0.5)  (B, S, H), l = 1..L
    memory = h^L                                             (B, S, H), zeros at padding
    hidden = [masked mean of h^l over real positions]        (L, B, H)

Every layer sees the whole source at once, so encoding is parallel over positions (no
recurrence); each position sees ``1 + L * (kernel_size - 1)`` source tokens.

A convolutional encoder has no final recurrent state, yet every seqkit decoder starts from one
per layer (its bridge maps ``EncoderOutput.hidden`` to the decoder's size). The mean of each
layer's outputs over the real tokens serves as that summary: it does not depend on how much
padding follows the sentence, and it gives the decoder's layers one vector per encoder layer
just as a stacked RNN would. ``cell`` is None: an LSTM decoder's linear bridge then derives its
initial cell from ``hidden``, and ``bridge: copy`` starts the cell at zeros.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from seqkit.contracts import EncoderOutput


class ConvEncoderConfig(BaseModel):
    """Options of the ``conv`` encoder (recipe: ``model.encoder`` with ``type: conv``)."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(256, ge=1)
    hidden_size: int = Field(256, ge=1)  # channels of every layer: H of memory and of hidden
    num_layers: int = Field(4, ge=1)
    kernel_size: int = Field(3, ge=1)  # odd, so the convolution is centred on each position
    dropout: float = Field(0.2, ge=0.0, lt=1.0)  # before every convolution and on the output
    embedding_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # Learned position embeddings; positions beyond the last share its embedding (keep it at
    # least model.max_len, the longest source the model serves).
    max_positions: int = Field(1024, ge=1)

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centred convolution), got {value}")
        return value


class GatedConvLayer(nn.Module):
    """One residual gated convolution: (x + GLU(conv(dropout(x)))) * sqrt(0.5), H -> H."""

    def __init__(self, hidden_size: int, kernel_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        # 2H output channels: GLU gates one half with the sigmoid of the other.
        self.conv = nn.Conv1d(hidden_size, 2 * hidden_size, kernel_size, padding=kernel_size // 2)
        # Gehring et al.'s initialisation keeps the activations' variance through GLU + dropout.
        std = math.sqrt(4.0 * (1.0 - dropout) / (kernel_size * hidden_size))
        nn.init.normal_(self.conv.weight, mean=0.0, std=std)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """x (B, S, H), keep (B, S, 1) 1.0 at real tokens -> (B, S, H), zeros at padding.

        Padding is zeroed before the convolution so that no padded position leaks into a real
        one through the kernel: a sentence encodes the same alone and in a padded batch.
        """
        conv_in = self.dropout(x * keep).transpose(1, 2)  # (B, H, S)
        gated = nn.functional.glu(self.conv(conv_in), dim=1).transpose(1, 2)  # (B, S, H)
        return (x + gated) * math.sqrt(0.5) * keep


class ConvEncoder(nn.Module):
    """``__init__(config, vocab_size, pad_id)``; see :class:`seqkit.contracts.Encoder`."""

    Config: ClassVar[type[ConvEncoderConfig]] = ConvEncoderConfig

    def __init__(self, config: ConvEncoderConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.config = config
        self.output_size = config.hidden_size
        self.final_size = config.hidden_size
        self.num_layers = config.num_layers
        # `embedding` is the name model.share_embeddings looks for.
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_id)
        self.positions = nn.Embedding(config.max_positions, config.embedding_dim)
        for table in (self.embedding, self.positions):
            nn.init.normal_(table.weight, mean=0.0, std=0.1)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.input_proj = nn.Linear(config.embedding_dim, config.hidden_size)
        self.layers = nn.ModuleList(
            GatedConvLayer(config.hidden_size, config.kernel_size, config.dropout) for _ in range(config.num_layers)
        )
        self.output_dropout = nn.Dropout(config.dropout)

    def forward(self, src: Tensor, lengths: Tensor) -> EncoderOutput:
        """src (B, S) int64 padded with pad_id; lengths (B,) int64 -> EncoderOutput.

        memory (B, S, H), mask (B, S) bool, hidden (L, B, H), cell None.
        """
        src_len = src.size(1)
        lengths = lengths.to(src.device)
        steps = torch.arange(src_len, device=src.device)
        mask = steps[None, :] < lengths[:, None]  # (B, S) True at real tokens
        positions = steps.clamp(max=self.config.max_positions - 1)  # (S,)
        emb = self.embedding(src) + self.positions(positions)[None]  # (B, S, E)
        x = self.input_proj(self.embedding_dropout(emb))  # (B, S, H)
        keep = mask[:, :, None].to(x.dtype)  # (B, S, 1)
        # An empty source has nothing to average: divide by at least 1 (its summary is zeros).
        count = lengths.clamp(min=1).to(x.dtype)[:, None]  # (B, 1)
        summaries = []
        for layer in self.layers:
            x = layer(x, keep)
            summaries.append(x.sum(dim=1) / count)  # (B, H) mean over real tokens
        memory = self.output_dropout(x) * keep
        return EncoderOutput(memory, mask, torch.stack(summaries), None)
