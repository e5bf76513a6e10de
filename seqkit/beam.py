"""Beam search over a step function, batched: B sentences x K beams = B*K rows per step.

Conventions (max_len, min_len, scores, attention, finished sentences leaving the batch) are those
of :mod:`seqkit.search`, whose helpers this module shares. numpy only; imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqkit.errors import ModelError
from seqkit.search import (
    NEG_INF,
    Hypothesis,
    StepFunction,
    TopKStepFunction,
    _Attn,
    _constrain,
    _limits,
    block_ngrams,
    length_penalty_factor,
    step_top,
)


@dataclass(frozen=True)
class Penalties:
    """How a finished hypothesis is ranked: ``log_prob / lp(L) - cp(c)`` (OpenNMT-py's choices).

    L = len(tokens) + 1 (the eos counts). lp: ``wu`` (GNMT) ((5 + L) / 6) ** alpha, ``avg`` L,
    ``none`` 1. c (S_i,) is the source coverage: the attention of every output step, eos's
    included, summed per source position (the source eos too; padding never). cp: ``wu`` (GNMT)
    -beta * sum log(min(c, 1)) (c floored at 1e-10), ``summary`` beta * sum (max(c, 1) - 1), ``none`` 0. Both are
    applied when a hypothesis finishes, as in GNMT's rescoring, so they choose among the finished
    hypotheses the beams reach; they never change which beams are expanded.
    """

    length: str = "wu"
    alpha: float = 1.0
    coverage: str = "none"
    beta: float = 0.0

    def factor(self, length: np.ndarray | int) -> np.ndarray:
        """lp(L), float64; nondecreasing in L, which the stopping bound relies on."""
        if self.length == "wu":
            return length_penalty_factor(length, self.alpha)
        if self.length == "avg":
            return np.asarray(length, dtype=np.float64)
        return np.ones_like(np.asarray(length, dtype=np.float64))

    def coverage_cost(self, coverage: np.ndarray) -> float:
        """cp(c) >= 0 for coverage (S_i,): what the score loses for over- or under-attending."""
        if self.coverage == "wu":
            # floored at 1e-10 so that a position no step attended to costs 23 * beta, not infinity
            return float(-self.beta * np.log(np.clip(coverage.astype(np.float64), 1e-10, 1.0)).sum())
        if self.coverage == "summary":
            return float(self.beta * (np.maximum(coverage.astype(np.float64), 1.0) - 1.0).sum())
        return 0.0

    def score(self, log_prob: float, length: int, coverage: np.ndarray | None) -> float:
        cost = self.coverage_cost(coverage) if coverage is not None else 0.0
        return float(log_prob) / float(self.factor(length)) - cost


class _Coverage:
    """Per-row attention summed over the steps so far (N, S), only when a coverage penalty needs it."""

    def __init__(self, enabled: bool):
        self.enabled, self.sum = enabled, None

    def add(self, attn: np.ndarray | None) -> None:
        if not self.enabled:
            return
        if attn is None or attn.ndim != 2:
            raise ModelError("search.coverage_penalty: needs the source attention, and this model returns none")
        self.sum = attn.astype(np.float64) if self.sum is None else self.sum + attn

    def take(self, row: int, src_len: int) -> np.ndarray | None:
        return None if self.sum is None else self.sum[row, :src_len]

    def select(self, index: np.ndarray) -> None:
        if self.sum is not None:
            self.sum = self.sum[index]


class _Finished:
    """Finished hypotheses per sentence, and the n_best-th best score (for the stopping test)."""

    def __init__(self, batch: int, n_best: int):
        self.hyps: list[list[Hypothesis]] = [[] for _ in range(batch)]
        self.count = np.zeros(batch, dtype=np.int64)
        self.nth_best = np.full(batch, NEG_INF)
        self.n_best = n_best

    def add(self, sentence: int, hyp: Hypothesis) -> None:
        self.hyps[sentence].append(hyp)
        self.count[sentence] += 1
        if self.count[sentence] >= self.n_best:
            scores = sorted((h.score for h in self.hyps[sentence]), reverse=True)
            self.nth_best[sentence] = scores[self.n_best - 1]

    def best(self) -> list[list[Hypothesis]]:
        return [sorted(h, key=lambda x: -x.score)[: self.n_best] for h in self.hyps]


def beam_search(
    fn: StepFunction,
    src: np.ndarray,
    lengths: np.ndarray,
    *,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    max_len: int | Sequence[int] | np.ndarray,
    min_len: int = 0,
    length_penalty: float = 1.0,
    n_best: int = 1,
    no_repeat_ngram_size: int = 0,
    return_attention: bool = False,
    length_norm: str = "wu",
    coverage_penalty: str = "none",
    coverage_beta: float = 0.0,
    ignore_when_blocking: Sequence[int] = (),
) -> list[list[Hypothesis]]:
    """Beam search over B sentences at once (B*K rows per step); n_best hypotheses per sentence.

    Each step ranks the K*V continuations of a sentence by cumulative log-prob and keeps the
    best 2K: eos candidates among the first K are finished, the first K others are the new beams
    (as in fairseq). A sentence stops, once it has n_best finished hypotheses, when this step's
    best candidate is eos (OpenNMT-py's criterion; with K = 1 this is exactly greedy) or when no
    beam can still beat its n_best-th finished score (an exact bound: the length penalty taken
    at its most favourable remaining length); and at its max_len, where eos is forced.
    Scores: :class:`Penalties` (length_norm with alpha = length_penalty, coverage_penalty with
    beta = coverage_beta). ``ignore_when_blocking``: ids exempt from ``no_repeat_ngram_size``.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"need 1 <= n_best ({n_best}) <= beam_size ({beam_size})")
    batch, k = src.shape[0], beam_size
    if batch == 0:
        return []
    limits = _limits(max_len, batch)
    steps = int(limits.max()) + 1
    memory, state = fn.start(src, lengths)
    expand = np.repeat(np.arange(batch), k)  # row b*K + j holds beam j of sentence b
    memory, state = fn.select_memory(memory, expand), fn.select_state(state, expand)
    scores = np.full((batch, k), NEG_INF)
    scores[:, 0] = 0.0  # all beams start equal: only the first may expand at step 0
    tokens = np.zeros((batch * k, steps), dtype=np.int64)
    attn_buf = _Attn(return_attention, batch * k, steps)
    finished = _Finished(batch, n_best)
    penalties = Penalties(length_norm, length_penalty, coverage_penalty, coverage_beta)
    coverage = _Coverage(coverage_penalty != "none")
    sent = np.arange(batch)  # sentence of each active beam group
    y = np.full(batch * k, bos_id, dtype=np.int64)
    top_k = isinstance(fn, TopKStepFunction) and no_repeat_ngram_size == 0  # blocking needs whole rows
    for t in range(steps):
        row_limits = np.repeat(limits[sent], k)
        if top_k:
            best, ids, attn, state = step_top(fn, y, memory, state, 2 * k, t, row_limits, eos_id=eos_id, min_len=min_len)
            top_scores, beam_of, tok = _best_of_rows(scores, best, ids)
        else:
            logp, attn, state = fn.step(y, memory, state)
            logp = _constrain(logp, t, row_limits, eos_id=eos_id, min_len=min_len)
            block_ngrams(logp, tokens[:, :t], no_repeat_ngram_size, ignore_when_blocking)
            top_scores, beam_of, tok = _best_of_full(scores, logp)
        attn_buf.write(t, attn)
        coverage.add(attn)  # (B'*K, S): the eos step's attention counts for a beam ending here
        is_eos = tok == eos_id
        for i, r in zip(*np.nonzero(is_eos[:, :k] & np.isfinite(top_scores[:, :k]))):
            row, src_len = i * k + beam_of[i, r], int(lengths[sent[i]])
            finished.add(int(sent[i]), _hypothesis(tokens[row, :t], top_scores[i, r], penalties,
                                                   attn_buf.take(row, t + 1, src_len), coverage.take(row, src_len)))
        new_scores, new_tok, parents = _next_beams(top_scores, beam_of, tok, is_eos, k)
        top_eos = is_eos[:, 0] & np.isfinite(top_scores[:, 0])
        keep = ~_beam_done(finished, sent, top_eos, new_scores, t, limits, penalties)
        if not keep.any():
            break
        index = parents[keep].ravel()
        tokens = tokens[index]
        tokens[:, t] = new_tok[keep].ravel()
        attn_buf.select(index)
        coverage.select(index)
        state = fn.select_state(state, index)
        if not keep.all():
            kept_rows = (np.nonzero(keep)[0][:, None] * k + np.arange(k)).ravel()
            memory = fn.select_memory(memory, kept_rows)
        scores, sent, y = new_scores[keep], sent[keep], new_tok[keep].ravel()
    return finished.best()


def _best_of_full(scores: np.ndarray, logp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beam scores (B', K) + constrained rows logp (B'*K, V) -> the best min(2K, K*V) of each
    sentence's K*V continuations, best first, ties to the lower (beam, id): scores, beam, id."""
    (batch, k), vocab = scores.shape, logp.shape[1]
    cand = (scores[:, :, None] + logp.reshape(batch, k, vocab)).reshape(batch, k * vocab)
    top_scores, top_idx = _top_sorted(cand, min(2 * k, k * vocab))  # (B', 2K) best first
    return top_scores, top_idx // vocab, top_idx % vocab


def _best_of_rows(scores: np.ndarray, best: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_best_of_full from each row's n best (``step_top``): best, ids (B'*K, n) -> the same.

    The best 2K of a sentence lie among the best 2K of each of its rows (a row adds one beam
    score to all its entries), and (beam, id) order is the flat index order of the full path.
    """
    (batch, k), n = scores.shape, best.shape[1]
    cand = (scores[:, :, None] + best.reshape(batch, k, n)).reshape(batch, k * n)
    beam = np.broadcast_to(np.repeat(np.arange(k), n), cand.shape)
    tok = ids.reshape(batch, k * n)
    order = np.lexsort((tok, beam, -cand), axis=1)[:, : min(2 * k, k * n)]
    take = np.take_along_axis
    return take(cand, order, axis=1), take(beam, order, axis=1), take(tok, order, axis=1)


def _hypothesis(tokens: np.ndarray, log_prob: float, penalties: Penalties, attention: np.ndarray | None,
                coverage: np.ndarray | None) -> Hypothesis:
    """A finished beam hypothesis: tokens (L,) before its eos, log_prob with the eos included."""
    score = penalties.score(log_prob, len(tokens) + 1, coverage)
    return Hypothesis(tokens.tolist(), score, float(log_prob), attention)


def _next_beams(
    top_scores: np.ndarray, beam_of: np.ndarray, tok: np.ndarray, is_eos: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first K non-eos of the sorted candidates (B', 2K) -> scores, tokens, parent rows (B', K)."""
    pick = np.argsort(is_eos, axis=1, kind="stable")[:, :k]  # eos to the back, score order kept
    scores = np.take_along_axis(top_scores, pick, axis=1)
    scores[np.take_along_axis(is_eos, pick, axis=1)] = NEG_INF  # fewer than K non-eos candidates
    parents = np.arange(len(tok))[:, None] * k + np.take_along_axis(beam_of, pick, axis=1)
    return scores, np.take_along_axis(tok, pick, axis=1), parents


def _top_sorted(cand: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best entries per row of cand (B', M), best first, ties to the lower index.

    For beam-sized n, n argmax passes beat argpartition by ~5x on (32, 5 * 8000): numpy's
    introselect is slow. Overwrites cand.
    """
    if n > 16:
        return _top_sorted_partition(cand, n)
    rows = np.arange(cand.shape[0])
    vals, idx = np.empty((cand.shape[0], n)), np.empty((cand.shape[0], n), dtype=np.int64)
    for j in range(n):
        idx[:, j] = cand.argmax(axis=1)
        vals[:, j] = cand[rows, idx[:, j]]
        cand[rows, idx[:, j]] = NEG_INF
    short = np.isneginf(vals[:, -1])  # fewer than n finite entries: argmax repeated an index
    if short.any():
        # Restore what the passes overwrote. A repeated index holds its true value only at its
        # first pick (then -inf), so restoring every pick would leave -inf; finite picks are unique.
        found = np.isfinite(vals)
        cand[np.broadcast_to(rows[:, None], idx.shape)[found], idx[found]] = vals[found]
        vals[short], idx[short] = _top_sorted_partition(cand[short], n)
    return vals, idx


def _top_sorted_partition(cand: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """_top_sorted for any n: threshold at the n-th largest value, ties at it to the lower index."""
    n = min(n, cand.shape[1])
    nth = -np.partition(-cand, n - 1, axis=1)[:, n - 1 : n]  # (B', 1)
    above, tied = cand > nth, cand == nth
    room = n - above.sum(axis=1, keepdims=True)
    idx = np.nonzero(above | (tied & (np.cumsum(tied, axis=1) <= room)))[1].reshape(len(cand), n)
    vals = np.take_along_axis(cand, idx, axis=1)
    order = np.lexsort((idx, -vals), axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _beam_done(
    finished: _Finished, sent: np.ndarray, top_eos: np.ndarray, alive: np.ndarray, t: int, limits: np.ndarray,
    penalties: Penalties,
) -> np.ndarray:
    """(B',) True for sentences whose search is over after step t.

    top_eos (B',): the best candidate of this step ended with eos; alive (B', K) raw beam scores.
    """
    best_alive = alive.max(axis=1)
    # log-probs only fall, so the best normalized score reachable divides by the largest factor
    # over the lengths still possible (t + 2 .. limit + 1); the factor is monotone in length.
    # The coverage cost is >= 0, so leaving it out keeps the bound an upper one.
    factor = np.maximum(penalties.factor(t + 2), penalties.factor(limits[sent] + 1))
    unbeatable = finished.nth_best[sent] >= best_alive / factor  # -inf bound when every beam is dead
    enough = finished.count[sent] >= finished.n_best
    return (enough & (top_eos | unbeatable)) | ~np.isfinite(best_alive) | (t >= limits[sent])
