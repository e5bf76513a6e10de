"""Training corpora larger than memory (``data.streaming: true``; docs/scaling.md).

The training split is read line by line (never whole) by the reader the in-memory path uses
(:mod:`seqkit.corpus`: the same checks, errors naming the recipe key, the file and the line), tokenized once and written through
``datasets``' Arrow writer into a cache directory keyed by the data files and the tokenizer
files. Training memory-maps that Arrow file (``datasets.Dataset.from_file``) and reads it through
a bounded shuffle buffer:

* the examples are cut into consecutive *buffers* of ``data.shuffle_buffer`` examples;
* every epoch visits the buffers in a seeded random order, and buckets each buffer's examples
  into token-budget batches with :func:`seqkit.batching.bucket_batches` (seeded by seed, epoch
  and buffer), in a seeded random order;
* only the batch being trained is read from the file.

The batch order is therefore a pure function of (seed, epoch, corpus): the Trainer's data
position (epoch, batch index) restores it exactly on resume. With one buffer (a corpus no
larger than ``shuffle_buffer``) the batches are exactly those of the in-memory path.

The tokenizer learns from the first ``data.tokenizer_sample`` pairs only (bounded memory);
validation and test splits are loaded in memory by :func:`seqkit.data.load_split`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, overload

import numpy as np

from seqkit import oov
from seqkit.batching import bucket_batches, encode_source
from seqkit.corpus import resolve
from seqkit.data import SECTION, STREAMING_FORMATS, Corpus, DataConfig, hub_location, hub_pairs, load_split, local_pairs
from seqkit.errors import DataError, SeqkitError

log = logging.getLogger("seqkit")

CACHE_VERSION = "seqkit-stream-1"  # part of the cache key: bump when the layout changes
ARROW_FILE, META_FILE = "train.arrow", "meta.json"
WRITER_BATCH = 10_000  # pairs per Arrow record batch (what the writer holds in memory)
TOKENIZE_PASSES = [0]  # tokenization passes run in this process (tests read it)


# -- reading the training split line by line -----------------------------------------------------
def read_pairs(cfg: DataConfig, base_dir: Path) -> Iterator[tuple[str, str]]:
    """The training split's (source, target) pairs, one at a time, checked as they are read."""
    if cfg.format not in STREAMING_FORMATS:
        raise DataError(f"{SECTION}.format: streaming reads {', '.join(STREAMING_FORMATS)}, not '{cfg.format}'")
    key = f"{SECTION}.train"
    pairs = (hub_pairs(cfg, f"{key}.hub_split", Path(base_dir)) if cfg.format == "hub"
             else local_pairs(cfg, cfg.train, key, Path(base_dir), whole=False))
    for src, tgt in pairs:
        yield (src.lower(), tgt.lower()) if cfg.lowercase else (src, tgt)


def sample_split(cfg: DataConfig, base_dir: Path) -> Corpus:
    """The first ``data.tokenizer_sample`` pairs (what the tokenizer is trained on)."""
    src, tgt = [], []
    for s, t in read_pairs(cfg, base_dir):
        src.append(s)
        tgt.append(t)
        if len(src) >= cfg.tokenizer_sample:
            break
    return Corpus(src, tgt, None, "train")


# -- the tokenized Arrow cache ------------------------------------------------------------------
def _train_files(cfg: DataConfig, base_dir: Path) -> list[Path]:
    """The files the training split is read from; for ``format: hub``, the files of a local
    dataset directory (none for a Hub id: its name, config and split key the cache instead)."""
    files = cfg.train
    if cfg.format == "hub":
        local = Path(hub_location(cfg, base_dir))
        return sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []
    names = [files.src, files.tgt] if cfg.format == "parallel" else [files.path]
    return [resolve(name, f"{SECTION}.train", base_dir) for name in names]


