"""Forced decoding: how probable a model finds given outputs (``seqkit score``), for reranking,
data filtering and checking a model against references.

Written once over the :class:`~seqkit.search.StepFunction` protocol, like search itself, so a
run directory (torch) and an exported model (onnxruntime) give the same numbers. A target is
scored as the model generates it: its tokens then eos, each step fed the given previous token.
Torch-free (numpy only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqkit.batching import encode_source, pad_batch
from seqkit.inference import clean_text, default_start_ids
from seqkit.search import StepFunction


@dataclass(frozen=True)
class Scored:
    """One scored target: ``log_prob`` (natural log, summed over its tokens and its end token),
    the number of those tokens, their mean (``normalized``), and the characters of the line
    plus one for its end (the newline a language model predicts)."""

    log_prob: float
    tokens: int
    chars: int

    @property
    def normalized(self) -> float:
        return self.log_prob / max(self.tokens, 1)

    @property
    def bits_per_char(self) -> float:
        """-log2 P per character of the text (eos included in P), as char-LM papers report."""
        return -self.log_prob / math.log(2) / max(self.chars, 1)


def force_decode(fn: StepFunction, src: np.ndarray, lengths: np.ndarray, targets: Sequence[Sequence[int]], *,
                 start_id: int) -> np.ndarray:
    """(B,) float64 log P(target | source) of B rows at once, the model fed ``start_id`` then each
    given token; rows leave the batch as their target ends. ``targets`` end with their end token
    (eos; a language model's newline); ``src`` (B, S) padded (S = 0 for a language model)."""
    batch = len(targets)
    if batch == 0:
        return np.zeros(0)
    ends = np.array([len(t) for t in targets], dtype=np.int64)
    if ends.min() < 1:
        raise ValueError("every target holds at least its end token")
    out = np.zeros((batch, int(ends.max())), dtype=np.int64)
    for b, t in enumerate(targets):
        out[b, : len(t)] = t
    memory, state = fn.start(src, lengths)
    total = np.zeros(batch, dtype=np.float64)
    rows = np.arange(batch)
    y = np.full(batch, start_id, dtype=np.int64)
    for t in range(out.shape[1]):
        logp, _, state = fn.step(y, memory, state)
        total[rows] += logp[np.arange(len(rows)), out[rows, t]].astype(np.float64)
        alive = ends[rows] > t + 1
        if not alive.any():
            break
        if not alive.all():
            keep = np.nonzero(alive)[0]
            memory, state = fn.select_memory(memory, keep), fn.select_state(state, keep)
            rows = rows[keep]
        y = out[rows, t]
    return total


def score_pairs(fn: StepFunction, src_tok: Any, tgt_tok: Any, sources: Sequence[str] | None,
                targets: Sequence[str], *, max_input_len: int = 1024, batch_size: int = 32) -> list[Scored]:
    """One :class:`Scored` per target line. A seq2seq target is scored as generated: after bos,
    its tokens, then eos. ``sources`` None means a language model, which was trained on a
    running stream: a line is scored after the model's start token (a newline for a char LM)
    and ends with the newline (eos where the vocabulary has no newline token)."""
    texts = [clean_text(t, f"line {i + 1}") for i, t in enumerate(targets)]
    if sources is None:
        start_ids = default_start_ids(tgt_tok)  # [newline id] where "\n" is one known token, else [bos]
        start = start_ids[-1]
        end = start_ids if start_ids != [tgt_tok.bos_id] else [tgt_tok.eos_id]
        src_ids: list[list[int]] = [[] for _ in texts]
    else:
        start, end = tgt_tok.bos_id, [tgt_tok.eos_id]
        src_ids = [encode_source(src_tok, clean_text(s, f"line {i + 1}"), max_input_len)[0]
                   for i, s in enumerate(sources)]
    tgt_ids = [tgt_tok.encode(t) + end if t else list(end) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (-len(src_ids[i]), -len(tgt_ids[i])))
    log_probs = np.zeros(len(texts))
    for first in range(0, len(order), batch_size):
        chunk = order[first : first + batch_size]
        if sources is None:
            src, lengths = np.zeros((len(chunk), 0), dtype=np.int64), np.zeros(len(chunk), dtype=np.int64)
        else:
            src, lengths = pad_batch([src_ids[i] for i in chunk], src_tok.pad_id)
        log_probs[chunk] = force_decode(fn, src, lengths, [tgt_ids[i] for i in chunk], start_id=start)
    return [Scored(float(lp), len(ids), len(text) + 1) for lp, ids, text in zip(log_probs, tgt_ids, texts)]
