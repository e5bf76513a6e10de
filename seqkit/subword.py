"""``train.subword_sampling``: a fresh segmentation of the training pairs every epoch (subword
regularization, Kudo 2018; BPE-dropout, Provilkov et al. 2020), through the tokenizer's
:class:`seqkit.contracts.SamplingTokenizer` method. Torch-free.

Only the training pairs are resampled: validation, evaluation, translation and the exported
model encode with ``encode`` as always. Each epoch's segmentation is seeded by (seed, epoch,
side), so a resumed run segments its epoch as the uninterrupted run did. The set of training
pairs never changes: a pair whose sampled segmentation no longer fits ``data.max_src_len`` /
``max_tgt_len`` keeps its deterministic one for that epoch (a long source is cut instead when
``data.truncate_src`` is on, as for the deterministic one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.contracts import SamplingTokenizer
from seqkit.errors import RecipeError
from seqkit.train_config import SubwordSampling

log = logging.getLogger("seqkit")


def check_sampling_tokenizers(cfg: SubwordSampling, src_tok: Any, tgt_tok: Any) -> None:
    """RecipeError naming train.subword_sampling when a side it samples cannot sample."""
    for side, tok in (("source", src_tok), ("target", tgt_tok)):
        if cfg.sides in ("both", side) and not isinstance(tok, SamplingTokenizer):
            name = getattr(tok, "type_name", type(tok).__name__)
            raise RecipeError(f"train.subword_sampling: the {side} tokenizer ({name}) cannot sample segmentations; "
                              "sentencepiece can (unigram or bpe)")


class EpochSegmentation:
    """The training pairs' ids for each epoch: sampled, or the fixed ones where a sample does not fit."""

    def __init__(self, cfg: SubwordSampling, src_tok: Any, tgt_tok: Any, texts: tuple[list[str], list[str]],
                 fixed: tuple[list[list[int]], list[list[int]]], limits: tuple[int, int], truncate_src: bool):
        check_sampling_tokenizers(cfg, src_tok, tgt_tok)
        self.cfg, self.src_tok, self.tgt_tok = cfg, src_tok, tgt_tok
        self.src_texts, self.tgt_texts = texts
        self.fixed_src, self.fixed_tgt = fixed
        self.max_src_len, self.max_tgt_len = limits
        self.truncate_src = truncate_src

    def _sample(self, tok: Any, texts: Sequence[str], seed: int, epoch: int, side: int) -> list[list[int]]:
        state = int(np.random.SeedSequence([seed, epoch, side]).generate_state(1)[0])  # < 2**32
        return tok.sample_encode(texts, self.cfg.alpha, self.cfg.nbest_size, state)

    def epoch(self, epoch: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
        """(source ids with eos, target ids without) of every training pair for ``epoch``."""
        src, tgt = self.fixed_src, self.fixed_tgt
        kept = 0
        if self.cfg.sides in ("both", "source"):
            src = []
            for ids, fixed in zip(self._sample(self.src_tok, self.src_texts, seed, epoch, 0), self.fixed_src):
                fits = len(ids) <= self.max_src_len - 1 or self.truncate_src
                src.append(ids[: self.max_src_len - 1] + [self.src_tok.eos_id] if fits else fixed)
                kept += not fits
        if self.cfg.sides in ("both", "target"):
            tgt = []
            for ids, fixed in zip(self._sample(self.tgt_tok, self.tgt_texts, seed, epoch, 1), self.fixed_tgt):
                fits = 0 < len(ids) and len(ids) + 1 <= self.max_tgt_len
                tgt.append(ids if fits else fixed)
                kept += not fits
        sampled = [(new, old) for side, new, old in (("source", src, self.fixed_src), ("target", tgt, self.fixed_tgt))
                   if self.cfg.sides in ("both", side)]
        changed = sum(a != b for new, old in sampled for a, b in zip(new, old))
        # How much noise: the pieces per sentence against the deterministic segmentation's
        # (alpha 0.1 over all segmentations doubled them on Multi30k; see docs/recipes.md).
        ratio = sum(len(a) for new, _ in sampled for a in new) / max(1, sum(len(b) for _, old in sampled for b in old))
        log.info("subword sampling, epoch %d: %d of %d segmentations differ from the deterministic ones, "
                 "%.2fx their pieces (%d samples too long kept those)",
                 epoch, changed, sum(len(new) for new, _ in sampled), ratio, kept)
        return src, tgt
