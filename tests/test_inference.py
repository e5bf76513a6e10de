"""Translator and Generator over toy numpy step functions and the real char tokenizer."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from seqkit.batching import encode_source, pad_batch
from seqkit.errors import InputError
from seqkit.inference import (
    Generator,
    Translator,
    clean_text,
    default_start_ids,
)
from seqkit.search import SearchConfig
from seqkit.tokenizers.char import CharTokenizer

TEXTS = ["the cat sat on the mat", "a dog\tran", "hello world\n"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> CharTokenizer:
    return CharTokenizer.train(TEXTS, CharTokenizer.Config(), Path(tmp_path_factory.mktemp("tok")))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class CopyStep:
    """Emits the source token at position t (the source ends with eos, so the copy does too).

    Attention is one-hot on position t. Records the batch size of every start() call.
    """

    def __init__(self, vocab: int):
        self.vocab = vocab
        self.starts: list[int] = []

    def start(self, src, lengths):
        self.starts.append(len(src))
        return (src, lengths), np.zeros(len(src), dtype=np.int64)

    def step(self, y_prev, memory, state):
        src, lengths = memory
        pos = np.minimum(state, lengths - 1)
        target = src[np.arange(len(src)), pos]
        logits = np.zeros((len(src), self.vocab))
        logits[np.arange(len(src)), target] = 8.0
        att = (np.arange(src.shape[1])[None, :] == pos[:, None]).astype(np.float32)
        return log_softmax(logits).astype(np.float32), att, state + 1

    def select_memory(self, memory, index):
        return tuple(m[index] for m in memory)

    def select_state(self, state, index):
        return state[index]


class CycleLM:
    """Language model over an empty source: after id i comes the next non-special id (cyclic)."""

    def __init__(self, vocab: int):
        self.vocab = vocab

    def start(self, src, lengths):
        assert src.shape[1] == 0
        return None, np.zeros(len(src), dtype=np.int64)

    def step(self, y_prev, memory, state):
        nxt = np.where(y_prev < 4, 4, 4 + (y_prev - 4 + 1) % (self.vocab - 4))
        logits = np.zeros((len(y_prev), self.vocab))
        logits[np.arange(len(y_prev)), nxt] = 6.0
        return log_softmax(logits).astype(np.float32), None, state + 1

    def select_memory(self, memory, index):
        return memory

    def select_state(self, state, index):
        return state[index]


def translator(tok, max_src_len: int = 64, **search) -> Translator:
    return Translator(CopyStep(tok.vocab_size), tok, tok, SearchConfig(**search), max_src_len=max_src_len)


def test_encode_source_appends_eos_and_truncates(tok):
    ids, truncated = encode_source(tok, "cat", 10)
    assert ids == tok.encode("cat") + [tok.eos_id] and not truncated
    ids, truncated = encode_source(tok, "the cat", 4)
    assert ids == tok.encode("the") + [tok.eos_id] and truncated
    assert encode_source(tok, "abc", 4) == (tok.encode("abc") + [tok.eos_id], False)


def test_pad_batch():
    src, lengths = pad_batch([[5, 6, 3], [7, 3]], pad_id=0)
    np.testing.assert_array_equal(src, [[5, 6, 3], [7, 3, 0]])
    np.testing.assert_array_equal(lengths, [3, 2])


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_translate_copies_in_input_order_across_batches(tok, strategy):
    lines = ["the cat", "a", "hello world", "sat on the mat", "dog", "ran"]
    tr = translator(tok, strategy=strategy, batch_size=4, seed=0, top_k=1)
    results = tr.translate(lines)
    assert [r.text for r in results] == lines
    assert tr.fn.starts == [4, 2]  # sorted by length into batches of 4
    for line, r in zip(lines, results):
        assert r.src_tokens == tok.encode(line) + [tok.eos_id]
        assert r.tokens == tok.encode(line) and r.warnings == []
        assert r.n_best[0] == (line, r.log_prob, r.score)


class ThreadedCopyStep(CopyStep):
    """CopyStep that records which threads ran start() and lets each start wait for another
    batch's: with two workers, two batches must be in flight at once for any start to return."""

    def __init__(self, vocab: int, parties: int):
        super().__init__(vocab)
        self.threads: set[str] = set()
        self.barrier = threading.Barrier(parties, timeout=30)

    def start(self, src, lengths):
        self.threads.add(threading.current_thread().name)
        if len(self.threads) <= self.barrier.parties:
            self.barrier.wait()  # raises BrokenBarrierError after 30 s if the batches ran one by one
        return super().start(src, lengths)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_workers_decode_batches_at_once_with_the_same_results(tok, strategy):
    lines = ["the cat", "a", "hello world", "sat on the mat", "dog", "ran", "on the", "mat"]
    one = translator(tok, strategy=strategy, batch_size=2, beam_size=3, n_best=2)
    fn = ThreadedCopyStep(tok.vocab_size, parties=2)
    two = Translator(fn, tok, tok, one.config, max_src_len=64, workers=2)
    first, second = one.translate(lines), two.translate(lines)
    assert [(r.text, r.tokens, r.score, r.n_best) for r in second] == [(r.text, r.tokens, r.score, r.n_best) for r in first]
    assert [r.text for r in second] == lines
    assert len(fn.threads) == 2 and all(name.startswith("seqkit-decode") for name in fn.threads)


