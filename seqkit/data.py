"""Corpora: the recipe's ``data:`` section and loading one split through Hugging Face ``datasets``.

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
Files are checked before ``datasets`` reads them, so errors name the recipe key, the file and
the line: missing file, invalid UTF-8, a carriage return inside a line, misaligned parallel
files, an empty corpus. **An empty (or whitespace-only) line or value in a pair corpus is an
error**, not silently dropped: it usually means the two sides are misaligned. Lines lose their
trailing newline (``\\n`` or ``\\r\\n``) and nothing else. For classification the label is the
target string.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

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
STREAMING_FORMATS = ("parallel", "tsv", "jsonl")
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
    streaming: bool = False  # translation/summarization with format parallel, tsv or jsonl only
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
    """Load ``split`` ("train", "valid" or "test") through ``datasets``.

    ``base_dir``: the recipe file's directory (relative paths resolve against it).
    ``cache_dir``: the ``datasets`` cache (default: the Hugging Face default, ~/.cache).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; one of: {', '.join(SPLITS)}")
    base_dir = Path(base_dir)
    if cfg.format == "text" and split != "test" and cfg.valid is None:
        text = _load_text(cfg.train.path, f"{SECTION}.train.path", base_dir, cache_dir)
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
        text = _load_text(files.path, f"{key}.path", base_dir, cache_dir)
        return Corpus(None, None, text.lower() if cfg.lowercase else text, split)
    if cfg.format == "parallel":
        src, tgt = _load_parallel(files, key, base_dir, cache_dir)
    elif cfg.format == "tsv":
        src, tgt = _load_tsv(files.path, f"{key}.path", base_dir, cache_dir)
    elif cfg.format == "jsonl":
        src, tgt = _load_jsonl(files.path, f"{key}.path", cfg, base_dir, cache_dir)
    else:
        src, tgt = _load_hub(cfg, files.hub_split, f"{key}.hub_split", base_dir, cache_dir)
    if cfg.lowercase:
        src, tgt = [s.lower() for s in src], [t.lower() for t in tgt]
    return Corpus(src, tgt, None, split)


# -- checks before datasets reads a file -------------------------------------------------------
def _resolve(name: str | None, key: str, base_dir: Path) -> Path:
    assert name is not None  # DataConfig's validator guarantees it for the format
    path = Path(name).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise DataError(f"{key}: file not found: {path}")
    return path


def _read_text(path: Path, key: str) -> str:
    """The whole file (gunzipped) as text; DataError with the line of the first bad UTF-8 byte."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a corrupt body zlib.error
        raise DataError(f"{key}: cannot read {path}: {_read_failure(exc)}") from None
    try:
        return _strip_bom(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{key}: {path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}: {exc.reason}); "
            "convert the file to UTF-8"
        ) from exc


def _read_failure(exc: BaseException) -> str:
    if isinstance(exc, (zlib.error, EOFError)):
        return f"corrupt or truncated gzip data ({str(exc)[:120] or type(exc).__name__})"
    return str(exc)[:200]


def _strip_bom(text: str) -> str:
    """Without a leading byte-order mark (Windows editors write one): it is not part of the first
    word, and would otherwise enter the vocabulary as '\ufeffTwo'."""
    return text[1:] if text.startswith("\ufeff") else text


def _scan_lines(path: Path, key: str) -> list[str]:
    """Lines split on ``\\n`` (a trailing ``\\r`` dropped), as datasets' text loader splits them."""
    text = _read_text(path, key)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    for number, line in enumerate(lines if "\r" in text else [], 1):
        if "\r" in line[:-1]:
            raise DataError(f"{key}: {path}:{number}: carriage return inside a line (it would split the line in two)")
        if line.endswith("\r"):
            lines[number - 1] = line[:-1]
    if not lines:
        raise DataError(f"{key}: corpus is empty: {path}")
    return lines


def _check_not_empty(lines: list[str], path: Path, key: str) -> None:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{key}: {path}:{number}: empty line (a pair corpus may not hold empty examples)")


# -- loading through datasets ------------------------------------------------------------------
def _datasets() -> Any:
    """The ``datasets`` module, its progress bars off: its "Generating train split" bars (shown
    even while the *test* split loads) and cache chatter are not what the user asked for."""
    import datasets  # heavy import, needed by training only

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _hf_load(builder: str, path: Path, key: str, cache_dir: Path | None, **kwargs: Any) -> Any:
    datasets = _datasets()
    try:
        return datasets.load_dataset(
            builder, data_files=[str(path)], split="train", cache_dir=_cache(cache_dir), **kwargs
        )
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported with the file
        raise DataError(f"{key}: {path}: datasets could not load it as {builder}: {type(exc).__name__}: {exc}") from exc


def _cache(cache_dir: Path | None) -> str | None:
    return None if cache_dir is None else str(cache_dir)


def _column(ds: Any, name: str) -> list[Any]:
    return ds.select_columns([name])[:][name]


def _hf_lines(path: Path, key: str, cache_dir: Path | None, expected: int) -> list[str]:
    lines = _column(_hf_load("text", path, key, cache_dir), "text")
    if lines:
        lines[0] = _strip_bom(lines[0])
    if len(lines) != expected:  # cannot happen after _scan_lines; guards a datasets change
        raise DataError(f"{key}: {path}: datasets read {len(lines)} lines, expected {expected}")
    return lines


def _load_text(name: str | None, key: str, base_dir: Path, cache_dir: Path | None) -> str:
    path = _resolve(name, key, base_dir)
    if not _read_text(path, key):
        raise DataError(f"{key}: corpus is empty: {path}")
    ds = _hf_load("text", path, key, cache_dir, sample_by="document", keep_linebreaks=True)
    return _strip_bom("".join(_column(ds, "text")))


