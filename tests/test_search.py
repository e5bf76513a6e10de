"""Search algorithms against a deterministic numpy step function (no torch)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from seqkit.beam import beam_search
from seqkit.search import (
    Hypothesis,
    SearchConfig,
    StepFunction,
    TopKStepFunction,
    block_ngrams,
    draw,
    greedy,
    length_penalty_factor,
    sample,
    top_k_rows,
)

BOS, EOS = 2, 3


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class ToyStep:
    """log p(y_t | y_<t, src) = log_softmax(table[y_prev] + src_bias + time[t]): exact and cheap.

    memory = (bias (B, V), src (B, S), mask (B, S)); state = step counter (B,).
    Attention is a softmax over the real source positions. Counts calls and rows per step.
    """

    def __init__(self, vocab: int = 6, seed: int = 0, scale: float = 2.0, table: np.ndarray | None = None):
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.table = table if table is not None else rng.normal(size=(vocab, vocab)) * scale
        self.src_emb = rng.normal(size=(16, vocab)) * (0.0 if table is not None else 1.0)
        self.time = rng.normal(size=(64, vocab)) * (0.0 if table is not None else 0.5)
        self.att = rng.normal(size=(vocab, 16))
        self.calls: list[int] = []

    def start(self, src, lengths):
        mask = np.arange(src.shape[1])[None, :] < lengths[:, None]
        bias = (self.src_emb[src] * mask[..., None]).sum(axis=1) / np.maximum(lengths, 1)[:, None]
        return (bias, src, mask), np.zeros(src.shape[0], dtype=np.int64)

    def step(self, y_prev, memory, state):
        bias, src, mask = memory
        self.calls.append(len(y_prev))
        logits = self.table[y_prev] + bias + self.time[np.minimum(state, 63)]
        att = np.where(mask, self.att[y_prev[:, None], src], -np.inf)
        att = np.exp(log_softmax(att)) if src.shape[1] else None
        return log_softmax(logits).astype(np.float32), att, state + 1

    def select_memory(self, memory, index):
        return tuple(m[index] for m in memory)

    def select_state(self, state, index):
        return state[index]

    def sequence_log_prob(self, src_row: np.ndarray, tokens: list[int]) -> float:
        """Exact log-prob of tokens + eos for one sentence, by stepping one row."""
        memory, state = self.start(src_row[None], np.array([len(src_row)]))
        total, y = 0.0, BOS
        for tok in list(tokens) + [EOS]:
            logp, _, state = self.step(np.array([y]), memory, state)
            total += float(logp[0, tok])
            y = tok
        return total


class ToyTopK(ToyStep):
    """ToyStep that also selects each row's best k itself (TopKStepFunction), by the reference."""

    def __init__(self, *args, ties: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if ties:  # coarse logits: equal log-probs within a row, and equal candidate scores
            self.table, self.src_emb, self.time = (np.round(a) for a in (self.table, self.src_emb, self.time))
        self.k_asked: list[int] = []

    def step_top_k(self, y_prev, memory, state, k, eos_id):
        logp, att, state = self.step(y_prev, memory, state)
        self.k_asked.append(k)
        return top_k_rows(logp, k, eos_id), att, state


def batch(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    src = np.zeros((len(rows), max(lengths.max(), 0)), dtype=np.int64)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    return src, lengths


SRC = [[4, 5, 1, 3], [5, 3], [1, 4, 4, 5, 0, 3], [4, 3]]


def brute_force(fn: ToyStep, src_row, max_len: int, alpha: float) -> list[tuple[float, list[int]]]:
    """Every hypothesis up to max_len tokens (eos forced after), best normalized score first."""
    non_eos = [v for v in range(fn.vocab) if v != EOS]
    out = []
    for n in range(max_len + 1):
        for toks in itertools.product(non_eos, repeat=n):
            lp = fn.sequence_log_prob(np.array(src_row), list(toks))
            out.append((lp / float(length_penalty_factor(n + 1, alpha)), list(toks)))
    return sorted(out, key=lambda x: -x[0])


def test_toy_step_satisfies_protocol():
    assert isinstance(ToyStep(), StepFunction)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_exhaustive_beam_finds_brute_force_optimum(alpha):
    fn = ToyStep(vocab=5, seed=3, scale=1.0)
    max_len = 3  # 4**0 + ... + 4**3 = 85 hypotheses; beam 100 never prunes
    src, lengths = batch(SRC[:2])
    results = beam_search(fn, src, lengths, beam_size=100, bos_id=BOS, eos_id=EOS, max_len=max_len,
                          length_penalty=alpha, n_best=3)
    for i, hyps in enumerate(results):
        expected = brute_force(fn, SRC[i], max_len, alpha)[:3]
        assert [h.tokens for h in hyps] == [toks for _, toks in expected]
        np.testing.assert_allclose([h.score for h in hyps], [s for s, _ in expected], rtol=1e-5)


def test_beam_one_equals_greedy():
    for seed in range(5):
        fn = ToyStep(seed=seed)
        src, lengths = batch(SRC)
        limits = np.array([3, 8, 12, 1])
        g = greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=limits)
        b = beam_search(fn, src, lengths, beam_size=1, bos_id=BOS, eos_id=EOS, max_len=limits)
        assert [h.tokens for h in g] == [hs[0].tokens for hs in b]
        np.testing.assert_allclose([h.log_prob for h in g], [hs[0].log_prob for hs in b], rtol=1e-6)


def test_greedy_log_prob_is_exact_and_matches_argmax():
    fn = ToyStep(seed=1)
    src, lengths = batch(SRC)
    for i, hyp in enumerate(greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=10)):
        assert hyp.log_prob == pytest.approx(fn.sequence_log_prob(np.array(SRC[i]), hyp.tokens), rel=1e-6)
        assert hyp.score == hyp.log_prob
        assert EOS not in hyp.tokens and len(hyp.tokens) <= 10


