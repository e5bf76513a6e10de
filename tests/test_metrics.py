"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from seqkit.errors import DataError
from seqkit.metrics import (
    accuracy,
    bits_per_char,
    bleu,
    chrf,
    macro_f1,
    perplexity,
    rouge,
    file_metrics,
)

REFS = ["the cat is on the mat", "there is a dog in the garden"]


def test_bleu_identical_is_100_and_disjoint_is_0():
    result = bleu(REFS, REFS)
    assert result.name == "bleu" and result.score == pytest.approx(100.0)
    assert "tok:13a" in result.signature and "case:mixed" in result.signature
    assert bleu(["xyz qqq", "www"], REFS).score == pytest.approx(0.0)


def test_bleu_and_chrf_match_sacrebleu_defaults():
    hyps = ["the cat sat on the mat", "a dog is in the garden"]
    assert bleu(hyps, REFS).score == pytest.approx(sacrebleu.corpus_bleu(hyps, [REFS]).score)
    assert chrf(hyps, REFS).score == pytest.approx(sacrebleu.corpus_chrf(hyps, [REFS]).score)
    assert chrf(REFS, REFS).score == pytest.approx(100.0) and "nc:6" in chrf(REFS, REFS).signature
    # cased: changing case lowers the score
    assert bleu([h.upper() for h in REFS], REFS).score < 1.0


def test_rouge_hand_computed():
    # Stemmed tokens: hyp [the cat sat], ref [the cat was sit]. Unigram overlap 2: P 2/3, R 2/4
    # -> F 4/7. Bigrams: 1 shared of 2 and 3 -> F 2 * (1/2 * 1/3) / (1/2 + 1/3) = 0.4. LCS 2 -> 4/7.
    scores = rouge(["the cat sat"], ["the cat was sitting"])
    assert scores["rouge1"] == pytest.approx(100 * 4 / 7)
    assert scores["rouge2"] == pytest.approx(40.0)
    assert scores["rougeL"] == pytest.approx(100 * 4 / 7)
    both = rouge(["the cat sat", "a b"], ["the cat was sitting", "a b"])
    assert both["rouge2"] == pytest.approx((40.0 + 100.0) / 2)


def test_file_metrics_per_set():
    assert set(file_metrics("bleu_chrf", REFS, [REFS])) == {"bleu", "bleu_signature", "chrf", "chrf_signature"}
    assert file_metrics("rouge", REFS, [REFS]) == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    assert file_metrics("accuracy", ["a", "b"], [["a", "c"]]) == {"accuracy": 0.5, "macro_f1": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="perplexity"):
        file_metrics("perplexity", REFS, [REFS])


def test_length_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="bleu: 1 hypotheses but 2 references"):
        bleu(["a"], REFS)
    with pytest.raises(DataError):
        rouge(["a"], REFS)
    with pytest.raises(DataError):
        macro_f1([1], [1, 2])


def test_perplexity_and_bits_per_char():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert perplexity(1e6) == math.inf
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert bits_per_char(1.0) == pytest.approx(1.4426950408889634)


def test_accuracy_and_macro_f1_hand_computed():
    labels = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", "b", "c"]
    assert accuracy(preds, labels) == pytest.approx(0.8)
    # a: 2*1/(1+2) = 2/3; b: 2*2/(3+2) = 4/5; c: 2*1/(1+1) = 1
    assert macro_f1(preds, labels) == pytest.approx((2 / 3 + 4 / 5 + 1) / 3)
    # a class only predicted counts with F1 0
    assert macro_f1(["a", "b"], ["a", "a"]) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1([], []) == 0.0 and accuracy([], []) == 0.0
    assert macro_f1([0, 1, 1], [0, 1, 1]) == 1.0


def test_repeated_trigrams_count_every_occurrence_after_the_first():
    from seqkit.metrics import repeated_ngrams

    assert repeated_ngrams(["a b c a b c", "a b c", ""]) == 1 / 3  # (a b c) once more; (b c a), (c a b) once
    assert repeated_ngrams(["x x x x x"]) == 2  # (x x x) three times
    assert repeated_ngrams([]) == 0
