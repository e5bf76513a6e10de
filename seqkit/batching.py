"""Batches by token count from length buckets, padding, and language-model streams (numpy only).

A batch's cost is its padded size ``B * max(S_max, T_max + 1)``: the target side carries one
extra position (bos on the decoder input, eos on the decoder output). Everything here is
deterministic given ``(seed, epoch)``, which is what resuming mid-epoch relies on.
Shapes: B = batch, S = source length, T = target length + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from seqkit.errors import DataError


# -- one example's ids, and a padded batch of them -------------------------------------------
def encode_source(tokenizer: Any, text: str, max_len: int) -> tuple[list[int], bool]:
    """Source ids as the model sees them: ``encode(text)[:max_len - 1] + [eos]``.

    Returns (ids, truncated). Used by training (every task's adapter, the streaming cache), export and
    :class:`seqkit.inference.Translator` alike.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1 (room for eos), got {max_len}")
    ids = tokenizer.encode(text)
    return ids[: max_len - 1] + [tokenizer.eos_id], len(ids) > max_len - 1


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids -> (src (B, S) int64 right-padded with pad_id, lengths (B,) int64)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    src = np.full((len(rows), int(lengths.max()) if len(rows) else 0), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    return src, lengths


def _rng(seed: int, epoch: int, stream: int | None = None) -> np.random.Generator:
    return np.random.default_rng([seed, epoch] if stream is None else [seed, epoch, stream])


def bucket_batches(
    src_lengths: np.ndarray | None,
    tgt_lengths: np.ndarray,
    batch_tokens: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    max_sentences: int | None = None,
    stream: int | None = None,
) -> list[np.ndarray]:
    """Group example indices into batches of similar length; each is an int64 index array.

    Examples are sorted by padded cost ``max(S, T + 1)``, then source length, then target
    length (ties broken at random when shuffling, so batches differ from epoch to epoch), then
    packed greedily while ``B * max(S_max, T_max + 1) <= batch_tokens`` and
    ``B <= max_sentences``. An example over the budget on its own forms a batch of one. With
    ``shuffle`` the batch order is permuted; without it batches come shortest first and are
    identical for every epoch.
    ``src_lengths=None`` (language model) sorts by target length only. ``stream`` (optional)
    gives a separate random stream per part of an epoch (seqkit.streaming: one per buffer).
    """
    tgt_cost = np.asarray(tgt_lengths, dtype=np.int64) + 1
    n = len(tgt_cost)
    src_cost = np.zeros(n, np.int64) if src_lengths is None else np.asarray(src_lengths, dtype=np.int64)
    if len(src_cost) != n:
        raise ValueError(f"src_lengths has {len(src_cost)} entries, tgt_lengths {n}")
    if batch_tokens <= 0 or (max_sentences is not None and max_sentences <= 0):
        raise ValueError(f"batch_tokens ({batch_tokens}) and max_sentences ({max_sentences}) must be positive")
    rng = _rng(seed, epoch, stream)
    tie = rng.random(n) if shuffle else np.arange(n)
    cost = np.maximum(src_cost, tgt_cost)
    # Padded cost first, then each side's length (less padding than sorting by source alone).
    order = np.lexsort((tie, tgt_cost, src_cost, cost))  # last key is the primary one
    cost = cost[order]
    batches = [order[start:stop] for start, stop in _pack(cost, batch_tokens, max_sentences or max(n, 1))]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _pack(cost: np.ndarray, batch_tokens: int, max_sentences: int) -> list[tuple[int, int]]:
    """(start, stop) spans of consecutive examples whose padded size fits the budget."""
    spans = []
    start, widest = 0, 0
    for i, c in enumerate(cost.tolist()):
        wider = max(widest, c)
        size = i - start + 1
        if size > 1 and (size * wider > batch_tokens or size > max_sentences):
            spans.append((start, i))
            start, wider = i, c
        widest = wider
    if len(cost):
        spans.append((start, len(cost)))
    return spans


@dataclass
class Batch:
    """One padded batch (numpy; the trainer moves it to torch).

    src: (B, S) int64, padded with pad_id; (B, 0) for a language model.
    src_lengths: (B,) int64.
    tgt_in: (B, T) int64, bos + y (decoder input).
    tgt_out: (B, T) int64, y + eos (what the decoder predicts).
    tgt_lengths: (B,) int64, len(y) + 1.
    ntokens: target tokens, eos included (the loss normalizer).
    index: (B,) int64, the examples' indices in the corpus.
    """

    src: np.ndarray
    src_lengths: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    tgt_lengths: np.ndarray
    ntokens: int
    index: np.ndarray

    def __len__(self) -> int:
        return int(self.tgt_in.shape[0])


def _pad(rows: Sequence[Sequence[int]], pad_id: int, width: int, offset: int = 0) -> np.ndarray:
    out = np.full((len(rows), width), pad_id, dtype=np.int64)
    for r, row in enumerate(rows):
        out[r, offset : offset + len(row)] = row
    return out


def collate(
    src_ids: list[list[int]] | None,
    tgt_ids: list[list[int]],
    pad_id: int,
    bos_id: int,
    eos_id: int,
    index: np.ndarray | None = None,
) -> Batch:
    """Pad token id lists into a :class:`Batch` (src None -> language-model batch, src (B, 0))."""
    b = len(tgt_ids)
    if b == 0:
        raise ValueError("collate: empty batch")
    if src_ids is not None and len(src_ids) != b:
        raise ValueError(f"collate: {len(src_ids)} sources but {b} targets")
    tgt_lengths = np.array([len(y) + 1 for y in tgt_ids], dtype=np.int64)
    t = int(tgt_lengths.max())
    tgt_in = _pad(tgt_ids, pad_id, t, offset=1)
    tgt_in[:, 0] = bos_id
    tgt_out = _pad(tgt_ids, pad_id, t)
    tgt_out[np.arange(b), tgt_lengths - 1] = eos_id
    if src_ids is None:
        src, src_lengths = np.zeros((b, 0), dtype=np.int64), np.zeros(b, dtype=np.int64)
    else:
        src_lengths = np.array([len(x) for x in src_ids], dtype=np.int64)
        src = _pad(src_ids, pad_id, int(src_lengths.max()))
    index = np.arange(b, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    return Batch(src, src_lengths, tgt_in, tgt_out, tgt_lengths, int(tgt_lengths.sum()), index)


def padding_waste(batches: Sequence[np.ndarray], src_lengths: np.ndarray | None, tgt_lengths: np.ndarray) -> float:
    """Fraction of padded positions over all positions of the padded src and target tensors."""
    tgt_cost = np.asarray(tgt_lengths, dtype=np.int64) + 1
    src_cost = None if src_lengths is None else np.asarray(src_lengths, dtype=np.int64)
    total = real = 0
    for idx in batches:
        for cost in (tgt_cost, src_cost):
            if cost is None or len(idx) == 0:
                continue
            part = cost[idx]
            total += len(idx) * int(part.max())
            real += int(part.sum())
    return 0.0 if total == 0 else 1.0 - real / total


# -- language-model streams (char-rnn style truncated BPTT) ------------------------------------
def _streams(ids: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each (B, N): B contiguous streams, targets shifted by one id."""
    ids = np.asarray(ids, dtype=np.int64)
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise DataError(
            f"text of {len(ids)} tokens is too short for {batch_size} streams (needs at least {batch_size + 1})"
        )
    return ids[: batch_size * n].reshape(batch_size, n), ids[1 : batch_size * n + 1].reshape(batch_size, n)


def num_lm_batches(num_ids: int, batch_size: int, bptt: int) -> int:
    """How many chunks :func:`lm_stream_batches` yields from ``num_ids`` ids (last one may be short)."""
    n = (num_ids - 1) // batch_size
    return -(-n // bptt) if n > 0 else 0


def lm_stream_batches(
    ids: np.ndarray, batch_size: int, bptt: int, start: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (inputs, targets), each (B, <=bptt) int64, in stream order, from chunk ``start``.

    The id stream is cut into ``batch_size`` contiguous rows, so row b of chunk k+1 continues
    row b of chunk k: the model may carry its hidden state across chunks (detached). The last
    chunk is shorter when the row length is not a multiple of ``bptt``. ``start`` resumes
    mid-epoch.
    """
    if bptt <= 0:
        raise ValueError(f"bptt must be positive, got {bptt}")
    inputs, targets = _streams(ids, batch_size)
    for k in range(start, num_lm_batches(len(ids), batch_size, bptt)):
        yield inputs[:, k * bptt : (k + 1) * bptt], targets[:, k * bptt : (k + 1) * bptt]
