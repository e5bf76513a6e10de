"""The recipe's ``model:`` section (:class:`ModelConfig`).

Torch-free, like every recipe section's config: ``seqkit recipe check`` and the runtime read
it without importing torch; :mod:`seqkit.models` builds modules from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seqkit.search import MAX_LEN


class HeadConfig(BaseModel):
    """``model.head``: how a classifier turns the encoder output into class logits."""

    model_config = ConfigDict(extra="forbid")

    # mean / max: over the encoder outputs of the real (unpadded) positions; last: the top
    # layer's final hidden state (both directions when bidirectional).
    pooling: Literal["mean", "max", "last"] = "mean"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)  # on the pooled vector, before the linear layer


class ModelConfig(BaseModel):
    """The recipe's ``model:`` section. Plugin options are validated by each plugin's Config."""

    model_config = ConfigDict(extra="forbid")

    # Plugin specs {"type": <name>, ...options}; see `seqkit plugins` for the names.
    encoder: dict[str, Any] = Field(default_factory=lambda: {"type": "lstm"})  # unused by task lm
    decoder: dict[str, Any] = Field(default_factory=lambda: {"type": "lstm"})  # unused by classification
    head: HeadConfig = Field(default_factory=HeadConfig)  # classification only
    # One embedding matrix for source and target; only meaningful with a shared vocabulary
    # (tokenizer.shared) and equal embedding_dim in encoder and decoder.
    share_embeddings: bool = False
    # Longest source/output, in tokens, the model serves at inference (export and runtime
    # truncate to it).
    max_len: int = Field(256, ge=1, le=MAX_LEN)