def cache_key(cfg: DataConfig, base_dir: Path, tokenizer_dir: Path, copy_oov: bool = False) -> str:
    """sha256 over the data files (path, size, mtime), the settings that change the ids, the tokenizer files."""
    h = hashlib.sha256(CACHE_VERSION.encode() + (b"|copy_oov" if copy_oov else b""))
    for path in _train_files(cfg, base_dir):
        stat = path.stat()
        h.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    settings = cfg.model_dump(include={"format", "src_field", "tgt_field", "lowercase", "max_src_len",
                                       "max_tgt_len", "truncate_src", "hub_name", "hub_config"})
    settings["hub_split"] = cfg.train.hub_split
    h.update(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(p for p in Path(tokenizer_dir).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(tokenizer_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:32]


def _features() -> Any:
    from datasets import Features, List, Value

    return Features({"src": List(Value("int32")), "tgt": List(Value("int32")),
                     "src_len": Value("int32"), "tgt_len": Value("int32")})


def _tokenize(cfg: DataConfig, base_dir: Path, src_tok: Any, tgt_tok: Any, path: Path,
              copy_oov: bool) -> dict[str, Any]:
    """Write the encoded training pairs to ``path``; the same drops as the in-memory path
    (``copy_oov``: in each source's extended vocabulary, seqkit.oov)."""
    from datasets.arrow_writer import ArrowWriter

    TOKENIZE_PASSES[0] += 1
    start, read, dropped, kept = time.perf_counter(), 0, 0, 0
    columns: dict[str, list[Any]] = {"src": [], "tgt": [], "src_len": [], "tgt_len": []}
    writer = ArrowWriter(features=_features(), path=str(path), writer_batch_size=WRITER_BATCH)
    try:
        for src, tgt in read_pairs(cfg, base_dir):
            read += 1
            s_ids, s_trunc = encode_source(src_tok, src, cfg.max_src_len)
            t_ids = tgt_tok.encode(tgt)
            if (s_trunc and not cfg.truncate_src) or len(t_ids) + 1 > cfg.max_tgt_len or not t_ids:
                dropped += 1
                continue
            if copy_oov:
                extended = oov.extend_source(src_tok, src, s_ids)
                s_ids, t_ids = extended.ids, oov.extend_target(tgt_tok, tgt, t_ids, extended)
            for name, value in zip(columns, (s_ids, t_ids, len(s_ids), len(t_ids) + 1)):
                columns[name].append(value)
            if len(columns["src"]) >= WRITER_BATCH:
                kept += len(columns["src"])
                writer.write_batch(columns)
                columns = {name: [] for name in columns}
            if read % 1_000_000 == 0:
                log.info("tokenized %d pairs (%.0f pairs/s)", read, read / (time.perf_counter() - start))
        if columns["src"]:
            kept += len(columns["src"])
            writer.write_batch(columns)
    finally:
        writer.finalize()
    if not kept:
        raise DataError(f"{SECTION}.train: no pair fits max_src_len={cfg.max_src_len} / max_tgt_len={cfg.max_tgt_len}")
    data_bytes = sum(p.stat().st_size for p in _train_files(cfg, base_dir))
    return {"pairs": read, "examples": kept, "dropped": dropped, "input_bytes": data_bytes,
            "seconds": round(time.perf_counter() - start, 3)}


def prepare_cache(cfg: DataConfig, base_dir: Path, run_dir: Path, src_tok: Any, tgt_tok: Any,
                  copy_oov: bool = False) -> Path:
    """The cache directory holding the tokenized training split; tokenizes only on a cache miss
    (``copy_oov``: ids in each source's extended vocabulary, ``model.decoder.copy_oov``)."""
    # A relative stream_cache resolves against the recipe's directory, like the data files.
    root = Path(base_dir) / Path(cfg.stream_cache).expanduser() if cfg.stream_cache else run_dir / "cache" / "streaming"
    target = root / cache_key(cfg, base_dir, run_dir / "tokenizer", copy_oov)
    if (target / META_FILE).is_file():
        log.info("streaming: reusing the tokenized training data in %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log.info("streaming: tokenizing the training data into %s", target)
    try:
        meta = _tokenize(cfg, base_dir, src_tok, tgt_tok, work / ARROW_FILE, copy_oov)
        (work / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        try:
            os.rename(work, target)
        except OSError:  # another run finished the same cache first: use theirs
            if not (target / META_FILE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if meta["dropped"]:
        log.info("dropped %d of %d training pairs longer than the length limits", meta["dropped"], meta["pairs"])
    log.info("streaming: %d pairs tokenized in %.1f s", meta["pairs"], meta["seconds"])
    return target


# -- batches through a bounded shuffle buffer ----------------------------------------------------
class StreamBatches(Sequence[np.ndarray]):
    """One epoch's batches (row-index arrays), computed one buffer at a time on demand.

    ``len`` is known without building the batches: a buffer's batch count depends only on its
    examples' lengths (``bucket_batches`` packs them sorted by length), not on the shuffle.
    """

    def __init__(self, stream: ArrowStream, epoch: int, seed: int):
        self.stream, self.epoch, self.seed = stream, epoch, seed
        buffers = len(stream.counts)
        self.order = np.random.default_rng([seed, epoch, buffers]).permutation(buffers)  # buffer visit order
        self.ends = np.cumsum(stream.counts[self.order])
        self._cached: tuple[int, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return int(self.ends[-1])

    @overload
    def __getitem__(self, item: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, item: slice) -> list[np.ndarray]: ...
    def __getitem__(self, item: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(item, slice):
            return [self._batch(i) for i in range(*item.indices(len(self)))]
        if not -len(self) <= item < len(self):
            raise IndexError(item)
        return self._batch(item % len(self))

    def _batch(self, i: int) -> np.ndarray:
        position = int(np.searchsorted(self.ends, i, side="right"))
        first = int(self.ends[position - 1]) if position else 0
        return self._buffer(int(self.order[position]))[i - first]

    def _buffer(self, b: int) -> list[np.ndarray]:
        if self._cached is None or self._cached[0] != b:
            start, src_len, tgt_len = self.stream.lengths(b)
            # Buffer 0 uses the in-memory path's random stream: one buffer == the in-memory batches.
            batches = bucket_batches(src_len, tgt_len, self.stream.batch_tokens, shuffle=True, seed=self.seed,
                                     epoch=self.epoch, stream=b if b else None)
            self._cached = (b, [batch + start for batch in batches])
        return self._cached[1]


class ArrowStream:
    """The memory-mapped tokenized training split, cut into buffers of ``shuffle_buffer`` rows."""

    def __init__(self, cache: Path, shuffle_buffer: int, batch_tokens: int):
        from datasets import Dataset

        self.dataset = Dataset.from_file(str(cache / ARROW_FILE))  # memory-mapped, not loaded
        self.table = self.dataset.data.table
        self.meta = json.loads((cache / META_FILE).read_text(encoding="utf-8"))
        self.size, self.buffer, self.batch_tokens = len(self.dataset), shuffle_buffer, batch_tokens
        if self.size != self.meta["examples"]:
            raise SeqkitError(f"{cache}: holds {self.size} examples, {META_FILE} says {self.meta['examples']}; "
                              "delete the directory to rebuild it")
        self.counts = np.array([len(bucket_batches(*self.lengths(b)[1:], batch_tokens, shuffle=False, seed=0, epoch=0))
                                for b in range(-(-self.size // shuffle_buffer))], dtype=np.int64)

    def lengths(self, b: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(first row, src lengths, tgt lengths + 1) of buffer ``b``."""
        start = b * self.buffer
        n = min(self.buffer, self.size - start)
        part = self.table.slice(start, n)
        return start, part.column("src_len").to_numpy(), part.column("tgt_len").to_numpy()

    def rows(self, index: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
        import pyarrow as pa

        index = np.asarray(index, dtype=np.int64)
        low = int(index.min())  # a batch lies within one buffer: take from that slice only, so
        part = self.table.slice(low, int(index.max()) + 1 - low)  # a take never gathers whole columns
        rows = part.take(pa.array(index - low))
        return rows.column("src").to_pylist(), rows.column("tgt").to_pylist()


# -- the data source ----------------------------------------------------------------------------
class StreamingData:
    """``data.streaming``: the training split stays on disk (a tokenized Arrow cache); the
    validation split is read into memory now. A task that streams trains from :meth:`stream`."""

    streaming = True
    train = None  # never in memory

    def __init__(self, recipe: Any, run_dir: Path):
        cfg = recipe.data
        if cfg.valid is None:
            raise SeqkitError(f"{SECTION}.valid: a validation split is required for translation/summarization recipes")
        self.recipe, self.run_dir = recipe, run_dir
        self.valid = load_split(cfg, "valid", recipe.base_dir, cache_dir=run_dir / "cache")

    def tokenizer_corpus(self) -> Corpus:
        """What the tokenizers learn from: the first ``data.tokenizer_sample`` pairs."""
        return sample_split(self.recipe.data, self.recipe.base_dir)

    def stream(self, src_tok: Any, tgt_tok: Any) -> ArrowStream:
        """The training pairs tokenized into the Arrow cache (on a cache miss), memory-mapped."""
        recipe, cfg = self.recipe, self.recipe.data
        cache = prepare_cache(cfg, recipe.base_dir, self.run_dir, src_tok, tgt_tok, oov.enabled(recipe.model))
        stream = ArrowStream(cache, cfg.shuffle_buffer, recipe.train.batch_tokens)
        log.info("streaming: %d training examples in %d buffers of up to %d", stream.size, len(stream.counts),
                 cfg.shuffle_buffer)
        return stream