def test_workers_pass_a_batch_error_through_and_sampling_uses_one(tok):
    class Failing(CopyStep):
        def start(self, src, lengths):
            if len(src) == 1:
                raise RuntimeError("batch of one failed")
            return super().start(src, lengths)

    tr = Translator(Failing(tok.vocab_size), tok, tok, SearchConfig(strategy="greedy", batch_size=2), workers=3)
    with pytest.raises(RuntimeError, match="batch of one failed"):
        tr.translate(["the cat", "sat", "a"])
    sampled = Translator(CopyStep(tok.vocab_size), tok, tok, SearchConfig(strategy="sample", batch_size=1, seed=3, top_k=1),
                         workers=2)
    assert [r.text for r in sampled.translate(["dog", "cat"])] == ["dog", "cat"]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Translator(CopyStep(tok.vocab_size), tok, tok, SearchConfig(), workers=0)


def test_n_best_and_scores(tok):
    results = translator(tok, beam_size=4, n_best=3).translate(["the mat", "dog"])
    for r in results:
        assert len(r.n_best) == 3
        scores = [c.score for c in r.n_best]
        assert scores == sorted(scores, reverse=True) and r.n_best[0][0] == r.text
        assert r.score < 0


def test_empty_lines_skip_the_model(tok):
    tr = translator(tok)
    results = tr.translate(["", "cat", "   ", "\x00"])
    assert [r.text for r in results] == ["", "cat", "", ""]
    assert results[0].tokens == [] and results[0].score == 0.0
    assert tr.fn.starts == [1]
    tr = translator(tok)
    assert [r.text for r in tr.translate(["", ""])] == ["", ""] and tr.fn.starts == []


def test_long_lines_are_truncated_with_a_warning(tok, caplog):
    with caplog.at_level(logging.WARNING, logger="seqkit"):
        results = translator(tok, max_src_len=4).translate(["cat", "the cat sat"])
    assert results[0].text == "cat" and results[0].warnings == []
    assert results[1].text == "the" and results[1].src_tokens == tok.encode("the") + [tok.eos_id]
    assert len(results[1].warnings) == 1 and "line 2" in results[1].warnings[0]
    assert "line 2" in caplog.text and "truncated" in caplog.text


def test_text_cleaning_and_bad_input(tok):
    assert clean_text("  a\x00b\rc\td\x85 ", "line 1") == "a b c\td"
    assert translator(tok).translate(["a\x07cat"])[0].text == "a cat"
    with pytest.raises(InputError, match="line 2: expected text"):
        translator(tok).translate(["cat", None])  # type: ignore[list-item]
    with pytest.raises(InputError, match="line 1: not valid Unicode"):
        translator(tok).translate(["bad \ud800 surrogate"])


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_attention_is_returned_on_request(tok, strategy):
    tr = translator(tok, strategy=strategy, beam_size=2)
    r = tr.translate(["the cat", "a"], return_attention=True)
    for res in r:
        assert res.attention.shape == (len(res.tokens) + 1, len(res.src_tokens))
        np.testing.assert_array_equal(res.attention.argmax(axis=1), np.arange(len(res.tokens) + 1))
    assert tr.translate(["the cat"])[0].attention is None