def test_n_best_sorted_distinct_and_exact_scores():
    fn = ToyStep(seed=2)
    src, lengths = batch(SRC)
    results = beam_search(fn, src, lengths, beam_size=5, bos_id=BOS, eos_id=EOS, max_len=10, n_best=4)
    for i, hyps in enumerate(results):
        assert len(hyps) == 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4
        for h in hyps:
            exact = fn.sequence_log_prob(np.array(SRC[i]), h.tokens)
            assert h.log_prob == pytest.approx(exact, rel=1e-5)
            assert h.score == pytest.approx(exact / float(length_penalty_factor(len(h.tokens) + 1, 1.0)), rel=1e-5)


def test_beam_is_batched_one_step_call_per_step():
    fn = ToyStep(seed=4)
    src, lengths = batch(SRC)
    beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=7)
    assert len(fn.calls) <= 8
    assert fn.calls[0] == len(SRC) * 3
    assert all(n % 3 == 0 for n in fn.calls) and fn.calls == sorted(fn.calls, reverse=True)


def test_batched_equals_one_sentence_at_a_time():
    fn = ToyStep(seed=5)
    src, lengths = batch(SRC)
    limits = np.array([5, 9, 3, 11])
    together = beam_search(fn, src, lengths, beam_size=4, bos_id=BOS, eos_id=EOS, max_len=limits, n_best=2,
                           no_repeat_ngram_size=2, min_len=1, return_attention=True)
    g_together = greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=limits)
    for i, row in enumerate(SRC):
        s, n = batch([row])
        alone = beam_search(fn, s, n, beam_size=4, bos_id=BOS, eos_id=EOS, max_len=limits[i], n_best=2,
                            no_repeat_ngram_size=2, min_len=1, return_attention=True)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        np.testing.assert_allclose([h.score for h in alone], [h.score for h in together[i]], rtol=1e-6)
        for a, b in zip(alone, together[i]):
            np.testing.assert_allclose(a.attention, b.attention, rtol=1e-6)
        assert greedy(fn, s, n, bos_id=BOS, eos_id=EOS, max_len=limits[i])[0].tokens == g_together[i].tokens


