import gzip
from pathlib import Path

import numpy as np
import pytest

from seqkit.batching import (
    Batch,
    bucket_batches,
    collate,
    lm_stream_batches,
    num_lm_batches,
    padding_waste,
)
from seqkit.errors import DataError

MULTI30K = Path(__file__).resolve().parents[1] / "recipes" / "data" / "multi30k"


def lengths(n=2000, seed=0):
    """A Multi30k-like length distribution: sources ~13 tokens, targets correlated (~12)."""
    rng = np.random.default_rng(seed)
    src = np.clip(rng.normal(13, 4, n).round(), 2, 40).astype(np.int64)
    tgt = np.clip((src * 0.9 + rng.normal(0, 2, n)).round(), 1, 40).astype(np.int64)
    return src, tgt


def cost(batch, src, tgt):
    return len(batch) * max(int(src[batch].max()), int(tgt[batch].max()) + 1)


@pytest.mark.parametrize("max_sentences", [None, 16])
def test_budget_respected_and_every_example_once(max_sentences):
    src, tgt = lengths()
    batches = bucket_batches(src, tgt, 400, shuffle=True, seed=1, epoch=0, max_sentences=max_sentences)
    assert all(b.dtype == np.int64 for b in batches)
    assert all(cost(b, src, tgt) <= 400 for b in batches)
    if max_sentences:
        assert max(len(b) for b in batches) == max_sentences
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(src)))


def test_batches_are_nearly_full():
    src, tgt = lengths()
    batches = bucket_batches(src, tgt, 400, shuffle=True, seed=1, epoch=0)
    used = sum(cost(b, src, tgt) for b in batches)
    assert used / (400 * len(batches)) > 0.85


def test_example_over_budget_is_a_batch_of_its_own():
    src = np.array([3, 50, 4, 3])
    tgt = np.array([3, 60, 4, 2])
    batches = bucket_batches(src, tgt, 12, shuffle=False, seed=0, epoch=0)
    # costs max(S, T + 1): 4, 61, 5, 3 -> sorted 3, 0, 2, 1; [3, 0] costs 8, [3, 0, 2] would cost 15
    assert [b.tolist() for b in batches] == [[3, 0], [2], [1]]
    assert cost(batches[-1], src, tgt) == 61


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    src, tgt = lengths()
    run = lambda seed, epoch: bucket_batches(src, tgt, 300, shuffle=True, seed=seed, epoch=epoch)  # noqa: E731
    same = run(3, 5), run(3, 5)
    assert all(np.array_equal(a, b) for a, b in zip(*same)) and len(same[0]) == len(same[1])
    other_epoch = run(3, 6)
    assert [b.tolist() for b in other_epoch] != [b.tolist() for b in same[0]]
    # the buckets themselves differ, not just their order
    as_sets = lambda batches: {tuple(sorted(b.tolist())) for b in batches}  # noqa: E731
    assert as_sets(other_epoch) != as_sets(same[0])
    assert [b.tolist() for b in run(4, 5)] != [b.tolist() for b in same[0]]


def test_no_shuffle_is_sorted_and_epoch_independent():
    src, tgt = lengths(300)
    a = bucket_batches(src, tgt, 200, shuffle=False, seed=0, epoch=0)
    b = bucket_batches(src, tgt, 200, shuffle=False, seed=9, epoch=4)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    widths = [max(int(src[x].max()), int(tgt[x].max()) + 1) for x in a]
    assert widths == sorted(widths)


def test_language_model_lengths_only():
    tgt = np.array([5, 1, 3, 3, 9])
    batches = bucket_batches(None, tgt, 8, shuffle=False, seed=0, epoch=0)
    assert [b.tolist() for b in batches] == [[1, 2], [3], [0], [4]]


def test_padding_waste_is_low_on_multi30k_like_lengths():
    src, tgt = lengths(29000)
    batches = bucket_batches(src, tgt, 4096, shuffle=True, seed=0, epoch=0)
    waste = padding_waste(batches, src, tgt)
    assert 0.0 < waste < 0.15
    # one batch per example wastes nothing; one random batch of everything wastes a lot
    assert padding_waste([np.array([i]) for i in range(10)], src, tgt) == 0.0
    assert padding_waste([np.arange(29000)], src, tgt) > 0.5


