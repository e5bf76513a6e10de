"""The ``bytes`` tokenizer: UTF-8 bytes, optionally with byte-pair merges learned from the data.

Every text encodes without unknown tokens: any character of any script is a sequence of bytes,
and all 256 bytes are in the vocabulary (ids 4..259, after pad=0, unk=1, bos=2, eos=3). With
``merges: 0`` that is the whole vocabulary (260 ids), a byte-level model (ByT5 style); with
``merges: N`` training adds up to N merged tokens (ids 260..), the most frequent byte pairs
first, within word-like chunks (see :mod:`seqkit_bytes.bpe`), which shortens sequences about
as much as a subword vocabulary does.

Round trip: ``decode(encode(x)) == x`` for every ``str`` (a lone surrogate, which UTF-8 cannot
encode, becomes ``?``). ``decode`` of ids that do not form valid UTF-8 (a model may emit half a
character) shows U+FFFD for the broken bytes; unk and out-of-range ids show ``⁇``.

Imports no torch: the runtime loads tokenizers.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

from seqkit.contracts import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seqkit.errors import ModelError
from seqkit.tokenizers.base import SPECIAL_TOKENS, TOKENIZER_FILE, UNK_MARK, read_tokenizer_json, write_tokenizer_json
from seqkit_bytes.bpe import BYTE_OFFSET, FIRST_MERGE_ID, Pair, apply_merges, byte_ids, learn_merges, split_chunks

# Encoded chunks kept per tokenizer; natural text repeats its words, so a bounded cache
# saves most of the merging work.
_CACHE_SIZE = 65536


class ByteTokenizerConfig(BaseModel):
    """Options of the ``bytes`` tokenizer (recipe: ``tokenizer.source`` with ``type: bytes``)."""

    model_config = ConfigDict(extra="forbid")

    merges: int = Field(0, ge=0)  # byte-pair merges to learn; 0 = plain bytes (vocabulary 260)
    min_frequency: int = Field(2, ge=1)  # stop merging when the best pair is rarer than this


class ByteTokenizer:
    """UTF-8 bytes plus learned merges; see the module docstring."""

    Config = ByteTokenizerConfig
    type_name = "bytes"
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, config: ByteTokenizerConfig, merges: Sequence[Pair]):
        self.config = config
        self._merges: list[Pair] = [(int(a), int(b)) for a, b in merges]
        self._ranks = {pair: rank for rank, pair in enumerate(self._merges)}
        # The bytes each id stands for: specials stand for nothing, merges for their parts.
        self._bytes: list[bytes] = [b""] * BYTE_OFFSET + [bytes([b]) for b in range(256)]
        for a, b in self._merges:
            self._bytes.append(self._bytes[a] + self._bytes[b])
        self._cache: dict[str, list[int]] = {}

    # -- the Tokenizer contract ------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], config: ByteTokenizerConfig, workdir: Path) -> ByteTokenizer:
        """Learn ``config.merges`` merges from ``texts`` (``workdir`` is unused)."""
        merges = learn_merges(texts, config.merges, config.min_frequency) if config.merges else []
        if len(merges) < config.merges:
            warnings.warn(
                f"bytes: only {len(merges)} of merges={config.merges} byte pairs occur at least "
                f"min_frequency={config.min_frequency} times in the training text; the vocabulary "
                f"has {FIRST_MERGE_ID + len(merges)} ids",
                stacklevel=2,
            )
        return cls(config, merges)

    @property
    def vocab_size(self) -> int:
        return FIRST_MERGE_ID + len(self._merges)

    def encode(self, text: str) -> list[int]:
        """Ids without bos/eos."""
        if not self._merges:
            return byte_ids(text)
        ids: list[int] = []
        for chunk in split_chunks(text):
            cached = self._cache.get(chunk)
            if cached is None:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                cached = self._cache[chunk] = apply_merges(byte_ids(chunk), self._ranks)
            ids.extend(cached)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """pad/bos/eos are skipped; unk and out-of-range ids print as ``⁇``."""
        skip = (self.pad_id, self.bos_id, self.eos_id)
        n, unk = self.vocab_size, UNK_MARK.encode("utf-8")
        data = b"".join(self._bytes[i] if BYTE_OFFSET <= i < n else unk for i in map(int, ids) if i not in skip)
        return data.decode("utf-8", errors="replace")

    def id_to_token(self, i: int) -> str:
        """Readable form of one id: the special's name, or its bytes (invalid UTF-8 escaped)."""
        if 0 <= i < BYTE_OFFSET:
            return SPECIAL_TOKENS[i]
        return self._bytes[i].decode("utf-8", errors="backslashreplace")

    def save(self, directory: Path) -> None:
        write_tokenizer_json(
            Path(directory),
            {"type": self.type_name, "config": self.config.model_dump(), "merges": [list(p) for p in self._merges]},
        )

    @classmethod
    def load(cls, directory: Path) -> ByteTokenizer:
        payload = read_tokenizer_json(directory, cls.type_name)
        where = Path(directory) / TOKENIZER_FILE
        try:
            config = cls.Config.model_validate(payload["config"])
            merges = payload["merges"]
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{where}: invalid bytes tokenizer: {exc}") from exc
        _check_merges(merges, where)
        return cls(config, merges)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ByteTokenizer):
            return NotImplemented
        return self.config == other.config and self._merges == other._merges

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)})"


def _check_merges(merges: object, where: Path) -> None:
    """Each merge joins two ids that exist before it: bytes or earlier merges."""
    if not isinstance(merges, list):
        raise ModelError(f"{where}: 'merges' must be a list of [id, id] pairs")
    for rank, pair in enumerate(merges):
        limit = FIRST_MERGE_ID + rank
        ok = isinstance(pair, list) and len(pair) == 2 and all(
            isinstance(i, int) and BYTE_OFFSET <= i < limit for i in pair
        )
        if not ok:
            raise ModelError(
                f"{where}: merges[{rank}] = {pair!r}: expected two ids in {BYTE_OFFSET}..{limit - 1} "
                "(bytes or earlier merges)"
            )