def test_attention_shapes_and_rows_sum_to_one():
    fn = ToyStep(seed=6)
    src, lengths = batch(SRC)
    for hyp, n in zip(greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=6, return_attention=True), lengths):
        assert hyp.attention.shape == (len(hyp.tokens) + 1, n)
        np.testing.assert_allclose(hyp.attention.sum(axis=1), 1.0, rtol=1e-5)
    beams = beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=6, return_attention=True)
    for hyps, n in zip(beams, lengths):
        assert hyps[0].attention.shape == (len(hyps[0].tokens) + 1, n)
    assert greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=6)[0].attention is None


def _two_path_table(vocab: int = 5) -> np.ndarray:
    """From bos: eos 0.4, token 4 0.6; after token 4: eos 0.6 (the rest share what is left)."""
    table = np.full((vocab, vocab), -30.0)
    table[BOS, EOS], table[BOS, 4] = np.log(0.4), np.log(0.6)
    table[4, EOS], table[4, 4] = np.log(0.6), np.log(0.4)
    return table


def test_length_penalty_prefers_longer_hypotheses():
    fn = ToyStep(vocab=5, table=_two_path_table())
    src, lengths = batch([[4, 3]])
    raw = beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=5, length_penalty=0.0)
    gnmt = beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=5, length_penalty=1.0)
    # log 0.4 = -0.916 beats 2 log 0.6 = -1.022 raw; normalized, -1.022 / (7/6) = -0.876 wins.
    assert raw[0][0].tokens == [] and gnmt[0][0].tokens == [4]
    assert gnmt[0][0].score == pytest.approx(2 * np.log(0.6) / (7 / 6), rel=1e-5)


def test_min_len_blocks_early_eos_and_max_len_forces_eos():
    table = np.zeros((6, 6))
    table[:, EOS] = 20.0  # eos almost certain
    fn = ToyStep(vocab=6, table=table)
    src, lengths = batch([[4, 3], [5, 3]])
    assert [h.tokens for h in greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=10)] == [[], []]
    for hyps in beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=10, min_len=3):
        assert len(hyps[0].tokens) == 3
    assert all(len(h.tokens) == 3 for h in greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=10, min_len=3))
    table[:, EOS] = -20.0  # eos almost impossible: every row runs to its own limit
    limits = np.array([2, 5])
    assert [len(h.tokens) for h in greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=limits)] == [2, 5]
    beams = beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=limits, n_best=2)
    assert [[len(h.tokens) for h in hs] for hs in beams] == [[2, 2], [5, 5]]
    # max_len wins over min_len
    assert len(greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=1, min_len=4)[0].tokens) == 1


def test_no_repeat_ngram_blocks_repeats():
    table = np.full((6, 6), -5.0)
    table[BOS, 4], table[4, 5], table[5, 4] = 0.0, 0.0, 0.0  # 4 5 4 5 4 5 ...
    fn = ToyStep(vocab=6, table=table)
    src, lengths = batch([[4, 3]])
    plain = beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=8)[0][0].tokens
    assert plain == [4, 5] * 4
    for n in (1, 2, 3):
        toks = beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=8,
                           no_repeat_ngram_size=n)[0][0].tokens
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        assert len(grams) == len(set(grams)), (n, toks)
    assert beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=8,
                       no_repeat_ngram_size=3)[0][0].tokens[:4] == [4, 5, 4, 5]


def test_block_ngrams_bans_exactly_the_successors():
    history = np.array([[1, 2, 3, 1, 2], [4, 4, 4, 4, 4]])
    logp = np.zeros((2, 6))
    block_ngrams(logp, history, 3)  # row 0: "1 2" was followed by 3; row 1: "4 4" by 4
    assert np.isneginf(logp).sum() == 2 and logp[0, 3] == -np.inf and logp[1, 4] == -np.inf
    logp = np.zeros((2, 6))
    block_ngrams(logp, history, 1)
    assert set(np.nonzero(np.isinf(logp[0]))[0]) == {1, 2, 3}


def test_sampling_is_reproducible_and_seed_dependent():
    fn = ToyStep(seed=7, scale=0.5)
    src, lengths = batch(SRC)
    runs = [[h.tokens for h in sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=12, seed=s)] for s in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


