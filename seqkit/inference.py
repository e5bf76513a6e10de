"""Text in, text out over any :class:`~seqkit.search.StepFunction`; imports no torch.

:class:`Translator` serves seq2seq models (translation, summarization), :class:`Generator`
language models, :class:`TextClassifier` classifiers. Each works unchanged over torch and
onnxruntime.

Source encoding is shared with training through :func:`seqkit.batching.encode_source`: the tokenizer's ids,
cut to ``max_len - 1``, then eos. The trainer calls the same function, so the model sees at
inference exactly the layout it was trained on.

Input cleaning (:func:`clean_text`, inference only): text must be a ``str`` encodable as UTF-8
(lone surrogates are an :class:`~seqkit.errors.InputError` naming the line); C0/C1 control
characters other than tab become spaces and surrounding whitespace is stripped, so a stray
``\\r`` or NUL does not reach the tokenizer as an unknown token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pydantic import ValidationError

from seqkit.batching import encode_source, pad_batch
from seqkit.beam import beam_search
from seqkit.errors import InputError, ModelError, shorten
from seqkit.oov import check_tokenizer, decode_tokens, extend_source
from seqkit.search import Hypothesis, SearchConfig, StepFunction, greedy, sample
from seqkit.tokenizers.base import VocabTokenizer

log = logging.getLogger("seqkit")

# Unicode category Cc minus tab: U+0000-0008, U+000A-001F, U+007F-009F.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def clean_text(text: Any, where: str) -> str:
    """Validate and normalize one input text; ``where`` names it in errors ("line 3")."""
    if not isinstance(text, str):
        raise InputError(f"{where}: expected text, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{where}: not valid Unicode text ({exc.reason} at character {exc.start})") from None
    return _CONTROL.sub(" ", text).strip()


def as_lines(lines: Any) -> tuple[list[str], bool]:
    """``(lines, single)``: a ``str`` is one line whose result comes back alone (not a sequence
    of characters); any other iterable of ``str`` is a list of lines. TypeError otherwise."""
    if isinstance(lines, str):
        return [lines], True
    if isinstance(lines, (bytes, bytearray)):
        raise TypeError("expected a str or a list of str, got bytes: decode it first (e.g. .decode('utf-8'))")
    try:
        return list(lines), False  # clean_text names a line that is not a str
    except TypeError:
        raise TypeError(f"expected a str or a list of str, got {type(lines).__name__}") from None


def encode_lines(lines: Sequence[str], tokenizer: Any, max_src_len: int,
                 first_line: int = 1) -> list[tuple[int, list[int], list[str]]]:
    """(line index, source ids, warnings) for every non-empty line after :func:`clean_text`,
    longest first (stable, so ties keep input order) for batching. A line cut to
    ``max_src_len`` gets a logged warning naming it (``first_line``: the first line's number)."""
    todo = []
    for i, line in enumerate(lines):
        text = clean_text(line, f"line {i + first_line}")
        if not text:
            continue
        ids, truncated = encode_source(tokenizer, text, max_src_len)
        warnings = []
        if truncated:
            warnings.append(f"line {i + first_line}: source longer than {max_src_len} tokens (eos included); "
                            "truncated")
            log.warning(warnings[-1])
        todo.append((i, ids, warnings))
    todo.sort(key=lambda item: -len(item[1]))
    return todo


class Candidate(NamedTuple):
    """One hypothesis of an n-best list: its text, ``log_prob`` (the sum of the model's token
    log-probabilities, eos included) and ``score`` (what the search ranked by: log_prob divided
    by the GNMT length penalty for beam search, equal to log_prob for greedy and sampling)."""

    text: str
    log_prob: float
    score: float


@dataclass
class TranslationResult:
    """One translated line. ``log_prob`` and ``score`` are the best hypothesis' (see Candidate).

    ``attention``: (len(tokens) + 1, len(src_tokens)) source attention of the best hypothesis
    (last row: while emitting eos; columns include the source eos), only when asked for and the
    model has attention. An empty input line gives text "", score 0.0 and no model call.
    """

    text: str
    tokens: list[int]
    score: float
    n_best: list[Candidate]
    attention: np.ndarray | None
    src_tokens: list[int]
    warnings: list[str] = field(default_factory=list)
    log_prob: float = 0.0


class Translator:
    """Batched text-to-text decoding with the strategy named in ``config.strategy``."""

    def __init__(self, fn: StepFunction, src_tokenizer: Any, tgt_tokenizer: Any, config: SearchConfig, *,
                 max_src_len: int | None = None, copy_oov: bool = False, workers: int = 1):
        # The source bound: config.max_input_len unless given (not the training filter).
        max_src_len = config.max_input_len if max_src_len is None else max_src_len
        if max_src_len < 2:
            raise ValueError(f"max_src_len must be >= 2 (one token and eos), got {max_src_len}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.fn, self.config, self.max_src_len = fn, config, max_src_len
        # Batches decoded at once, each in its own thread (CTranslate2's inter_threads): while one
        # batch's search runs numpy and Python, another's step runs in the model backend, which
        # releases the GIL. The step function must allow concurrent calls (onnxruntime sessions
        # and TorchStepper do). Sampling keeps one random stream over the batches: one worker.
        self.workers = workers
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        if config.replace_unk and not all(isinstance(t, VocabTokenizer) for t in (src_tokenizer, tgt_tokenizer)):
            kinds = ", ".join(sorted({type(t).__name__ for t in (src_tokenizer, tgt_tokenizer)}))
            raise ModelError(f"search.replace_unk: needs tokenizers that split text into vocabulary tokens "
                             f"(word, char); got {kinds}")
        self.ignore_ids = [token_id(tgt_tokenizer, token, "search.ignore_when_blocking")
                           for token in config.ignore_when_blocking]
        # The model's output has V + S columns: a sentence's unknown source words (seqkit.oov).
        self.copy_oov = copy_oov
        if copy_oov:
            check_tokenizer(src_tokenizer)

    def translate(self, lines: str | Sequence[str], *, return_attention: bool = False,
                  first_line: int = 1) -> TranslationResult | list[TranslationResult]:
        """One result per line, in input order (one str: its result alone). Batches hold lines
        of similar length. ``first_line`` numbers the lines in warnings and errors."""
        lines, single = as_lines(lines)
        if single:
            return self.translate(lines, return_attention=return_attention, first_line=first_line)[0]
        results: list[TranslationResult | None] = [None] * len(lines)
        todo = encode_lines(lines, self.src_tokenizer, self.max_src_len, first_line)
        oov: dict[int, list[str]] = {}
        if self.copy_oov:  # source ids in the sentence's extended vocabulary
            extended = {i: extend_source(self.src_tokenizer, clean_text(lines[i], "source"), ids) for i, ids, _ in todo}
            todo = [(i, extended[i].ids, warnings) for i, _, warnings in todo]
            oov = {i: e.words for i, e in extended.items()}
        for i in set(range(len(lines))) - {i for i, _, _ in todo}:  # empty lines: no model call
            results[i] = TranslationResult("", [], 0.0, [Candidate("", 0.0, 0.0)], None, [], [])
        rng = np.random.default_rng(self.config.seed)  # one stream over all batches (sampling)
        size, replace = self.config.batch_size, self.config.replace_unk
        chunks = [todo[start : start + size] for start in range(0, len(todo), size)]

        def decode(chunk: list[tuple[int, list[int], list[str]]]) -> list[list[Hypothesis]]:
            src, lengths = pad_batch([ids for _, ids, _ in chunk], self.src_tokenizer.pad_id)
            return self._decode(src, lengths, rng, return_attention or replace)

        workers = 1 if self.config.strategy == "sample" else min(self.workers, len(chunks))
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="seqkit-decode") as pool:
                decoded = list(pool.map(decode, chunks))  # in batch order: the same results as one worker
        else:
            decoded = [decode(chunk) for chunk in chunks]
        for chunk, batch_hyps in zip(chunks, decoded):
            for (i, ids, warnings), hyps in zip(chunk, batch_hyps):
                words = self._source_words(lines[i], len(ids)) if replace else None
                results[i] = self._result(hyps, ids, warnings, return_attention, words, oov.get(i, []))
        return results  # type: ignore[return-value]  # every slot is filled above

    def _decode(self, src: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, return_attention: bool) -> list[list[Hypothesis]]:
        cfg, tgt = self.config, self.tgt_tokenizer
        common = {"bos_id": tgt.bos_id, "eos_id": tgt.eos_id, "max_len": cfg.max_lengths(lengths)}
        if cfg.strategy == "greedy":
            hyps = greedy(self.fn, src, lengths, min_len=cfg.min_len, return_attention=return_attention, **common)
            return [[h] for h in hyps]
        if cfg.strategy == "beam":
            return beam_search(
                self.fn, src, lengths, beam_size=cfg.beam_size, min_len=cfg.min_len, length_penalty=cfg.length_penalty,
                n_best=cfg.n_best, no_repeat_ngram_size=cfg.no_repeat_ngram_size, return_attention=return_attention,
                length_norm=cfg.length_norm, coverage_penalty=cfg.coverage_penalty, coverage_beta=cfg.coverage_beta,
                ignore_when_blocking=self.ignore_ids, **common,
            )
        hyps = sample(self.fn, src, lengths, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, seed=rng, **common)
        return [[h] for h in hyps]

    def _source_words(self, line: str, n_ids: int) -> list[str]:
        """The source tokens as strings, aligned with the encoded ids (eos excluded)."""
        return self.src_tokenizer.tokenize(clean_text(line, "source"))[: n_ids - 1]

    def _result(self, hyps: list[Hypothesis], src_ids: list[int], warnings: list[str], return_attention: bool,
                src_words: list[str] | None = None, oov_words: list[str] | None = None) -> TranslationResult:
        def decode(tokens: list[int], attention: np.ndarray | None) -> str:
            if src_words is None and not self.copy_oov:
                return self.tgt_tokenizer.decode(tokens)
            if src_words is not None and attention is None:
                raise ModelError("search.replace_unk: the model returns no attention to find the source word with")
            return decode_tokens(tokens, self.tgt_tokenizer, oov_words=oov_words or (), attention=attention,
                                 src_words=src_words)

        if not hyps:  # every row scored NaN: beam search had nothing to keep
            raise ModelError("the model produced no hypothesis (its scores are not finite: NaN or infinite weights?)")
        best = hyps[0]
        return TranslationResult(
            text=decode(best.tokens, best.attention),
            tokens=best.tokens,
            score=best.score,
            log_prob=best.log_prob,
            n_best=[Candidate(decode(h.tokens, h.attention), h.log_prob, h.score) for h in hyps],
            attention=best.attention if return_attention else None,
            src_tokens=src_ids,
            warnings=warnings,
        )


def pharaoh_alignment(result: TranslationResult) -> str:
    """``j-t`` pairs (Pharaoh format, 0-based): for each output token t of the best hypothesis,
    the source token j its step attended to most. Indices count the model's tokens (subword
    pieces for sentencepiece); the source eos and the output eos take no part."""
    if not result.tokens:
        return ""
    if result.attention is None:
        raise ModelError("--alignments: the model returns no attention (its decoder has attention: none)")
    n_src = max(len(result.src_tokens) - 1, 1)  # without the source eos
    best = np.argmax(result.attention[: len(result.tokens), :n_src], axis=1)  # (T,) first of ties
    return " ".join(f"{int(j)}-{t}" for t, j in enumerate(best))


def token_id(tokenizer: Any, token: str, key: str) -> int:
    """The one target id that ``token`` encodes to; ModelError naming ``key`` otherwise."""
    ids = tokenizer.encode(token)
    if len(ids) != 1 or ids[0] == getattr(tokenizer, "unk_id", None):
        found = "the unknown token" if len(ids) == 1 else f"{len(ids)} tokens"
        raise ModelError(f"{key}: {token!r} is not one token of the target vocabulary (it encodes to {found})")
    return int(ids[0])


def replace_unknowns(tokens: Sequence[int], attention: np.ndarray, src_words: Sequence[str], tokenizer: VocabTokenizer) -> str:
    """Decode ``tokens`` with every unk replaced by the source word its step attended to most.

    attention (len(tokens) + 1, S) as search records it (S counts the source eos); an unk whose
    strongest attention is on eos stays unk. Skips pad/bos/eos like ``decode``.
    """
    return decode_tokens(tokens, tokenizer, attention=attention, src_words=src_words)


def default_start_ids(tokenizer: Any) -> list[int]:
    """What a language model is fed for an empty prompt: the newline id if "\\n" is one known
    token (a char LM trained on a contiguous stream without bos has seen it between lines),
    else ``[bos_id]``."""
    ids = tokenizer.encode("\n")
    return ids if len(ids) == 1 and ids[0] != tokenizer.unk_id else [tokenizer.bos_id]


class Generator:
    """Prompted sampling from a language model (a StepFunction whose source is empty).

    Language models are trained on a contiguous token stream without bos, so the prompt's ids
    are fed as they are; an empty prompt feeds ``start_ids`` (default: :func:`default_start_ids`).
    Arguments left None take their value from ``config`` (max_tokens from ``config.max_len``).
    """

    def __init__(self, fn: StepFunction, tokenizer: Any, config: SearchConfig, *, start_ids: Sequence[int] | None = None):
        self.fn, self.tokenizer, self.config = fn, tokenizer, config
        self.start_ids = list(start_ids) if start_ids is not None else default_start_ids(tokenizer)
        if not self.start_ids:
            raise ValueError("start_ids must hold at least one id")

    def generate_ids(
        self,
        prompt: str = "",
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> list[int]:
        """The generated ids only (the prompt excluded)."""
        given = {"max_len": max_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        try:  # the same bounds as the recipe's search section (max_tokens: search.max_len's)
            cfg = self.config.model_validate({**self.config.model_dump(), **{k: v for k, v in given.items() if v is not None}})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = {"max_len": "max_tokens"}.get(str(first["loc"][0]), str(first["loc"][0]))
            raise InputError(f"{name}: {first['msg']} (got {shorten(first.get('input'))})") from None
        prompt = clean_prompt(prompt)
        prefix = self.tokenizer.encode(prompt) if prompt else self.start_ids
        if self.tokenizer.unk_id in prefix:
            log.warning("prompt holds characters/tokens outside the vocabulary; they are fed as unk")
        hyp = sample(
            self.fn, np.zeros((1, 0), dtype=np.int64), np.zeros(1, dtype=np.int64),
            bos_id=self.tokenizer.bos_id, eos_id=self.tokenizer.eos_id,
            max_len=cfg.max_len, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, seed=cfg.seed,
            prefix=[prefix], stop_at_eos=stop_at_eos,
        )[0]
        return hyp.tokens

    def generate(
        self,
        prompt: str = "",
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop_at_eos: bool = True,
    ) -> str:
        """prompt + decoded continuation (exact for character tokenizers; word/subword
        tokenizers may need a separator the continuation does not start with)."""
        ids = self.generate_ids(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                seed=seed, stop_at_eos=stop_at_eos)
        return prompt + self.tokenizer.decode(ids)


def clean_prompt(prompt: Any) -> str:
    """A prompt is validated like a line but kept verbatim: newlines and spaces are content."""
    clean_text(prompt, "prompt")
    return prompt


# -- classification -------------------------------------------------------------------------------
# (src (B, S) int64, lengths (B,) int64) -> class probabilities (B, C) float32; torch or onnxruntime.
ProbsFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class ClassificationResult:
    """One labelled line: the most probable label and its probability (0-1).

    ``probs`` (C,) float32 holds every label's probability, in label-id order. An empty input
    line gives label "", probability 0.0 and ``probs`` None, with no model call.
    """

    label: str
    probability: float
    probs: np.ndarray | None
    src_tokens: list[int]
    warnings: list[str] = field(default_factory=list)


class TextClassifier:
    """Batched text-to-label prediction over a :data:`ProbsFunction` (torch or onnxruntime).

    Lines are cleaned and encoded exactly like :class:`Translator` sources (and like training
    examples): :func:`clean_text`, then :func:`encode_source`, truncated with a warning.
    """

    def __init__(self, probs_fn: ProbsFunction, tokenizer: Any, labels: Sequence[str], *, max_src_len: int,
                 batch_size: int = 64):
        if max_src_len < 2:
            raise ValueError(f"max_src_len must be >= 2 (one token and eos), got {max_src_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.probs_fn, self.tokenizer, self.labels = probs_fn, tokenizer, list(labels)
        self.max_src_len, self.batch_size = max_src_len, batch_size

    def classify(self, lines: str | Sequence[str], *,
                 first_line: int = 1) -> ClassificationResult | list[ClassificationResult]:
        """One result per line, in input order (one str: its result alone). Batches hold lines
        of similar length. ``first_line`` numbers the lines in warnings and errors."""
        lines, single = as_lines(lines)
        if single:
            return self.classify(lines, first_line=first_line)[0]
        results: list[ClassificationResult | None] = [None] * len(lines)
        todo = encode_lines(lines, self.tokenizer, self.max_src_len, first_line)
        for i in set(range(len(lines))) - {i for i, _, _ in todo}:  # empty lines: no model call
            results[i] = ClassificationResult("", 0.0, None, [])
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            src, lengths = pad_batch([ids for _, ids, _ in chunk], self.tokenizer.pad_id)
            probs = self.probs_fn(src, lengths)  # (B, C)
            if probs.shape != (len(chunk), len(self.labels)):
                raise ModelError(f"the model gave probabilities of shape {probs.shape}; expected "
                                 f"({len(chunk)}, {len(self.labels)}) for {len(self.labels)} labels")
            for (i, ids, warnings), row in zip(chunk, probs):
                best = int(row.argmax())
                results[i] = ClassificationResult(self.labels[best], float(row[best]), row, ids, warnings)
        return results  # type: ignore[return-value]  # every slot is filled above
