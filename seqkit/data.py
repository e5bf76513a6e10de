"""Corpora: the recipe's ``data:`` section and loading one split: local files through
:mod:`seqkit.corpus` (one read, checked line by line), hub corpora through Hugging Face ``datasets``.

Formats (``data.format``):

* ``parallel`` -- one file per side (``src``, ``tgt``), aligned line by line (Multi30k, Gigaword).
* ``tsv`` -- one file (``path``); column 0 is the source, column 1 the target; further columns
  are ignored; no header; quotes are ordinary characters.
* ``jsonl`` -- one JSON object a line; ``src_field`` / ``tgt_field`` name the keys (dotted paths
  reach nested keys, e.g. ``translation.de``); integer values (class labels) become strings.
* ``text`` -- one document (``path``) for a language model. Without a ``valid`` split, the last
  ``valid_fraction`` of the training text is the validation text (nanoGPT convention).
* ``hub`` -- ``load_dataset(hub_name, hub_config, split=hub_split)``; ``hub_name`` may also be a
  local dataset directory (relative paths resolve against the recipe's directory).

Any file may be gzip-compressed (``.gz``). Relative paths resolve against the recipe's directory.
Files are checked as they are read, so errors name the recipe key, the file and the line: missing file, invalid UTF-8, a carriage return inside a line, misaligned parallel
files, an empty corpus. **An empty (or whitespace-only) line or value in a pair corpus is an
error**, not silently dropped: it usually means the two sides are misaligned. Lines lose their
trailing newline (``\\n`` or ``\\r\\n``) and nothing else. For classification the label is the
target string.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from seqkit import corpus
from seqkit.errors import DataError
from seqkit.search import MAX_LEN

SECTION = "data"  # the recipe key of DataConfig, the prefix of every error path
SPLITS = ("train", "valid", "test")
Format = Literal["parallel", "tsv", "jsonl", "text", "hub"]
# SplitFiles keys each format needs; the others must stay unset.
_NEEDS: dict[str, tuple[str, ...]] = {
    "parallel": ("src", "tgt"),
    "tsv": ("path",),
    "jsonl": ("path",),
    "text": ("path",),
    "hub": ("hub_split",),
}
# Formats data.streaming can read line by line, and the keys that only streaming uses.
STREAMING_FORMATS = ("parallel", "tsv", "jsonl", "hub")
STREAMING_KEYS = ("streaming", "shuffle_buffer", "tokenizer_sample", "stream_cache")


class SplitFiles(BaseModel):
    """Where one split lives; which keys apply depends on ``data.format``."""

    model_config = ConfigDict(extra="forbid")

    src: str | None = None  # parallel: source-side file
    tgt: str | None = None  # parallel: target-side file
    path: str | None = None  # tsv / jsonl / text: the file
    hub_split: str | None = None  # hub: split name, e.g. "validation"


class DataConfig(BaseModel):
    """The recipe's ``data:`` section."""

    model_config = ConfigDict(extra="forbid")

    format: Format = "parallel"
    train: SplitFiles
    valid: SplitFiles | None = None
    test: SplitFiles | None = None
    src_field: str = "src"  # jsonl key / hub column of the source (dotted for nested)
    tgt_field: str = "tgt"  # jsonl key / hub column of the target (or label)
    hub_name: str | None = None  # hub: dataset id or local dataset directory
    hub_config: str | None = None  # hub: configuration name, e.g. "de-en"
    valid_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)  # text without valid: last fraction
    max_src_len: int = Field(default=100, gt=0, le=MAX_LEN)  # tokens; longer pairs are dropped by the trainer
    max_tgt_len: int = Field(default=100, gt=0, le=MAX_LEN)  # tokens
    truncate_src: bool = False  # truncate long sources to max_src_len instead of dropping the pair
    lowercase: bool = False  # lowercase all text after loading
    # Streaming (seqkit/streaming.py, docs/scaling.md): the training split is tokenized once into
    # a memory-mapped Arrow cache and read through a bounded shuffle buffer; valid/test stay in memory.
    streaming: bool = False  # translation/summarization with format parallel, tsv, jsonl or hub
    shuffle_buffer: int = Field(default=100_000, gt=0)  # streaming: examples bucketed and shuffled together
    tokenizer_sample: int = Field(default=200_000, gt=0)  # streaming: the tokenizer learns from the first N pairs
    stream_cache: str | None = None  # streaming: cache directory (relative to the recipe); default RUN_DIR/cache/streaming

    @model_validator(mode="after")
    def _keys_match_format(self) -> DataConfig:
        needed = _NEEDS[self.format]
        problems = []
        for split in SPLITS:
            files: SplitFiles | None = getattr(self, split)
            if files is None:
                continue
            values = files.model_dump()
            problems += [f"{split}.{k} is required with format '{self.format}'" for k in needed if values[k] is None]
            for key, value in values.items():
                if key not in needed and value is not None:
                    problems.append(f"{split}.{key} is not used with format '{self.format}' (it reads {', '.join(needed)})")
        if self.format == "hub" and not self.hub_name:
            problems.append("hub_name is required with format 'hub'")
        if self.format != "hub" and (self.hub_name or self.hub_config):
            problems.append("hub_name and hub_config are only used with format 'hub'")
        if self.streaming and self.format not in STREAMING_FORMATS:
            problems.append(f"streaming reads formats {', '.join(STREAMING_FORMATS)}, not '{self.format}'")
        if problems:
            raise PydanticCustomError("data_format", "{problems}", {"problems": "; ".join(problems)})
        return self


