"""Decoding algorithms (greedy, sampling; beam search in :mod:`seqkit.beam`) written once
against a step function.

numpy only, and imports no torch: the same code drives :class:`seqkit.models.TorchStepper` and
the onnxruntime step function of :mod:`seqkit.runtime`. A step function that also implements
:class:`TopKStepFunction` hands beam search and greedy only the best k log-probs of each row
(plus eos's), so numpy never touches the (N, V) scores; the results are identical to the
full-row path (tests/test_search.py), which serves every other step function, sampling, and
beam search with ``no_repeat_ngram_size`` (that needs whole rows). Shapes: B = sentences, K = beam size,
N = rows fed to one ``step`` call (B, or B*K in beam search), S = source length,
V = vocabulary size, T = target steps.

Conventions shared by every algorithm:

- ``max_len`` (an int, or one per sentence) counts the tokens of a hypothesis *without* eos.
  Greedy and beam search force eos at step ``max_len``, so a hypothesis ends with eos within
  ``max_len + 1`` steps; sampling simply stops after ``max_len`` generated tokens.
- ``min_len`` blocks eos before step ``min_len``; ``max_len`` wins when the two conflict.
- ``Hypothesis.log_prob`` sums the model's log-probabilities of the emitted tokens, the final
  eos included when there is one. ``Hypothesis.score`` is what beam search ranks by: by default
  the GNMT-normalized ``log_prob / ((5 + L) / 6) ** length_penalty`` with L = len(tokens) + 1
  (the eos counts), in general ``log_prob / lp(L) - cp(coverage)`` (:class:`seqkit.beam.Penalties`);
  greedy and sampling have no penalties, so there score == log_prob.
- ``Hypothesis.attention`` is (len(tokens) + 1, S_i) when the hypothesis ended with eos
  (row t = the source attention while emitting token t, the last row while emitting eos),
  (len(tokens), S_i) when sampling stopped at max_len; S_i = that sentence's source length.
  It is collected only with ``return_attention=True`` and when the step function returns one.
- Sentences that finish leave the batch (``select_memory``/``select_state`` with the rows kept),
  so the cost of a batch follows its unfinished sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from seqkit.errors import InputError

NEG_INF = -np.inf
# The longest hypothesis (tokens) and the widest beam any search is asked for.
MAX_LEN = 100_000
MAX_BEAM = 256


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


@dataclass
class TopK:
    """The k best log-probs of each row, best first, ties to the lower id, and eos's log-prob."""

    log_probs: np.ndarray  # (N, k) float32, the very values ``step`` would return at ``ids``
    ids: np.ndarray  # (N, k) int64
    eos: np.ndarray  # (N,) float32, log-prob of eos_id in each row


@runtime_checkable
class TopKStepFunction(StepFunction, Protocol):
    """A step function that can select the best k of each row itself (in the model's graph)."""

    def step_top_k(self, y_prev: np.ndarray, memory: Any, state: Any, k: int, eos_id: int) -> tuple[TopK, np.ndarray | None, Any]:
        """y_prev (N,) int64 -> (TopK with min(k, V) columns, attention (N, S) or None, state)."""


def top_k_rows(logp: np.ndarray, k: int, eos_id: int) -> TopK:
    """The reference for ``step_top_k``: logp (N, V) -> TopK, by a stable sort of each row."""
    ids = np.argsort(-logp, axis=1, kind="stable")[:, : min(k, logp.shape[1])]
    return TopK(np.take_along_axis(logp, ids, axis=1), ids.astype(np.int64), logp[:, eos_id].copy())


