"""The vocabulary shortlist of an exported seq2seq model (docs/export.md, "Vocabulary shortlist").

Built at export time from the training pairs, as CTranslate2's vocabulary map and Marian's
lexical shortlist are: for every source piece, the ``per_source`` target pieces that co-occur
with it in the most sentence pairs (the ``frequent`` ones left out, being always there), plus
the ``frequent`` most frequent target pieces and the special ids. A batch's candidates are the
union over its source ids; the shortlist step graph computes the output layer over those C
columns only (C is typically a fifth of V) and maps the top-k columns back to vocabulary ids in
the graph. numpy only; imports no torch.

The softmax's normalizer needs every logit, the very product the shortlist avoids. Normalized
over the candidates alone, every log-probability is too high by the mass outside them, which a
label-smoothed model spreads thinly over the whole vocabulary: on Multi30k 12% of it on average
and over 40% at one step in twenty, so a hypothesis through uncertain steps gains most, and beam
search ranks differently (validation BLEU 34.60 -> 34.37 with the same candidates, 34.60 when
the same candidates are scored with the exact normalizer). So the graph also computes
``rest_sample`` logits, R ids spread evenly over the rest of the vocabulary (by id, which for a
sentencepiece vocabulary runs roughly by frequency), and adds (V - C) / R times their exp-sum to
the candidates' (:meth:`Shortlist.rest_sample`). Export still decodes the validation set both ways
and turns the shortlist on by default only when it costs at most ``max_bleu_loss`` BLEU there
(:func:`default_on`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

class ShortlistConfig(BaseModel):
    """The recipe's ``export.shortlist`` section."""

    model_config = ConfigDict(extra="forbid")

    # auto: built, and on by default when the validation check allows; on: built and on;
    # off: not built (the export has the full-vocabulary step graph only).
    mode: Literal["auto", "on", "off"] = "auto"
    per_source: int = Field(20, ge=1, le=10_000)  # target pieces kept per source piece
    frequent: int = Field(300, ge=0, le=1_000_000)  # most frequent target pieces, always candidates
    # Ids outside a batch's candidates whose logits estimate the rest of the softmax normalizer;
    # 0: normalize over the candidates alone (faster, scores biased upwards).
    rest_sample: int = Field(128, ge=0, le=1_000_000)
    # auto: the shortlist is on by default when validation BLEU drops by at most this much.
    max_bleu_loss: float = Field(0.2, ge=0, le=100, allow_inf_nan=False)
    # Validation sentences decoded (with and without the shortlist) for that check; None = all.
    check_sentences: int | None = Field(None, ge=1, le=1_000_000)


class ExportSection(BaseModel):
    """The recipe's ``export`` section (read by ``seqkit export``)."""

    model_config = ConfigDict(extra="forbid")

    shortlist: ShortlistConfig = Field(default_factory=ShortlistConfig)


@dataclass(frozen=True)
class Shortlist:
    """per_source (V_src, K) int32 target ids (-1 pads a short row); always (F,) int32 sorted."""

    per_source: np.ndarray
    always: np.ndarray

    def candidates(self, src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """src (B, S) int64 padded, lengths (B,) -> the batch's candidate ids (C,) int64,
        sorted ascending (column j of the shortlist graph's scores is candidate j)."""
        real = np.arange(src.shape[1])[None, :] < np.asarray(lengths)[:, None]
        rows = self.per_source[np.unique(src[real])].ravel()
        return np.union1d(self.always, rows[rows >= 0]).astype(np.int64)

    @staticmethod
    def rest_sample(candidates: np.ndarray, size: int, vocab: int) -> np.ndarray:
        """``size`` ids (fewer when fewer remain) spread evenly over the vocabulary ids 0..vocab-1
        that are not ``candidates`` (sorted, unique): (R,) int64 ascending. The shortlist graph
        scales their exp-sum by (vocab - C) / R to stand for the rest of the normalizer."""
        rest = np.setdiff1d(np.arange(vocab, dtype=np.int64), candidates, assume_unique=True)
        if size <= 0 or not len(rest):
            return rest[:0]
        if size >= len(rest):
            return rest
        stride = len(rest) / size  # the middle of each of ``size`` equal runs of the rest
        return rest[(np.arange(size) * stride + stride / 2).astype(np.int64)]

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, per_source=self.per_source, always=self.always)

    @classmethod
    def load(cls, path: Path, src_vocab: int, tgt_vocab: int) -> Shortlist:
        """Read ``path``; ValueError when its shapes or ids do not fit the vocabularies."""
        with np.load(path, allow_pickle=False) as data:
            per_source, always = data["per_source"].astype(np.int32), data["always"].astype(np.int32)
        if per_source.ndim != 2 or per_source.shape[0] != src_vocab or always.ndim != 1:
            raise ValueError(f"per_source has shape {per_source.shape}; expected ({src_vocab}, K)")
        for name, ids in (("per_source", per_source), ("always", always)):
            if ids.size and (ids.max() >= tgt_vocab or ids.min() < (-1 if name == "per_source" else 0)):
                raise ValueError(f"{name} holds ids outside the target vocabulary (0..{tgt_vocab - 1})")
        return cls(per_source, always)


def build_shortlist(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], src_vocab: int, tgt_vocab: int,
                    config: ShortlistConfig, specials: Sequence[int]) -> Shortlist:
    """(source ids, target ids) training pairs -> Shortlist. Counts are per sentence pair
    (a piece twice in a sentence counts once); ties go to the lower target id."""
    tgt_count = np.zeros(tgt_vocab, dtype=np.int64)
    keys = []
    for src, tgt in pairs:
        s, t = np.unique(np.asarray(src, dtype=np.int64)), np.unique(np.asarray(tgt, dtype=np.int64))
        tgt_count[t] += 1
        keys.append((s[:, None] * tgt_vocab + t[None, :]).ravel())
    frequent = np.lexsort((np.arange(tgt_vocab), -tgt_count))[: config.frequent]
    always = np.union1d(frequent[tgt_count[frequent] > 0], np.asarray(specials, dtype=np.int64)).astype(np.int32)
    pair_keys, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    s_ids, t_ids = pair_keys // tgt_vocab, pair_keys % tgt_vocab
    rest = ~np.isin(t_ids, always)
    s_ids, t_ids, counts = s_ids[rest], t_ids[rest], counts[rest]
    order = np.lexsort((t_ids, -counts, s_ids))  # by source, most co-occurring first
    s_ids, t_ids = s_ids[order], t_ids[order]
    first = np.searchsorted(s_ids, s_ids, side="left")
    rank = np.arange(len(s_ids)) - first
    keep = rank < config.per_source
    per_source = np.full((src_vocab, config.per_source), -1, dtype=np.int32)
    per_source[s_ids[keep], rank[keep]] = t_ids[keep]
    return Shortlist(per_source, always)


def default_on(mode: str, bleu_off: float, bleu_on: float, max_bleu_loss: float) -> bool:
    """Whether the runtime uses the shortlist unless told otherwise."""
    return mode == "on" or (mode == "auto" and bleu_off - bleu_on <= max_bleu_loss)