@pytest.mark.parametrize("kwargs", [{"top_k": 1}, {"top_p": 1e-6}, {"top_k": 3, "top_p": 1e-6, "temperature": 5.0}])
def test_sampling_degenerates_to_greedy(kwargs):
    fn = ToyStep(seed=8)
    src, lengths = batch(SRC)
    expected = [h.tokens for h in greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=9)]
    got = sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=9, seed=0, **kwargs)
    assert [h.tokens for h in got] == expected


def test_draw_matches_distribution_and_filters():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logp = np.log(np.tile(probs, (20000, 1)))
    u = np.random.default_rng(0).random(20000)
    freq = np.bincount(draw(logp, u), minlength=4) / 20000
    np.testing.assert_allclose(freq, probs, atol=0.015)
    assert set(draw(logp, u, top_k=2)) == {0, 1}
    assert set(draw(logp, u, top_p=0.7)) == {0, 1}  # 0.5 < 0.7, 0.8 >= 0.7
    hot = np.bincount(draw(logp, u, temperature=100.0), minlength=4) / 20000
    np.testing.assert_allclose(hot, 0.25, atol=0.02)


def test_sample_with_prefix_continues_the_prompt():
    fn = ToyStep(seed=9)
    src, lengths = np.zeros((3, 0), dtype=np.int64), np.zeros(3, dtype=np.int64)
    prefixes = [[4, 5, 0], [1], []]
    got = sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=[5, 3, 4], top_k=1, prefix=prefixes,
                 stop_at_eos=False)
    for prefix, limit, hyp in zip(prefixes, [5, 3, 4], got):
        memory, state = fn.start(src[:1], lengths[:1])
        feed, expected = list(prefix) or [BOS], []
        for t in range(len(feed) - 1 + limit):
            logp, _, state = fn.step(np.array([feed[t] if t < len(feed) else expected[-1]]), memory, state)
            if t >= len(feed) - 1:
                expected.append(int(np.argmax(logp[0])))
        assert hyp.tokens == expected


def test_sample_stops_at_eos_unless_told_otherwise():
    table = np.zeros((6, 6))
    table[:, EOS] = 3.0
    fn = ToyStep(vocab=6, table=table)
    src, lengths = batch([[4, 3]] * 8)
    stopped = sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=20, seed=3)
    assert all(EOS not in h.tokens and len(h.tokens) < 20 for h in stopped)
    running = sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=20, seed=3, stop_at_eos=False)
    assert all(len(h.tokens) == 20 for h in running) and any(EOS in h.tokens for h in running)
    assert sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=0)[0] == Hypothesis([], 0.0, 0.0)


def test_empty_batch():
    src, lengths = np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    fn = ToyStep()
    assert greedy(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=5) == []
    assert beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=5) == []
    assert sample(fn, src, lengths, bos_id=BOS, eos_id=EOS, max_len=5) == []


def test_search_config_validation_and_max_lengths():
    cfg = SearchConfig()
    assert (cfg.strategy, cfg.beam_size, cfg.n_best) == ("beam", 5, 1)
    np.testing.assert_array_equal(cfg.max_lengths(np.array([1, 10, 500])), [11, 25, 200])
    for bad in ({"n_best": 6}, {"top_p": 0.0}, {"temperature": 0.0}, {"beam_size": 0}, {"beem_size": 3},
                {"strategy": "nucleus"}):
        with pytest.raises(ValidationError):
            SearchConfig(**bad)


def test_search_imports_no_torch():
    code = "import sys, seqkit.search, seqkit.beam, seqkit.inference; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_top_sorted_paths_agree():
    from seqkit.beam import _top_sorted

    rng = np.random.default_rng(0)
    cand = np.round(rng.normal(size=(7, 300)), 1)  # rounding makes ties: lower index must come first
    cand[0, :290] = -np.inf
    cand[1, 10:] = -np.inf  # fewer than n finite, index 0 among them: it must survive the restore
    for n in (3, 16, 17, 40):
        vals, idx = _top_sorted(cand.copy(), n)
        order = np.lexsort((np.broadcast_to(np.arange(300), cand.shape), -cand), axis=1)[:, :n]
        np.testing.assert_array_equal(idx, order)
        np.testing.assert_array_equal(vals, np.take_along_axis(cand, order, axis=1))


