"""Shared pieces of the built-in tokenizers: tokenizer.json I/O and a token-list vocabulary.

Imports no torch: the torch-free runtime loads tokenizers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from pydantic import ValidationError

from seqkit.contracts import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seqkit.errors import ModelError
from seqkit.rundir import atomic_write_text, read_json

TOKENIZER_FILE = "tokenizer.json"
# Index == id: the order fixes pad=0, unk=1, bos=2, eos=3.
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>")
# What decode() prints for an unknown id; the same mark sentencepiece uses.
UNK_MARK = "\u2047"  # ⁇


def write_tokenizer_json(directory: Path, payload: dict[str, Any]) -> None:
    """Write ``directory/tokenizer.json`` atomically (seqkit.rundir: temp file, fsync, rename,
    directory fsync)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / TOKENIZER_FILE, json.dumps(payload, ensure_ascii=False, indent=1))


def read_tokenizer_json(directory: Path, expected_type: str | None = None) -> dict[str, Any]:
    """Read ``directory/tokenizer.json``; ModelError naming the path if missing or malformed."""
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise ModelError(f"tokenizer file not found: {path}")
    try:
        payload = read_json(path)
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ModelError(f"{path}: not a valid tokenizer.json: {str(exc)[:200]}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise ModelError(f"{path}: tokenizer.json must be an object with a string 'type'")
    if expected_type is not None and payload["type"] != expected_type:
        raise ModelError(f"{path}: tokenizer type is '{payload['type']}', expected '{expected_type}'")
    return payload


def one_line(exc: Exception) -> str:
    """A config error as one line: pydantic's first problem (``field: message``), else str(exc)."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def build_vocab(counts: Counter, min_freq: int, max_vocab: int | None) -> list[str]:
    """Specials first, then tokens by descending count (ties: by token, for determinism).

    ``max_vocab`` caps the whole vocabulary, the 4 special tokens included.
    """
    kept = sorted(
        (tok for tok, n in counts.items() if n >= min_freq and tok not in SPECIAL_TOKENS),
        key=lambda tok: (-counts[tok], tok),
    )
    if max_vocab is not None:
        kept = kept[: max(0, max_vocab - len(SPECIAL_TOKENS))]
    return list(SPECIAL_TOKENS) + kept


class VocabTokenizer:
    """A tokenizer over a fixed token list: subclasses define how text splits into tokens.

    Subclasses set ``type_name`` (their entry-point name) and ``Config``, and implement
    ``tokenize(text) -> list[str]`` and ``detokenize(tokens) -> str``.
    """

    type_name: str = ""
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, config: Any, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ModelError(f"{self.type_name} vocabulary must start with {list(SPECIAL_TOKENS)}")
        self.config = config
        self._tokens = list(tokens)
        self._ids = {tok: i for i, tok in enumerate(self._tokens)}
        if len(self._ids) != len(self._tokens):
            raise ModelError(f"{self.type_name} vocabulary holds duplicate tokens")

    # -- subclass hooks --------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def detokenize(self, tokens: list[str]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def count_tokens(cls, texts: Iterable[str], config: Any) -> Counter:
        # A specials-only instance splits text exactly as the trained one will.
        probe = cls(config, SPECIAL_TOKENS)
        counts: Counter = Counter()
        for text in texts:
            counts.update(probe.tokenize(text))
        return counts

    # -- the Tokenizer contract ------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], config: Any, workdir: Path) -> VocabTokenizer:
        """Count tokens over ``texts`` (``workdir`` is unused: nothing to write)."""
        counts = cls.count_tokens(texts, config)
        return cls(config, build_vocab(counts, config.min_freq, config.max_vocab))

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        """Ids without bos/eos; tokens outside the vocabulary map to unk_id."""
        get, unk = self._ids.get, self.unk_id
        return [get(tok, unk) for tok in self.tokenize(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """pad/bos/eos are skipped; unk (and any out-of-range id) prints as ``⁇``."""
        skip = (self.pad_id, self.bos_id, self.eos_id)
        n = len(self._tokens)
        tokens = [self._tokens[i] if 0 <= i < n and i != self.unk_id else UNK_MARK for i in map(int, ids) if i not in skip]
        return self.detokenize(tokens)

    def id_to_token(self, i: int) -> str:
        return self._tokens[i]

    def token_to_id(self, token: str) -> int:
        return self._ids.get(token, self.unk_id)

    def save(self, directory: Path) -> None:
        write_tokenizer_json(
            Path(directory),
            {"type": self.type_name, "config": self.config.model_dump(), "vocab": self._tokens},
        )

    @classmethod
    def load(cls, directory: Path) -> VocabTokenizer:
        payload = read_tokenizer_json(directory, cls.type_name)
        where = Path(directory) / TOKENIZER_FILE
        try:
            config = cls.Config.model_validate(payload["config"])  # type: ignore[attr-defined]
            tokens = payload["vocab"]
        except (KeyError, ValueError) as exc:
            raise ModelError(f"{where}: invalid {cls.type_name} tokenizer: {one_line(exc)}") from None
        if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            raise ModelError(f"{where}: 'vocab' must be a list of strings")
        return cls(config, tokens)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.config == other.config and self._tokens == other._tokens  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, config={self.config!r})"
