"""Evaluation metrics: BLEU and chrF (sacrebleu), ROUGE (rouge-score), perplexity, bits/char,
accuracy and macro-F1.

Scales: BLEU, chrF and ROUGE are reported in 0-100 (sacrebleu's scale; ROUGE F1 x 100 to match),
accuracy and macro-F1 in 0-1. sacrebleu and rouge-score are training-side dependencies
(``seqkit[train]``), imported on first use so that perplexity and classification metrics work
without them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Sequence

from seqkit.errors import DataError

# The metric sets of `seqkit evaluate --src/--ref` (file_metrics), as seqkit.tasks.TaskEntry names them.
FILE_METRICS = ("bleu_chrf", "rouge", "accuracy")


@dataclass(frozen=True)
class MetricResult:
    """A corpus score and the sacrebleu signature that makes it reproducible."""

    name: str
    score: float
    signature: str


def _check_pairs(name: str, hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise DataError(f"{name}: {len(hyps)} hypotheses but {len(refs)} references")


def _ref_streams(name: str, hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """One reference per hypothesis (a list of str), or several: a list of such lists."""
    streams = [list(refs)] if not refs or isinstance(refs[0], str) else [list(r) for r in refs]
    for stream in streams:
        _check_pairs(name, hyps, stream)
    return streams


def bleu(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> MetricResult:
    """Corpus BLEU with sacrebleu's defaults (13a tokenization, cased, exp smoothing), 0-100;
    ``refs``: one reference per hypothesis, or a list of reference streams (multi-reference)."""
    from sacrebleu.metrics import BLEU

    streams = _ref_streams("bleu", hyps, refs)
    metric = BLEU()
    result = metric.corpus_score(list(hyps), streams)
    return MetricResult("bleu", float(result.score), str(metric.get_signature()))


def chrf(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> MetricResult:
    """Corpus chrF (character 6-grams, beta 2; sacrebleu defaults), 0-100; ``refs`` as for bleu."""
    from sacrebleu.metrics import CHRF

    streams = _ref_streams("chrf", hyps, refs)
    metric = CHRF()
    result = metric.corpus_score(list(hyps), streams)
    return MetricResult("chrf", float(result.score), str(metric.get_signature()))


def rouge(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 over sentence pairs, x 100 (rouge-score, Porter stemmer).

    rouge-score's tokenizer lowercases and keeps only [a-z0-9] runs: it suits English; text in
    other scripts scores 0. An empty corpus scores 0.
    """
    from rouge_score import rouge_scorer

    _check_pairs("rouge", hyps, refs)
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(ref, hyp)  # (target, prediction)
        for key in keys:
            totals[key] += scores[key].fmeasure
    n = max(len(hyps), 1)
    return {key: 100.0 * total / n for key, total in totals.items()}


def repeated_ngrams(hyps: Sequence[str], n: int = 3) -> float:
    """Repetition: mean number of repeated word n-grams per hypothesis (each occurrence of an
    n-gram after its first counts once; "a b c a b c" has 1 repeated trigram, "a b c"). Split
    on whitespace."""
    total = 0
    for hyp in hyps:
        words = hyp.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams) - len(set(grams))
    return total / max(len(hyps), 1)


def file_metrics(kind: str, hyps: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float | str]:
    """The metric set ``kind`` (one of FILE_METRICS) of ``hyps`` against reference streams (one
    per --ref file; only bleu_chrf reads more than the first), with sacrebleu's signatures."""
    if kind == "accuracy":
        return {"accuracy": accuracy(hyps, references[0]), "macro_f1": macro_f1(hyps, references[0])}
    if kind == "rouge":
        return dict(rouge(hyps, references[0]))
    if kind == "bleu_chrf":
        b, c = bleu(hyps, references), chrf(hyps, references)
        return {"bleu": round(b.score, 2), "bleu_signature": b.signature, "chrf": round(c.score, 2),
                "chrf_signature": c.signature}
    raise ValueError(f"unknown metric set '{kind}'; known: {', '.join(FILE_METRICS)}")


def perplexity(nll_per_token: float) -> float:
    """exp(mean negative log-likelihood in nats per token); inf when it overflows."""
    try:
        return math.exp(nll_per_token)
    except OverflowError:
        return math.inf


def bits_per_char(nats_per_char: float) -> float:
    """Mean negative log-likelihood per character converted from nats to bits."""
    return nats_per_char / math.log(2)


def accuracy(preds: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Fraction of predictions equal to their label (0-1); 0.0 for no examples."""
    _check_pairs("accuracy", preds, labels)  # type: ignore[arg-type]
    if not labels:
        return 0.0
    return sum(p == y for p, y in zip(preds, labels)) / len(labels)


def macro_f1(preds: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over every class seen in labels or predictions (0-1).

    A class with no true positive scores 0 (sklearn's ``zero_division=0``); no examples -> 0.0.
    """
    _check_pairs("macro_f1", preds, labels)  # type: ignore[arg-type]
    classes = set(labels) | set(preds)
    if not classes:
        return 0.0
    tp = Counter(y for p, y in zip(preds, labels) if p == y)
    n_pred, n_true = Counter(preds), Counter(labels)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + actual)
    return sum(2 * tp[c] / (n_pred[c] + n_true[c]) for c in classes) / len(classes)