@dataclass
class Corpus:
    """One split: aligned ``src``/``tgt`` lists for pair formats, ``text`` for a language model."""

    src: list[str] | None
    tgt: list[str] | None
    text: str | None
    name: str


def load_split(cfg: DataConfig, split: str, base_dir: Path, cache_dir: Path | None = None) -> Corpus:
    """Load ``split`` ("train", "valid" or "test") into memory.

    ``base_dir``: the recipe file's directory (relative paths resolve against it).
    ``cache_dir``: the ``datasets`` cache of a hub corpus (default: the Hugging Face default, ~/.cache).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; one of: {', '.join(SPLITS)}")
    base_dir = Path(base_dir)
    if cfg.format == "text" and split != "test" and cfg.valid is None:
        text = _load_text(cfg.train.path, f"{SECTION}.train.path", base_dir)
        cut = int(len(text) * (1.0 - cfg.valid_fraction))
        part = text[:cut] if split == "train" else text[cut:]
        if not part:
            raise DataError(f"{SECTION}.valid_fraction: the {split} part of {SECTION}.train.path is empty")
        return Corpus(None, None, part.lower() if cfg.lowercase else part, split)
    files: SplitFiles | None = getattr(cfg, split)
    if files is None:
        raise DataError(f"{SECTION}.{split}: no {split} split is configured")
    key = f"{SECTION}.{split}"
    if cfg.format == "text":
        text = _load_text(files.path, f"{key}.path", base_dir)
        return Corpus(None, None, text.lower() if cfg.lowercase else text, split)
    if cfg.format == "hub":
        src, tgt = _load_hub(cfg, files.hub_split, f"{key}.hub_split", base_dir, cache_dir)
    else:
        src, tgt = corpus.unzip(local_pairs(cfg, files, key, base_dir, whole=True))
    if cfg.lowercase:
        src, tgt = [s.lower() for s in src], [t.lower() for t in tgt]
    return Corpus(src, tgt, None, split)


# -- local files (seqkit.corpus) ----------------------------------------------------------------
def local_pairs(cfg: DataConfig, files: SplitFiles, key: str, base_dir: Path, whole: bool) -> Iterator[tuple[str, str]]:
    """The (source, target) pairs of one split in a local pair format (parallel, tsv, jsonl),
    checked line by line; ``whole``: each file in one read (in memory), else streamed."""
    if cfg.format == "parallel":
        src_path = corpus.resolve(files.src, f"{key}.src", base_dir)
        tgt_path = corpus.resolve(files.tgt, f"{key}.tgt", base_dir)
        return corpus.parallel_pairs(src_path, tgt_path, key, whole)
    path = corpus.resolve(files.path, f"{key}.path", base_dir)
    if cfg.format == "tsv":
        return corpus.tsv_pairs(path, f"{key}.path", whole)
    return corpus.jsonl_pairs(path, f"{key}.path", cfg.src_field, cfg.tgt_field, whole)


def _load_text(name: str | None, key: str, base_dir: Path) -> str:
    return corpus.read_text(corpus.resolve(name, key, base_dir), key)


# -- hub corpora, through datasets ---------------------------------------------------------------
def _datasets() -> Any:
    """The ``datasets`` module, its progress bars off: its "Generating train split" bars (shown
    even while the *test* split loads) and cache chatter are not what the user asked for."""
    import datasets  # heavy import, needed by training only

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _cache(cache_dir: Path | None) -> str | None:
    return None if cache_dir is None else str(cache_dir)


def _column(ds: Any, name: str) -> list[Any]:
    return ds.select_columns([name])[:][name]


def _field_values(ds: Any, dotted: str, where: str) -> list[str]:
    """Column ``dotted`` (``a.b`` reaches into struct column ``a``) as strings."""
    top, *rest = dotted.split(".")
    if top not in ds.column_names:
        raise DataError(f"{where}: no field '{top}' (columns: {', '.join(ds.column_names)})")
    values = _column(ds, top)
    out = []
    for row, value in enumerate(values):
        value = corpus.lookup(value, ".".join(rest), f"{where}: row {row}") if rest else value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            kind = type(value).__name__
            raise DataError(f"{where}: row {row}: '{dotted}' must be a string or an integer, got {kind}")
        if isinstance(value, str) and not value.strip():
            raise DataError(f"{where}: row {row}: empty '{dotted}' (a pair corpus may not hold empty examples)")
        out.append(str(value))
    return out


def hub_location(cfg: DataConfig, base_dir: Path) -> str:
    """What ``datasets.load_dataset`` is given: a dataset directory next to the recipe, else the Hub id."""
    name = str(cfg.hub_name)
    local = (base_dir / name).expanduser()
    return str(local.resolve()) if local.is_dir() else name


def hub_pairs(cfg: DataConfig, key: str, base_dir: Path) -> Iterator[tuple[str, str]]:
    """The training split of a ``format: hub`` corpus one row at a time (``data.streaming``):
    ``datasets.load_dataset(..., streaming=True)``, so a Hub corpus is downloaded as it is read
    and never held in memory; checked as the in-memory path checks it."""
    datasets = _datasets()
    split = cfg.train.hub_split
    try:
        rows = datasets.load_dataset(hub_location(cfg, base_dir), cfg.hub_config, split=split, streaming=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported with the names
        raise DataError(f"{key}: could not load dataset '{cfg.hub_name}' (config {cfg.hub_config!r}, split {split!r}): "
                        f"{type(exc).__name__}: {exc}") from exc
    for row, record in enumerate(rows):
        where = f"dataset '{cfg.hub_name}' split '{split}' row {row}"
        pair = [corpus.lookup(record, field, f"{SECTION}.{name}: {where}") for name, field in
                (("src_field", cfg.src_field), ("tgt_field", cfg.tgt_field))]
        for value, field in zip(pair, (cfg.src_field, cfg.tgt_field)):
            if not isinstance(value, str) or not value.strip():
                what = "empty" if isinstance(value, str) else type(value).__name__
                raise DataError(f"{key}: {where}: '{field}' is {what} (a pair corpus needs non-empty text)")
        yield pair[0], pair[1]


def _load_hub(
    cfg: DataConfig, hub_split: str | None, key: str, base_dir: Path, cache_dir: Path | None
) -> tuple[list[str], list[str]]:
    datasets = _datasets()

    name = hub_location(cfg, base_dir)
    try:
        ds = datasets.load_dataset(name, cfg.hub_config, split=hub_split, cache_dir=_cache(cache_dir))
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported with the names
        raise DataError(
            f"{key}: could not load dataset '{cfg.hub_name}' (config {cfg.hub_config!r}, split {hub_split!r}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    where = f"dataset '{cfg.hub_name}' split '{hub_split}'"
    if len(ds) == 0:
        raise DataError(f"{key}: {where}: corpus is empty")
    src = _field_values(ds, cfg.src_field, f"{SECTION}.src_field: {where}")
    return src, _field_values(ds, cfg.tgt_field, f"{SECTION}.tgt_field: {where}")