def test_sampling_is_reproducible_with_seed(tok):
    lines = ["the cat sat", "hello", "dog ran"]
    a = translator(tok, strategy="sample", seed=3, temperature=20.0).translate(lines)
    b = translator(tok, strategy="sample", seed=3, temperature=20.0).translate(lines)
    c = translator(tok, strategy="sample", seed=4, temperature=20.0).translate(lines)
    assert [r.text for r in a] == [r.text for r in b] != [r.text for r in c]


def test_max_len_from_config_limits_output(tok):
    cfg = dict(max_len_ratio=0.0, max_len_offset=2)
    assert [r.text for r in translator(tok, strategy="greedy", **cfg).translate(["hello", "a"])] == ["he", "a"]


def expected_cycle(tok, last: int, n: int) -> list[int]:
    out = []
    for _ in range(n):
        last = 4 if last < 4 else 4 + (last - 4 + 1) % (tok.vocab_size - 4)
        out.append(last)
    return out


def test_generator_continues_prompt(tok):
    gen = Generator(CycleLM(tok.vocab_size), tok, SearchConfig(top_k=1, max_len=7))
    prompt = "the c"
    cont = expected_cycle(tok, tok.encode(prompt)[-1], 5)
    assert gen.generate(prompt, max_tokens=5) == prompt + tok.decode(cont)
    assert gen.generate_ids(prompt) == expected_cycle(tok, tok.encode(prompt)[-1], 7)
    # empty prompt: fed the newline id, which the char vocabulary holds
    assert default_start_ids(tok) == tok.encode("\n")
    assert gen.generate_ids("", max_tokens=3) == expected_cycle(tok, tok.encode("\n")[0], 3)
    bos_gen = Generator(CycleLM(tok.vocab_size), tok, SearchConfig(top_k=1), start_ids=[tok.bos_id])
    assert bos_gen.generate_ids("", max_tokens=2) == [4, 5]


def test_generator_sampling_seeded(tok):
    gen = Generator(CycleLM(tok.vocab_size), tok, SearchConfig(temperature=50.0, seed=1))
    assert gen.generate("a", max_tokens=20) == gen.generate("a", max_tokens=20)
    assert gen.generate("a", max_tokens=20, seed=2) != gen.generate("a", max_tokens=20, seed=3)
    with pytest.raises(InputError, match="prompt"):
        gen.generate(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_replace_unk_takes_the_attended_source_word(tok, strategy):
    lines = ["the quiz", "zoo"]  # q, u, i, z are outside the char vocabulary: unk in and out
    plain = translator(tok, strategy=strategy, beam_size=2).translate(lines)
    assert [r.text for r in plain] == ["the \u2047\u2047\u2047\u2047", "\u2047oo"]
    replaced = translator(tok, strategy=strategy, beam_size=2, n_best=2, replace_unk=True).translate(lines)
    assert [r.text for r in replaced] == lines  # CopyStep attends to the position it copies
    assert replaced[0].n_best[0][0] == "the quiz" and replaced[0].attention is None  # not asked for
    assert [r.tokens for r in replaced] == [r.tokens for r in plain]  # ids unchanged: text only


def test_replace_unk_configuration_errors(tok):
    from seqkit.errors import ModelError

    with pytest.raises(ValueError, match="replace_unk needs the attention"):
        SearchConfig(strategy="sample", replace_unk=True)

    class NoVocab:  # a tokenizer without tokenize/detokenize (like sentencepiece)
        pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    with pytest.raises(ModelError, match="search.replace_unk: needs tokenizers .*NoVocab"):
        Translator(CopyStep(10), NoVocab(), tok, SearchConfig(replace_unk=True), max_src_len=8)