class SearchConfig(BaseModel):
    """The recipe's ``search:`` section: how translate/evaluate/generate decode."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["greedy", "beam", "sample"] = "beam"
    # Upper bounds keep a hostile recipe, config.json or request from asking for hours of
    # decoding or gigabytes of scores (beam x vocabulary rows); NaN and infinity are refused.
    beam_size: int = Field(default=5, ge=1, le=MAX_BEAM)
    # Beam search ranks a finished hypothesis by log_prob / lp(L) - cp (seqkit.beam.Penalties).
    # lp: "wu" = GNMT ((5 + L) / 6) ** length_penalty, "avg" = L, "none" = 1 (the raw sum).
    length_norm: Literal["wu", "avg", "none"] = "wu"
    # GNMT length penalty exponent alpha (length_norm "wu"); 0 = raw sum.
    length_penalty: float = Field(default=1.0, ge=0, le=10, allow_inf_nan=False)
    # cp over the source coverage c_j (attention summed over the output steps): "wu" = GNMT
    # -beta * sum_j log(min(c_j, 1)), "summary" = beta * sum_j (max(c_j, 1) - 1); "none" = 0.
    coverage_penalty: Literal["none", "wu", "summary"] = "none"
    coverage_beta: float = Field(default=0.0, ge=0, le=10, allow_inf_nan=False)  # beta of coverage_penalty
    n_best: int = Field(default=1, ge=1)  # hypotheses returned per sentence (<= beam_size)
    # Target length limit: min(max_len, int(max_len_ratio * source length + max_len_offset)).
    max_len_ratio: float = Field(default=1.5, ge=0, le=100, allow_inf_nan=False)
    max_len_offset: int = Field(default=10, ge=0, le=MAX_LEN)
    max_len: int = Field(default=200, ge=1, le=MAX_LEN)
    min_len: int = Field(default=0, ge=0, le=MAX_LEN)  # eos is blocked before this many tokens
    # beam only; 0 = off. OpenNMT-py's block_ngram_repeat: an n-gram never occurs twice.
    no_repeat_ngram_size: int = Field(default=0, ge=0, le=MAX_LEN)
    # Target tokens exempt from no_repeat_ngram_size: an n-gram holding one may repeat (e.g. ".").
    ignore_when_blocking: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default=[], max_length=1000)
    temperature: float = Field(default=1.0, gt=0, le=1000, allow_inf_nan=False)  # sampling only
    top_k: int = Field(default=0, ge=0, le=2**31 - 1)  # sampling only; 0 = off
    top_p: float = Field(default=1.0, gt=0, le=1)  # sampling only; 1 = off
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)  # sampling only; None = fresh entropy each run
    batch_size: int = Field(default=32, ge=1, le=100_000)  # sentences per decoding batch
    # Source tokens read at inference (eos included); a longer input is cut with a warning that
    # names the line. A recurrent encoder reads any length, unlike the training filter
    # data.max_src_len: this bound only caps memory (batch x beam x length attention memory).
    max_input_len: int = Field(default=1024, ge=2, le=1_000_000)
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
        if self.coverage_penalty != "none" and self.coverage_beta == 0:
            raise ValueError(f"coverage_penalty '{self.coverage_penalty}' with coverage_beta 0 changes nothing; "
                             "set coverage_beta > 0 (GNMT used 0.2)")
        return self

    def with_overrides(self, **overrides: Any) -> SearchConfig:
        """A copy with ``overrides`` (field names) applied and every constraint checked again;
        InputError naming the option, e.g. ``n_best (3) must be <= beam_size (1)``."""
        return resolve_search(self.model_dump(), overrides)

    def max_lengths(self, src_lengths: np.ndarray) -> np.ndarray:
        """(B,) source lengths (eos included) -> (B,) int64 target length limits (eos excluded)."""
        limits = np.floor(self.max_len_ratio * np.asarray(src_lengths, dtype=np.float64) + self.max_len_offset)
        return np.minimum(limits.astype(np.int64), self.max_len)


def check_option(name: str, value: Any, where: str) -> None:
    """One SearchConfig field's own constraints (``where`` names it: a CLI flag, an HTTP field);
    the constraints between fields need the model's defaults and wait for :func:`resolve_search`."""
    field = SearchConfig.model_fields[name]
    try:
        kind = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise InputError(f"{where}: {exc.errors()[0]['msg']}") from None


