"""Decoding algorithms (greedy, beam, sampling) written once against a step function.

numpy only, and imports no torch: the same code drives :class:`seqkit.models.TorchStepper` and
the onnxruntime step function of :mod:`seqkit.runtime`. Shapes: B = sentences, K = beam size,
N = rows fed to one ``step`` call (B, or B*K in beam search), S = source length,
V = vocabulary size, T = target steps.

Conventions shared by every algorithm:

- ``max_len`` (an int, or one per sentence) counts the tokens of a hypothesis *without* eos.
  Greedy and beam search force eos at step ``max_len``, so a hypothesis ends with eos within
  ``max_len + 1`` steps; sampling simply stops after ``max_len`` generated tokens.
- ``min_len`` blocks eos before step ``min_len``; ``max_len`` wins when the two conflict.
- ``Hypothesis.log_prob`` sums the model's log-probabilities of the emitted tokens, the final
  eos included when there is one. ``Hypothesis.score`` is what beam search ranks by: the
  GNMT-normalized ``log_prob / ((5 + L) / 6) ** length_penalty`` with L = len(tokens) + 1 (the
  eos counts); greedy and sampling have no length penalty, so there score == log_prob.
- ``Hypothesis.attention`` is (len(tokens) + 1, S_i) when the hypothesis ended with eos
  (row t = the source attention while emitting token t, the last row while emitting eos),
  (len(tokens), S_i) when sampling stopped at max_len; S_i = that sentence's source length.
  It is collected only with ``return_attention=True`` and when the step function returns one.
- Sentences that finish leave the batch (``select_memory``/``select_state`` with the rows kept),
  so the cost of a batch follows its unfinished sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

NEG_INF = -np.inf


@runtime_checkable
class StepFunction(Protocol):
    """One decoding step of a model, over numpy arrays. Memory and state are opaque to search."""

    def start(self, src: np.ndarray, lengths: np.ndarray) -> tuple[Any, Any]:
        """src (B, S) int64 padded (S may be 0 for a language model), lengths (B,) -> (memory, state)."""

    def step(self, y_prev: np.ndarray, memory: Any, state: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """y_prev (N,) int64 -> (log_probs (N, V) float32, attention (N, S) float32 or None, state)."""

    def select_memory(self, memory: Any, index: np.ndarray) -> Any:
        """Gather memory rows: index (N',) int64 into the current rows -> memory of N' rows."""

    def select_state(self, state: Any, index: np.ndarray) -> Any:
        """Gather state rows: index (N',) int64 into the current rows -> state of N' rows."""


class SearchConfig(BaseModel):
    """The recipe's ``search:`` section: how translate/evaluate/generate decode."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["greedy", "beam", "sample"] = "beam"
    beam_size: int = Field(default=5, ge=1)
    # GNMT length penalty exponent alpha: score = log_prob / ((5 + L) / 6) ** alpha; 0 = raw sum.
    length_penalty: float = 1.0
    n_best: int = Field(default=1, ge=1)  # hypotheses returned per sentence (<= beam_size)
    # Target length limit: min(max_len, int(max_len_ratio * source length + max_len_offset)).
    max_len_ratio: float = Field(default=1.5, ge=0)
    max_len_offset: int = Field(default=10, ge=0)
    max_len: int = Field(default=200, ge=1)
    min_len: int = Field(default=0, ge=0)  # eos is blocked before this many tokens
    no_repeat_ngram_size: int = Field(default=0, ge=0)  # beam only; 0 = off
    temperature: float = Field(default=1.0, gt=0)  # sampling only
    top_k: int = Field(default=0, ge=0)  # sampling only; 0 = off
    top_p: float = Field(default=1.0, gt=0, le=1)  # sampling only; 1 = off
    seed: int | None = None  # sampling only; None = fresh entropy each run
    batch_size: int = Field(default=32, ge=1)  # sentences per decoding batch
    # seq2seq, greedy/beam: an unk in the output becomes the source word that step attended to
    # most (Luong et al. 2015's unk replacement); needs attention and word/char tokenizers.
    replace_unk: bool = False

    @model_validator(mode="after")
    def _n_best_fits_beam(self) -> SearchConfig:
        if self.n_best > self.beam_size:
            raise ValueError(f"n_best ({self.n_best}) must be <= beam_size ({self.beam_size})")
        if self.replace_unk and self.strategy == "sample":
            raise ValueError("replace_unk needs the attention that greedy and beam search record; "
                             "strategy 'sample' does not")
        return self

    def max_lengths(self, src_lengths: np.ndarray) -> np.ndarray:
        """(B,) source lengths (eos included) -> (B,) int64 target length limits (eos excluded)."""
        limits = np.floor(self.max_len_ratio * np.asarray(src_lengths, dtype=np.float64) + self.max_len_offset)
        return np.minimum(limits.astype(np.int64), self.max_len)


@dataclass
class Hypothesis:
    """One decoded sequence (see the module docstring for score and attention)."""

    tokens: list[int]  # without bos/eos
    score: float
    log_prob: float
    attention: np.ndarray | None = None


def length_penalty_factor(length: np.ndarray | int, alpha: float) -> np.ndarray:
    """GNMT (Wu et al., 2016): ((5 + L) / 6) ** alpha; L counts the final eos."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def _limits(max_len: int | Sequence[int] | np.ndarray, batch: int) -> np.ndarray:
    limits = np.broadcast_to(np.asarray(max_len, dtype=np.int64), (batch,)).copy()
    if (limits < 0).any():
        raise ValueError(f"max_len must be >= 0, got {limits.min()}")
    return limits


def _constrain(logp: np.ndarray, t: int, limit: np.ndarray, *, eos_id: int, min_len: int) -> np.ndarray:
    """A float64 copy of logp (N, V) with eos blocked before min_len and forced at ``limit`` (N,)."""
    out = logp.astype(np.float64)  # copies: the step function's array is never modified
    eos_col = out[:, eos_id].copy()
    if t < min_len:
        out[:, eos_id] = NEG_INF
    forced = t >= limit
    if forced.any():
        out[forced] = NEG_INF
        out[forced, eos_id] = eos_col[forced]
    return out


def block_ngrams(logp: np.ndarray, history: np.ndarray, n: int) -> None:
    """In place: forbid tokens that would repeat an n-gram of ``history`` (N, t) in that row."""
    rows, t = history.shape
    if n <= 0 or t == 0:
        return
    if n == 1:
        logp[np.repeat(np.arange(rows), t), history.ravel()] = NEG_INF
        return
    if t < n:  # no complete earlier n-gram yet
        return
    windows = np.lib.stride_tricks.sliding_window_view(history, n - 1, axis=1)  # (N, t-n+2, n-1)
    # Window i (ending before the last n-1 tokens) equal to the last n-1 tokens bans its successor.
    match = (windows[:, :-1] == history[:, None, t - n + 1 :]).all(axis=-1)  # (N, t-n+1)
    r, i = np.nonzero(match)
    logp[r, history[r, i + n - 1]] = NEG_INF


class _Attn:
    """Per-row source attention buffer (N, T, S), allocated on the first step that returns one."""

    def __init__(self, enabled: bool, rows: int, steps: int):
        self.enabled, self.rows, self.steps = enabled, rows, steps
        self.buf: np.ndarray | None = None

    def write(self, t: int, attn: np.ndarray | None, index: np.ndarray | slice = slice(None)) -> None:
        if not self.enabled or attn is None or attn.ndim != 2 or attn.shape[1] == 0:
            return
        if self.buf is None:
            self.buf = np.zeros((self.rows, self.steps, attn.shape[1]), dtype=np.float32)
        self.buf[index, t] = attn

    def take(self, row: int, steps: int, src_len: int) -> np.ndarray | None:
        return None if self.buf is None else self.buf[row, :steps, :src_len].copy()

    def select(self, index: np.ndarray) -> None:
        if self.buf is not None:
            self.buf = self.buf[index]


def greedy(
    fn: StepFunction,
    src: np.ndarray,
    lengths: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int | Sequence[int] | np.ndarray,
    min_len: int = 0,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """Argmax decoding of B sentences at once; one Hypothesis per sentence, in input order."""
    batch = src.shape[0]
    if batch == 0:
        return []
    limits = _limits(max_len, batch)
    steps = int(limits.max()) + 1
    memory, state = fn.start(src, lengths)
    tokens = np.zeros((batch, steps), dtype=np.int64)  # (B, T) indexed by sentence
    log_prob = np.zeros(batch, dtype=np.float64)
    out_len = np.zeros(batch, dtype=np.int64)
    attn_buf = _Attn(return_attention, batch, steps)
    rows = np.arange(batch)  # sentence of each active row
    y = np.full(batch, bos_id, dtype=np.int64)
    for t in range(steps):
        logp, attn, state = fn.step(y, memory, state)
        logp = _constrain(logp, t, limits[rows], eos_id=eos_id, min_len=min_len)
        tok = logp.argmax(axis=1)  # ties: lowest id
        tokens[rows, t] = tok
        log_prob[rows] += logp[np.arange(len(rows)), tok]
        attn_buf.write(t, attn, rows)
        ended = tok == eos_id  # forced at limit, so every row ends by step `steps - 1`
        out_len[rows[ended]] = t
        if ended.all():
            break
        if ended.any():
            keep = np.nonzero(~ended)[0]
            memory, state = fn.select_memory(memory, keep), fn.select_state(state, keep)
            rows, tok = rows[keep], tok[keep]
        y = tok
    return [
        Hypothesis(
            tokens=tokens[b, : out_len[b]].tolist(),
            score=float(log_prob[b]),
            log_prob=float(log_prob[b]),
            attention=attn_buf.take(b, int(out_len[b]) + 1, int(lengths[b])),
        )
        for b in range(batch)
    ]


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
) -> list[list[Hypothesis]]:
    """Beam search over B sentences at once (B*K rows per step); n_best hypotheses per sentence.

    Each step ranks the K*V continuations of a sentence by cumulative log-prob and keeps the
    best 2K: eos candidates among the first K are finished, the first K others are the new beams
    (as in fairseq). A sentence stops, once it has n_best finished hypotheses, when this step's
    best candidate is eos (OpenNMT-py's criterion; with K = 1 this is exactly greedy) or when no
    beam can still beat its n_best-th finished score (an exact bound: the length penalty taken
    at its most favourable remaining length); and at its max_len, where eos is forced.
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
    sent = np.arange(batch)  # sentence of each active beam group
    y = np.full(batch * k, bos_id, dtype=np.int64)
    for t in range(steps):
        logp, attn, state = fn.step(y, memory, state)
        row_limits = np.repeat(limits[sent], k)
        logp = _constrain(logp, t, row_limits, eos_id=eos_id, min_len=min_len)
        block_ngrams(logp, tokens[:, :t], no_repeat_ngram_size)
        attn_buf.write(t, attn)
        vocab = logp.shape[1]
        cand = (scores[:, :, None] + logp.reshape(len(sent), k, vocab)).reshape(len(sent), k * vocab)
        top_scores, top_idx = _top_sorted(cand, min(2 * k, k * vocab))  # (B', 2K) best first
        beam_of, tok = top_idx // vocab, top_idx % vocab
        is_eos = tok == eos_id
        for i, r in zip(*np.nonzero(is_eos[:, :k] & np.isfinite(top_scores[:, :k]))):
            row = i * k + beam_of[i, r]
            finished.add(int(sent[i]), _hypothesis(tokens[row, :t], top_scores[i, r], length_penalty,
                                                   attn_buf.take(row, t + 1, int(lengths[sent[i]]))))
        new_scores, new_tok, parents = _next_beams(top_scores, beam_of, tok, is_eos, k)
        top_eos = is_eos[:, 0] & np.isfinite(top_scores[:, 0])
        keep = ~_beam_done(finished, sent, top_eos, new_scores, t, limits, length_penalty)
        if not keep.any():
            break
        index = parents[keep].ravel()
        tokens = tokens[index]
        tokens[:, t] = new_tok[keep].ravel()
        attn_buf.select(index)
        state = fn.select_state(state, index)
        if not keep.all():
            kept_rows = (np.nonzero(keep)[0][:, None] * k + np.arange(k)).ravel()
            memory = fn.select_memory(memory, kept_rows)
        scores, sent, y = new_scores[keep], sent[keep], new_tok[keep].ravel()
    return finished.best()


def _hypothesis(tokens: np.ndarray, log_prob: float, alpha: float, attention: np.ndarray | None) -> Hypothesis:
    """A finished beam hypothesis: tokens (L,) before its eos, log_prob with the eos included."""
    factor = float(length_penalty_factor(len(tokens) + 1, alpha))
    return Hypothesis(tokens.tolist(), float(log_prob) / factor, float(log_prob), attention)


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
        cand[rows[:, None], idx] = vals  # restore what the passes overwrote
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
    alpha: float,
) -> np.ndarray:
    """(B',) True for sentences whose search is over after step t.

    top_eos (B',): the best candidate of this step ended with eos; alive (B', K) raw beam scores.
    """
    best_alive = alive.max(axis=1)
    # log-probs only fall, so the best normalized score reachable divides by the largest factor
    # over the lengths still possible (t + 2 .. limit + 1); the factor is monotone in length.
    factor = np.maximum(length_penalty_factor(t + 2, alpha), length_penalty_factor(limits[sent] + 1, alpha))
    unbeatable = finished.nth_best[sent] >= best_alive / factor  # -inf bound when every beam is dead
    enough = finished.count[sent] >= finished.n_best
    return (enough & (top_eos | unbeatable)) | ~np.isfinite(best_alive) | (t >= limits[sent])


def sample(
    fn: StepFunction,
    src: np.ndarray,
    lengths: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int | Sequence[int] | np.ndarray,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | np.random.Generator | None = None,
    prefix: list[list[int]] | None = None,
    stop_at_eos: bool = True,
) -> list[Hypothesis]:
    """Ancestral sampling, one Hypothesis per row; tokens hold only the generated part.

    ``prefix[i]`` are the tokens fed to the model before row i samples (its first token takes
    bos's place; None or an empty row means ``[bos_id]``); a language model's prompt goes here.
    ``max_len`` counts generated tokens. With ``stop_at_eos=False`` eos is an ordinary token.
    Each step draws one uniform number per row of the batch, active or not, from
    ``np.random.default_rng(seed)``: equal log-probs from any backend give equal samples.
    ``log_prob`` sums the model's untempered log-probs of the sampled tokens.
    """
    if temperature <= 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"bad sampling settings: temperature={temperature}, top_k={top_k}, top_p={top_p}")
    rng = np.random.default_rng(seed)
    batch = src.shape[0]
    if batch == 0:
        return []
    limits = _limits(max_len, batch)
    padded, first = _prefix_matrix(prefix, batch, bos_id)
    out = np.zeros((batch, int(limits.max())), dtype=np.int64)  # (B, max_len) generated ids
    n_out = np.zeros(batch, dtype=np.int64)
    log_prob = np.zeros(batch, dtype=np.float64)
    memory, state = fn.start(src, lengths)
    rows = np.nonzero(limits > 0)[0]  # sentence of each active row
    if len(rows) < batch:
        memory, state = fn.select_memory(memory, rows), fn.select_state(state, rows)
    y = padded[rows, 0]
    for t in range(int((first + limits).max()) if len(rows) else 0):
        u = rng.random(batch)  # drawn for every row, so the stream is independent of finishing
        logp, _, state = fn.step(y, memory, state)
        tok = draw(logp, u[rows], temperature=temperature, top_k=top_k, top_p=top_p)
        sampling = t >= first[rows]  # False while the row is still fed its prefix
        log_prob[rows[sampling]] += logp[np.nonzero(sampling)[0], tok[sampling]]
        stop = sampling & (tok == eos_id) if stop_at_eos else np.zeros(len(rows), dtype=bool)
        emit = sampling & ~stop
        out[rows[emit], n_out[rows[emit]]] = tok[emit]
        n_out[rows[emit]] += 1
        ended = stop | (emit & (n_out[rows] >= limits[rows]))
        y = np.where(t + 1 <= first[rows], padded[rows, min(t + 1, padded.shape[1] - 1)], tok)
        if ended.all():
            break
        if ended.any():
            keep = np.nonzero(~ended)[0]
            memory, state = fn.select_memory(memory, keep), fn.select_state(state, keep)
            rows, y = rows[keep], y[keep]
    return [
        Hypothesis(tokens=out[b, : n_out[b]].tolist(), score=float(log_prob[b]), log_prob=float(log_prob[b]))
        for b in range(batch)
    ]


def _prefix_matrix(prefix: list[list[int]] | None, batch: int, bos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Prefix rows ([bos_id] when missing or empty) -> padded (B, P) ids, first (B,) = len - 1."""
    feeds = [list(p) if p else [bos_id] for p in (prefix if prefix is not None else [[]] * batch)]
    if len(feeds) != batch:
        raise ValueError(f"prefix has {len(feeds)} rows for a batch of {batch}")
    first = np.array([len(p) - 1 for p in feeds], dtype=np.int64)  # step of each row's first sample
    padded = np.zeros((batch, int(first.max()) + 1), dtype=np.int64)
    for i, p in enumerate(feeds):
        padded[i, : len(p)] = p
    return padded, first


def draw(logp: np.ndarray, u: np.ndarray, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """Sample one id per row of logp (N, V) by inverse CDF with uniforms u (N,) in [0, 1).

    top_k keeps the k most probable ids, then top_p keeps the smallest most-probable set whose
    mass (renormalized after top_k) reaches top_p; ties rank the lower id first.
    """
    z = logp.astype(np.float64) / temperature
    if top_k <= 0 and top_p >= 1.0:
        return _inverse_cdf(np.exp(z - z.max(axis=1, keepdims=True)), u)
    order = np.argsort(-z, axis=1, kind="stable")  # (N, V) ids, most probable first
    zs = np.take_along_axis(z, order, axis=1)
    p = np.exp(zs - zs[:, :1])
    if top_k > 0:
        p[:, top_k:] = 0.0
    if top_p < 1.0:
        q = p / p.sum(axis=1, keepdims=True)
        p = np.where(np.cumsum(q, axis=1) - q < top_p, p, 0.0)  # mass before this id < top_p
    ranks = _inverse_cdf(p, u)
    return order[np.arange(len(order)), ranks]


def _inverse_cdf(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index i per row with cdf[i-1] <= u * total < cdf[i] over unnormalized p (N, V) >= 0."""
    cdf = np.cumsum(p, axis=1)
    idx = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)
    last_positive = p.shape[1] - 1 - np.argmax(p[:, ::-1] > 0, axis=1)  # rounding guard
    return np.minimum(idx, last_positive)