def test_padding_waste_is_low_on_shipped_multi30k():
    def word_lengths(name):
        with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as f:
            return np.array([len(line.split()) for line in f])

    src, tgt = word_lengths("train.de.gz"), word_lengths("train.en.gz")
    for batch_tokens in (1000, 4096, 8000):
        batches = bucket_batches(src, tgt, batch_tokens, shuffle=True, seed=0, epoch=0)
        assert padding_waste(batches, src, tgt) < 0.15


def test_padding_waste_counts_both_sides():
    src, tgt = np.array([2, 4]), np.array([1, 1])
    # src: 2 rows x 4 = 8 positions, 6 real; tgt (+1): 2 x 2 = 4 positions, 4 real
    assert padding_waste([np.array([0, 1])], src, tgt) == pytest.approx(2 / 12)
    assert padding_waste([np.array([0, 1])], None, tgt) == 0.0


def test_collate_shapes_and_values():
    batch = collate([[5, 6, 7], [8]], [[9], [10, 11, 12]], pad_id=0, bos_id=2, eos_id=3, index=np.array([7, 4]))
    assert isinstance(batch, Batch) and len(batch) == 2
    np.testing.assert_array_equal(batch.src, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(batch.src_lengths, [3, 1])
    np.testing.assert_array_equal(batch.tgt_in, [[2, 9, 0, 0], [2, 10, 11, 12]])
    np.testing.assert_array_equal(batch.tgt_out, [[9, 3, 0, 0], [10, 11, 12, 3]])
    np.testing.assert_array_equal(batch.tgt_lengths, [2, 4])
    assert batch.ntokens == 6
    np.testing.assert_array_equal(batch.index, [7, 4])
    for array in (batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths, batch.index):
        assert array.dtype == np.int64


def test_collate_language_model_and_empty_target():
    batch = collate(None, [[4, 5], []], pad_id=0, bos_id=2, eos_id=3)
    assert batch.src.shape == (2, 0) and batch.src_lengths.tolist() == [0, 0]
    np.testing.assert_array_equal(batch.tgt_in, [[2, 4, 5], [2, 0, 0]])
    np.testing.assert_array_equal(batch.tgt_out, [[4, 5, 3], [3, 0, 0]])
    np.testing.assert_array_equal(batch.index, [0, 1])
    with pytest.raises(ValueError, match="empty batch"):
        collate(None, [], 0, 2, 3)


def test_lm_streams_are_contiguous_and_resumable():
    ids = np.arange(103)
    chunks = list(lm_stream_batches(ids, batch_size=4, bptt=7))
    n = (103 - 1) // 4  # 25 ids per stream
    assert len(chunks) == num_lm_batches(103, 4, 7) == 4  # 7 + 7 + 7 + 4
    assert [c[0].shape for c in chunks] == [(4, 7)] * 3 + [(4, 4)]
    inputs = np.concatenate([c[0] for c in chunks], axis=1)
    targets = np.concatenate([c[1] for c in chunks], axis=1)
    np.testing.assert_array_equal(inputs, np.arange(4 * n).reshape(4, n))  # row b continues across chunks
    np.testing.assert_array_equal(targets, inputs + 1)
    resumed = list(lm_stream_batches(ids, 4, 7, start=2))
    assert len(resumed) == 2
    np.testing.assert_array_equal(resumed[0][0], chunks[2][0])


def test_lm_stream_too_short():
    with pytest.raises(DataError, match="too short for 8 streams"):
        list(lm_stream_batches(np.arange(8), batch_size=8, bptt=4))
    assert num_lm_batches(8, 8, 4) == 0


def test_batching_imports_no_torch():
    import subprocess
    import sys

    script = "import sys; sys.modules['torch'] = None; import seqkit.batching; print('ok')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