def test_top_k_rows_is_a_stable_row_sort():
    logp = np.array([[-1.0, -0.5, -1.0, -0.5, -3.0], [-2.0, -2.0, -2.0, -2.0, -2.0]], dtype=np.float32)
    top = top_k_rows(logp, 3, eos_id=4)
    np.testing.assert_array_equal(top.ids, [[1, 3, 0], [0, 1, 2]])  # ties: lower id first
    np.testing.assert_array_equal(top.log_probs, [[-0.5, -0.5, -1.0], [-2.0, -2.0, -2.0]])
    np.testing.assert_array_equal(top.eos, [-3.0, -2.0])
    assert top_k_rows(logp, 9, eos_id=4).ids.shape == (2, 5)  # k is capped at V


def _same_hyps(a: list[Hypothesis], b: list[Hypothesis]) -> None:
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert [h.score for h in a] == [h.score for h in b] and [h.log_prob for h in a] == [h.log_prob for h in b]
    for x, y in zip(a, b):
        assert (x.attention is None) == (y.attention is None)
        if x.attention is not None:
            np.testing.assert_array_equal(x.attention, y.attention)


def _full_and_top(vocab: int, ties: bool):
    """Four seeds of (ToyStep, the same model as ToyTopK, src, lengths, per-sentence max_len)."""
    for seed in range(4):
        full, top = ToyStep(vocab=vocab, seed=seed), ToyTopK(vocab=vocab, seed=seed, ties=ties)
        if ties:
            full.table, full.src_emb, full.time = top.table, top.src_emb, top.time
        yield full, top, *batch(SRC), np.array([5, 9, 3, 11])


@pytest.mark.parametrize("vocab,ties", [(6, False), (6, True), (40, False), (40, True)])
@pytest.mark.parametrize("settings", [
    {"beam_size": 5},  # vocab 6 < 2K: rows hold fewer than 2K candidates
    {"beam_size": 3, "n_best": 3, "length_penalty": 0.0},
    {"beam_size": 4, "n_best": 2, "min_len": 3, "return_attention": True},
    {"beam_size": 2, "min_len": 30},  # min_len beyond max_len: max_len wins
    {"beam_size": 1},
])
def test_top_k_path_equals_full_rows(vocab, ties, settings):
    """Beam search gives exactly the same hypotheses from each row's top k as from whole rows:
    tokens, scores, log-probs, attention; ties included."""
    for full, top, src, lengths, limits in _full_and_top(vocab, ties):
        want = beam_search(full, src, lengths, bos_id=BOS, eos_id=EOS, max_len=limits, **settings)
        got = beam_search(top, src, lengths, bos_id=BOS, eos_id=EOS, max_len=limits, **settings)
        for a, b in zip(want, got):
            _same_hyps(a, b)
        k = settings["beam_size"]
        assert top.k_asked and set(top.k_asked) <= {2 * k, 2 * k + 1}  # beam never reads whole rows


@pytest.mark.parametrize("vocab,ties", [(6, False), (6, True), (40, True)])
@pytest.mark.parametrize("min_len", [0, 3, 30])  # 30: beyond max_len, which wins
def test_greedy_top_one_equals_whole_rows(vocab, ties, min_len):
    """Greedy from a TopKStepFunction reads each row's best one (two while eos is blocked) and
    gives what the argmax of whole rows gives: tokens, log-probs, attention; ties go to the
    lower id."""
    for full, top, src, lengths, limits in _full_and_top(vocab, ties):
        kwargs = {"bos_id": BOS, "eos_id": EOS, "max_len": limits, "min_len": min_len, "return_attention": True}
        _same_hyps(greedy(full, src, lengths, **kwargs), greedy(top, src, lengths, **kwargs))
        assert top.k_asked and set(top.k_asked) <= {1, 2}


def test_no_repeat_ngram_uses_whole_rows():
    fn = ToyTopK(seed=2)
    assert isinstance(fn, TopKStepFunction) and not isinstance(ToyStep(), TopKStepFunction)
    src, lengths = batch(SRC)
    blocked = beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=8, no_repeat_ngram_size=1)
    assert fn.k_asked == []
    for hyps in blocked:
        assert len(set(hyps[0].tokens)) == len(hyps[0].tokens)
