"""Byte-pair merges over UTF-8 bytes: learning them from text and applying them to a chunk.

Ids: 0-3 are seqkit's specials (pad, unk, bos, eos), byte ``b`` is id ``4 + b`` (4..259), and
the merge of rank ``r`` creates id ``260 + r``. Text is first split into chunks (a word with at
most one space before it, a run of digits, of punctuation, or of whitespace, GPT-2 style), and
merges never cross a chunk boundary: tokens stay word-like and encoding can cache per chunk.

Imports no torch.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from typing import Iterable, Sequence

BYTE_OFFSET = 4  # ids 0..3 are pad, unk, bos, eos
NUM_BYTES = 256
FIRST_MERGE_ID = BYTE_OFFSET + NUM_BYTES  # 260

# Letters, digits, underscores, punctuation and whitespace: every character matches one
# alternative, so the chunks of a text always join back to the text. `\s+(?!\S)` leaves the
# last space of a run for the word that follows it.
_CHUNK = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\w\s]+| ?_+|\s+(?!\S)|\s+")

Pair = tuple[int, int]


def split_chunks(text: str) -> list[str]:
    """``"Hello, world"`` -> ``["Hello", ",", " world"]``; ``"".join`` restores the text."""
    return _CHUNK.findall(text)


def byte_ids(chunk: str) -> list[int]:
    """UTF-8 bytes as ids; a lone surrogate (not encodable) becomes ``?``."""
    return [BYTE_OFFSET + b for b in chunk.encode("utf-8", errors="replace")]


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair``, left to right, with ``new_id``."""
    out: list[int] = []
    i, n = 0, len(ids)
    first, second = pair
    while i < n:
        if i + 1 < n and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def apply_merges(ids: list[int], ranks: dict[Pair, int]) -> list[int]:
    """Merge the adjacent pair of lowest rank until no pair has one (the BPE encoding)."""
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, len(ranks)))
        rank = ranks.get(best)
        if rank is None:
            break
        ids = merge_pair(ids, best, FIRST_MERGE_ID + rank)
    return ids


def learn_merges(texts: Iterable[str], num_merges: int, min_frequency: int) -> list[Pair]:
    """Up to ``num_merges`` merges, most frequent pair first; stops below ``min_frequency``.

    Ties go to the smaller pair of ids, so the result depends on the texts alone. Pair counts
    are updated incrementally (only the chunks holding the merged pair are touched) and the
    best pair is found through a heap with lazy deletion, so thousands of merges over a corpus
    of a few MB take seconds, not hours.
    """
    chunk_counts = Counter(chunk for text in texts for chunk in split_chunks(text))
    words = [byte_ids(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            counts[pair] += freq
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    while heap and len(merges) < num_merges:
        neg_count, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg_count:
            continue  # stale: the pair's current count has its own entry
        if -neg_count < min_frequency:
            break
        new_id = FIRST_MERGE_ID + len(merges)
        merges.append(pair)
        changed = _merge_everywhere(pair, new_id, words, freqs, counts, where)
        for p in changed:
            if counts.get(p, 0) > 0:
                heapq.heappush(heap, (-counts[p], p))
    return merges


def _merge_everywhere(
    pair: Pair, new_id: int, words: list[list[int]], freqs: list[int],
    counts: dict[Pair, int], where: dict[Pair, set[int]],
) -> set[Pair]:
    """Merge ``pair`` in every chunk holding it, updating pair counts; -> the pairs changed."""
    changed: set[Pair] = set()
    for index in where.pop(pair, set()):
        word, freq = words[index], freqs[index]
        merged = merge_pair(word, pair, new_id)
        if len(merged) == len(word):
            continue
        for p in zip(word, word[1:]):
            counts[p] -= freq
            changed.add(p)
        for p in zip(merged, merged[1:]):
            counts[p] += freq
            where[p].add(index)
            changed.add(p)
        words[index] = merged
    counts.pop(pair, None)
    changed.discard(pair)
    for p in [p for p in changed if counts.get(p, 0) <= 0]:
        counts.pop(p, None)
    return changed
