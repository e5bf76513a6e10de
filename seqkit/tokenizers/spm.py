"""SentencePiece tokenizer (unigram or BPE), trained in-process from the training texts.

Normalization and the round trip. With the default ``normalization: identity`` no Unicode
rewriting happens; sentencepiece only collapses runs of spaces (U+0020) into one and strips
leading and trailing spaces. :meth:`SentencePieceTokenizer.normalize` returns exactly that form,
and ``decode(encode(x)) == normalize(x)`` for every text whose characters were seen in training
(unseen characters encode to unk and decode as `` ⁇ ``, unless ``byte_fallback`` is on, which
spells them as UTF-8 bytes and keeps the round trip exact). ``nmt_nfkc`` additionally applies
NFKC and NMT-style cleanups (e.g. full-width to half-width), ``nmt_nfkc_cf`` also case-folds;
both make the round trip return the normalized, not the original, text.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Literal, Sequence

import sentencepiece as spm
from pydantic import BaseModel, ConfigDict, Field

from seqkit.contracts import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seqkit.errors import DataError, ModelError
from seqkit.safepath import inside, regular_file
from seqkit.tokenizers.base import SPECIAL_TOKENS, TOKENIZER_FILE, one_line, read_tokenizer_json, write_tokenizer_json

MODEL_FILE = "spm.model"


class SentencePieceTokenizer:
    """Wraps a ``sentencepiece.SentencePieceProcessor`` with pad=0, unk=1, bos=2, eos=3."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        vocab_size: int = Field(default=8000, gt=4)  # upper bound: smaller if the corpus is (warned)
        model_type: Literal["unigram", "bpe"] = "unigram"
        character_coverage: float = Field(default=1.0, gt=0.0, le=1.0)  # rarer chars become unk
        byte_fallback: bool = False  # unseen chars -> UTF-8 byte pieces instead of unk (+256 pieces)
        normalization: Literal["identity", "nmt_nfkc", "nmt_nfkc_cf"] = "identity"
        input_sentence_size: int = Field(default=0, ge=0)  # sample this many sentences; 0 = all
        max_sentence_length: int = Field(default=16384, gt=0)  # bytes; longer sentences are skipped
        num_threads: int = Field(default=4, ge=1)
        seed: int = 0  # sampling seed when input_sentence_size > 0

    type_name = "sentencepiece"
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, config: Config, model_proto: bytes):
        self.config = config
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        found = tuple(self._sp.id_to_piece(i) for i in range(len(SPECIAL_TOKENS)))
        if found != SPECIAL_TOKENS:
            raise ModelError(f"sentencepiece model must start with {list(SPECIAL_TOKENS)}, has {list(found)}")

    @classmethod
    def train(cls, texts: Sequence[str], config: Config, workdir: Path) -> SentencePieceTokenizer:
        """Train from ``texts`` in memory (``workdir`` is unused: the model stays in bytes).

        ``texts`` are sentences or lines: sentencepiece skips any longer than
        ``max_sentence_length`` bytes, so split a whole document into lines first.

        Raises DataError if the corpus is empty or too small for even the characters it holds;
        warns if it supports fewer pieces than ``vocab_size`` (the model is then smaller).
        """
        sentences = [t for t in texts if t.strip()]
        if not sentences:
            raise DataError("sentencepiece: no non-empty training text")
        spm.set_random_generator_seed(config.seed)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=model,
                vocab_size=config.vocab_size,
                model_type=config.model_type,
                character_coverage=config.character_coverage,
                byte_fallback=config.byte_fallback,
                normalization_rule_name=config.normalization,
                input_sentence_size=config.input_sentence_size,
                shuffle_input_sentence=True,
                max_sentence_length=config.max_sentence_length,
                num_threads=min(config.num_threads, os.cpu_count() or 1),
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece=SPECIAL_TOKENS[PAD_ID], unk_piece=SPECIAL_TOKENS[UNK_ID],
                bos_piece=SPECIAL_TOKENS[BOS_ID], eos_piece=SPECIAL_TOKENS[EOS_ID],
                # Treat vocab_size as an upper bound: small corpora yield fewer pieces (warned below).
                hard_vocab_limit=False,
                minloglevel=2,
            )
        except RuntimeError as exc:
            raise DataError(
                f"sentencepiece training failed for vocab_size={config.vocab_size} on "
                f"{len(sentences)} sentences: {exc}"
            ) from exc
        tokenizer = cls(config, model.getvalue())
        if tokenizer.vocab_size < config.vocab_size:
            warnings.warn(
                f"sentencepiece: the corpus ({len(sentences)} sentences) supports only "
                f"{tokenizer.vocab_size} pieces; vocab_size={config.vocab_size} was reduced to that",
                stacklevel=2,
            )
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self._sp.vocab_size())

    def normalize(self, text: str) -> str:
        """The text ``decode(encode(text))`` returns when every character is in the vocabulary."""
        return self._sp.normalize(text).replace("\u2581", " ").lstrip(" ")

    def encode(self, text: str) -> list[int]:
        """Ids without bos/eos."""
        return list(self._sp.encode(text, out_type=int))

    def sample_encode(self, texts: Sequence[str], alpha: float, nbest_size: int, seed: int) -> list[list[int]]:
        """``SamplingTokenizer``: unigram sampling (Kudo 2018) or BPE-dropout (alpha = the
        probability of skipping a merge), from sentencepiece's generator seeded with ``seed``."""
        spm.set_random_generator_seed(seed)
        return [list(self._sp.encode(t, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=nbest_size))
                for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """pad/bos/eos are skipped; unk prints as `` ⁇ ``."""
        skip = (PAD_ID, BOS_ID, EOS_ID)
        n = self.vocab_size
        return self._sp.decode([i if 0 <= i < n else UNK_ID for i in map(int, ids) if i not in skip])

    def id_to_token(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def token_to_id(self, token: str) -> int:
        return int(self._sp.piece_to_id(token))

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_bytes(self._proto)
        write_tokenizer_json(
            directory, {"type": self.type_name, "config": self.config.model_dump(), "model_file": MODEL_FILE}
        )

    @classmethod
    def load(cls, directory: Path) -> SentencePieceTokenizer:
        payload = read_tokenizer_json(directory, cls.type_name)
        where = Path(directory) / TOKENIZER_FILE
        try:
            config = cls.Config.model_validate(payload["config"])
            model_file = payload["model_file"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: invalid sentencepiece tokenizer: {one_line(exc)}") from None
        model_path = inside(Path(directory), model_file, f"{where}: model_file")  # never read outside the model
        if not regular_file(model_path):
            raise ModelError(f"sentencepiece model file not found: {model_path}")
        try:
            return cls(config, model_path.read_bytes())
        except RuntimeError as exc:
            raise ModelError(f"{model_path}: not a sentencepiece model: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SentencePieceTokenizer):
            return NotImplemented
        return self.config == other.config and self._proto == other._proto

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size}, model_type={self.config.model_type!r})"