def resolve_search(base: dict[str, Any], overrides: dict[str, Any]) -> SearchConfig:
    """``base`` (a recipe's or an exported model's search section) with ``overrides``; an
    invalid result is one InputError line naming the option, never a pydantic traceback."""
    try:
        return SearchConfig.model_validate({**base, **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InputError(f"search option {where}: {message}" if where else f"search options: {message}") from None


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


def step_top(
    fn: TopKStepFunction, y: np.ndarray, memory: Any, state: Any, n: int, t: int, limit: np.ndarray, *, eos_id: int,
    min_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
    """One step, reduced to the n best continuations of each row of ``_constrain``'s scores.

    -> log-probs (N, n') float64 best first (ties: lower id), ids (N, n') int64, attention, state;
    n' = min(n, V). Same values and order as the first n' of a stable sort of the constrained
    full row, except among -inf entries (which search never keeps).
    """
    blocked = t < min_len  # one more candidate, so n remain once eos is dropped
    top, attn, state = fn.step_top_k(y, memory, state, n + int(blocked), eos_id)
    vals, ids = top.log_probs.astype(np.float64), top.ids
    if blocked:
        vals[ids == eos_id] = NEG_INF
        order = np.argsort(-vals, axis=1, kind="stable")[:, :n]  # keeps id order among ties
        vals, ids = np.take_along_axis(vals, order, axis=1), np.take_along_axis(ids, order, axis=1)
    forced = t >= limit  # only eos remains, with its unblocked log-prob (max_len wins)
    if forced.any():
        vals[forced] = NEG_INF
        vals[forced, 0] = top.eos[forced]
        ids = ids.copy()
        ids[forced, 0] = eos_id
    return vals, ids, attn, state


def block_ngrams(logp: np.ndarray, history: np.ndarray, n: int, ignore: Sequence[int] = ()) -> None:
    """In place: forbid tokens that would repeat an n-gram of ``history`` (N, t) in that row.
    An n-gram holding one of the ``ignore`` ids is never blocked."""
    rows, t = history.shape
    if n <= 0 or t == 0:
        return
    exempt = np.asarray(ignore, dtype=np.int64)
    if n == 1:
        r, banned = np.repeat(np.arange(rows), t), history.ravel()
        keep = ~np.isin(banned, exempt)
        logp[r[keep], banned[keep]] = NEG_INF
        return
    if t < n:  # no complete earlier n-gram yet
        return
    last = history[:, t - n + 1 :]  # (N, n-1) the n-gram's first n-1 tokens, if the next one repeats it
    windows = np.lib.stride_tricks.sliding_window_view(history, n - 1, axis=1)  # (N, t-n+2, n-1)
    # Window i (ending before the last n-1 tokens) equal to the last n-1 tokens bans its successor.
    match = (windows[:, :-1] == last[:, None]).all(axis=-1)  # (N, t-n+1)
    match &= ~np.isin(last, exempt).any(axis=1, keepdims=True)
    r, i = np.nonzero(match)
    successor = history[r, i + n - 1]
    keep = ~np.isin(successor, exempt)
    logp[r[keep], successor[keep]] = NEG_INF


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
    top_k = isinstance(fn, TopKStepFunction)
    for t in range(steps):
        if top_k:  # the best of each row only (a shortlist stepper never widens it to V)
            vals, ids, attn, state = step_top(fn, y, memory, state, 1, t, limits[rows], eos_id=eos_id,
                                              min_len=min_len)
            tok, best = ids[:, 0], vals[:, 0]
        else:
            logp, attn, state = fn.step(y, memory, state)
            logp = _constrain(logp, t, limits[rows], eos_id=eos_id, min_len=min_len)
            tok = logp.argmax(axis=1)  # ties: lowest id
            best = logp[np.arange(len(rows)), tok]
        tokens[rows, t] = tok
        log_prob[rows] += best
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