def _load_parallel(files: SplitFiles, key: str, base_dir: Path, cache_dir: Path | None) -> tuple[list[str], list[str]]:
    src_path = _resolve(files.src, f"{key}.src", base_dir)
    tgt_path = _resolve(files.tgt, f"{key}.tgt", base_dir)
    src_scan = _scan_lines(src_path, f"{key}.src")
    tgt_scan = _scan_lines(tgt_path, f"{key}.tgt")
    if len(src_scan) != len(tgt_scan):
        raise DataError(
            f"{key}: parallel files are misaligned: {src_path} has {len(src_scan)} lines, "
            f"{tgt_path} has {len(tgt_scan)} lines"
        )
    _check_not_empty(src_scan, src_path, f"{key}.src")
    _check_not_empty(tgt_scan, tgt_path, f"{key}.tgt")
    src = _hf_lines(src_path, f"{key}.src", cache_dir, len(src_scan))
    return src, _hf_lines(tgt_path, f"{key}.tgt", cache_dir, len(tgt_scan))


def _load_tsv(name: str | None, key: str, base_dir: Path, cache_dir: Path | None) -> tuple[list[str], list[str]]:
    import csv

    from datasets import Features, Value

    path = _resolve(name, key, base_dir)
    lines = _scan_lines(path, key)
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{key}: {path}:{number}: expected 2 tab-separated columns (source, target), found 1")
        for column, value in enumerate(fields[:2]):
            if not value.strip():
                raise DataError(f"{key}: {path}:{number}: empty column {column} (a pair corpus may not hold empty examples)")
    ds = _hf_load(
        "csv", path, key, cache_dir,
        delimiter="\t", header=None, column_names=["src", "tgt"], usecols=[0, 1],
        # Quotes are text (sentences contain them); "NA"/"null" are text, not missing values.
        quoting=csv.QUOTE_NONE, keep_default_na=False, na_filter=False,
        features=Features({"src": Value("string"), "tgt": Value("string")}),
    )
    src, tgt = _column(ds, "src"), _column(ds, "tgt")
    if src:
        src[0] = _strip_bom(src[0])
    if len(src) != len(lines):
        raise DataError(f"{key}: {path}: datasets read {len(src)} rows, expected {len(lines)}")
    return src, tgt


def _load_jsonl(
    name: str | None, key: str, cfg: DataConfig, base_dir: Path, cache_dir: Path | None
) -> tuple[list[str], list[str]]:
    path = _resolve(name, key, base_dir)
    lines = _scan_lines(path, key)
    first_type: dict[str, type] = {}
    for number, line in enumerate(lines, 1):
        where = f"{key}: {path}:{number}"
        record = parse_jsonl_line(line, where)
        for field in (cfg.src_field, cfg.tgt_field):
            jsonl_field(record, field, where, first_type)
    ds = _hf_load("json", path, key, cache_dir)
    src = _field_values(ds, cfg.src_field, f"{key}: {path}")
    return src, _field_values(ds, cfg.tgt_field, f"{key}: {path}")


def parse_jsonl_line(line: str, where: str) -> Any:
    """One JSONL record; DataError naming ``where`` (file:line) for any line json cannot take."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer over Python's 4300-digit limit
        raise DataError(f"{where}: invalid JSON: {str(exc)[:120]}") from None


def jsonl_field(record: Any, field: str, where: str, first_type: dict[str, type]) -> str:
    """Field ``field`` (dotted) of one JSONL record as text. It must be a non-empty string or
    an integer, of the same type on every line (``first_type`` remembers the first line's)."""
    value = _lookup(record, field, where)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: '{field}' must be a string or an integer, got {type(value).__name__}")
    if first_type.setdefault(field, type(value)) is not type(value):
        earlier = first_type[field].__name__
        raise DataError(f"{where}: '{field}' is {type(value).__name__} here but {earlier} on earlier lines")
    if isinstance(value, str) and not value.strip():
        raise DataError(f"{where}: empty '{field}' (a pair corpus may not hold empty examples)")
    return value if isinstance(value, str) else str(value)


def _lookup(record: Any, dotted: str, where: str) -> Any:
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(value) if isinstance(value, dict) else []
            raise DataError(f"{where}: no field '{dotted}' (keys: {', '.join(map(str, keys)) or 'none'})")
        value = value[part]
    return value


def _field_values(ds: Any, dotted: str, where: str) -> list[str]:
    """Column ``dotted`` (``a.b`` reaches into struct column ``a``) as strings."""
    top, *rest = dotted.split(".")
    if top not in ds.column_names:
        raise DataError(f"{where}: no field '{top}' (columns: {', '.join(ds.column_names)})")
    values = _column(ds, top)
    out = []
    for row, value in enumerate(values):
        value = _lookup(value, ".".join(rest), f"{where}: row {row}") if rest else value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            kind = type(value).__name__
            raise DataError(f"{where}: row {row}: '{dotted}' must be a string or an integer, got {kind}")
        if isinstance(value, str) and not value.strip():
            raise DataError(f"{where}: row {row}: empty '{dotted}' (a pair corpus may not hold empty examples)")
        out.append(str(value))
    return out


def _load_hub(
    cfg: DataConfig, hub_split: str | None, key: str, base_dir: Path, cache_dir: Path | None
) -> tuple[list[str], list[str]]:
    datasets = _datasets()

    name = str(cfg.hub_name)
    local = (base_dir / name).expanduser()
    if local.is_dir():  # a dataset directory next to the recipe, else a Hub id
        name = str(local.resolve())
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
