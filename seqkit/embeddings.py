"""``model.pretrained_embeddings``: embedding rows initialized from a word2vec / GloVe / fastText
text file, optionally frozen (docs/recipes.md).

The file is read once, line by line, keeping only the vectors of vocabulary entries, so a
multi-gigabyte GloVe file costs the memory of the vocabulary's rows. A vocabulary entry is looked
up as it is; a sentencepiece piece that starts a word (``▁the``) is also looked up without its
``▁`` (``the``). Special tokens (pad, unk, bos, eos) keep their initialization.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqkit.errors import RecipeError
from seqkit.model_config import EmbeddingFile

log = logging.getLogger("seqkit")
WORD_START = "\u2581"  # sentencepiece's word-boundary mark


def apply_pretrained(recipe: Any, model: nn.Module, src_tok: Any, tgt_tok: Any, initialize: bool) -> None:
    """Initialize (a fresh run: ``initialize``) and freeze the embeddings the recipe names.
    A resumed run's weights come from its checkpoint; freezing is applied again (it is not saved)."""
    sides = recipe.model.pretrained_embeddings
    for side, spec, owner, tok in (("source", sides.source, "encoder", src_tok),
                                   ("target", sides.target, "decoder", tgt_tok)):
        if spec is None:
            continue
        key = f"model.pretrained_embeddings.{side}"
        embedding = getattr(model, owner, None)
        embedding = dict(embedding.named_children()).get("embedding") if embedding is not None else None
        if tok is None or not isinstance(embedding, nn.Embedding):
            raise RecipeError(f"{key}: this task's model has no {side} embedding (nn.Embedding `{owner}.embedding`)")
        if initialize:
            _initialize(embedding, spec, tok, key, Path(recipe.base_dir))
        if spec.freeze:
            embedding.weight.requires_grad_(False)


def _initialize(embedding: nn.Embedding, spec: EmbeddingFile, tok: Any, key: str, base_dir: Path) -> None:
    path = (base_dir / Path(spec.path).expanduser()) if not Path(spec.path).is_absolute() else Path(spec.path)
    if not hasattr(tok, "id_to_token"):
        raise RecipeError(f"{key}: the {type(tok).__name__} tokenizer does not name its tokens (id_to_token)")
    specials = {tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id}
    wanted: dict[str, list[int]] = {}
    for i in range(tok.vocab_size):
        if i in specials:
            continue
        token = tok.id_to_token(i)
        names = [token] + ([token[1:]] if token.startswith(WORD_START) and len(token) > 1 else [])
        for name in names:
            wanted.setdefault(name, []).append(i)
    dim = embedding.embedding_dim
    found: dict[int, np.ndarray] = {}
    for name, vector in read_vectors(path, dim, key):
        for i in wanted.get(name, ()):
            found.setdefault(i, vector)  # a piece's own entry comes before its word's (listed first)
    with torch.no_grad():
        for i, vector in found.items():
            embedding.weight[i] = torch.from_numpy(vector).to(embedding.weight.dtype)
    total = tok.vocab_size - len(specials)
    log.info("%s: %d of %d vocabulary entries (%.1f%%) found in %s%s", key, len(found), total,
             100.0 * len(found) / max(total, 1), path, "; frozen" if spec.freeze else "")


def read_vectors(path: Path, dim: int, key: str) -> Iterator[tuple[str, np.ndarray]]:
    """(token, float32 vector of ``dim``) per line of a word2vec/GloVe/fastText text file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                fields = line.rstrip("\n").rstrip(" ").split(" ")
                if n == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):  # "count dim" header
                    if int(fields[1]) != dim:
                        raise RecipeError(f"{key}: {path} holds {fields[1]}-dimensional vectors (its header); "
                                          f"the embedding_dim is {dim}")
                    continue
                if len(fields) < 2 or not fields[0]:
                    continue  # blank lines
                if len(fields) - 1 != dim:
                    raise RecipeError(f"{key}: {path} line {n} holds a {len(fields) - 1}-dimensional vector; the "
                                      f"embedding_dim is {dim}")
                try:
                    vector = np.array(fields[1:], dtype=np.float32)
                except ValueError:
                    raise RecipeError(f"{key}: {path} line {n}: not a vector of numbers after the token") from None
                if not np.isfinite(vector).all():
                    raise RecipeError(f"{key}: {path} line {n}: the vector holds NaN or infinity")
                yield fields[0], vector
    except OSError as exc:
        raise RecipeError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise RecipeError(f"{key}: {path} is not a UTF-8 text (or gzip) embedding file: {exc}") from None
