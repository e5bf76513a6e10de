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


class EmbeddingFile(BaseModel):
    """One side of ``model.pretrained_embeddings``: a word2vec/GloVe/fastText text file."""

    model_config = ConfigDict(extra="forbid")

    # "token v1 ... vD" lines (a first "count D" line, as word2vec and fastText .vec write, is
    # skipped); UTF-8, optionally .gz; relative to the recipe's directory.
    path: str = Field(min_length=1, max_length=4096)
    freeze: bool = False  # keep the embedding matrix as initialized (a tied output layer too)


class PretrainedEmbeddings(BaseModel):
    """``model.pretrained_embeddings``: initialize the embeddings of the vocabulary entries found
    in a file (docs/recipes.md); the others keep their random initialization."""

    model_config = ConfigDict(extra="forbid")

    source: EmbeddingFile | None = None  # the encoder's embedding (seq2seq, classification)
    target: EmbeddingFile | None = None  # the decoder's embedding (seq2seq, lm)


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
    pretrained_embeddings: PretrainedEmbeddings = Field(default_factory=PretrainedEmbeddings)
    # Longest source/output, in tokens, the model serves at inference (export and runtime
    # truncate to it).
    max_len: int = Field(256, ge=1, le=MAX_LEN)
