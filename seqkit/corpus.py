"""Local corpus files, read and checked in one place for both paths: a split loaded in memory
(:func:`seqkit.data.load_split`) and the training split streamed (:func:`seqkit.streaming.read_pairs`).

A file (any of them may be gzip-compressed) is read whole (in memory: one read, no second pass)
or line by line (streaming: bounded memory); either way every line goes through the same checks
and the same errors, which name the recipe key, the file and the line: not UTF-8, a carriage
return inside a line, an empty example, a missing column or JSONL field, invalid JSON. Lines
lose their ``\\n`` (or ``\\r\\n``) and nothing else; a byte-order mark at the start of a file is
not text. ``datasets`` is not involved: it stays for hub corpora and the Arrow cache.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from seqkit.errors import DataError

BOM = "\ufeff"  # an editor's byte-order mark, decoded


def resolve(name: str | None, key: str, base_dir: Path) -> Path:
    """The file ``name`` (relative to ``base_dir``), which must exist."""
    assert name is not None  # DataConfig's validator guarantees it for the format
    path = Path(name).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise DataError(f"{key}: file not found: {path}")
    return path


def read_failure(exc: BaseException) -> str:
    if isinstance(exc, (zlib.error, EOFError)):
        return f"corrupt or truncated gzip data ({str(exc)[:120] or type(exc).__name__})"
    return str(exc)[:200]


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _whole(path: Path, key: str) -> bytes:
    try:
        with _open(path) as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a corrupt body zlib.error
        raise DataError(f"{key}: cannot read {path}: {read_failure(exc)}") from None


def _raw_lines(path: Path, key: str, whole: bool) -> Iterator[bytes]:
    """The file's lines as bytes, each with its terminator: from one read of the whole file, or
    read one at a time (a failure then says after which line)."""
    if whole:
        yield from _split_on_newline(_whole(path, key))
        return
    number = 0
    try:
        with _open(path) as fh:
            for number, raw in enumerate(fh, 1):
                yield raw
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a gz file with a corrupt body
        raise DataError(f"{key}: cannot read {path} (after line {number}): {read_failure(exc)}") from None


def _split_on_newline(data: bytes) -> list[bytes]:
    """Lines ending at ``\\n`` only (bytes.splitlines would also split at a lone ``\\r``), each
    with its newline; the last without one when the file does not end in a newline."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    return lines + [parts[-1]] if parts[-1] else lines


def lines(path: Path, key: str, whole: bool) -> Iterator[tuple[int, str]]:
    """(line number, text without its newline) of every line; DataError naming key, file and line."""
    number = 0
    for number, raw in enumerate(_raw_lines(path, key, whole), 1):
        try:
            # Decoded with its newline, so a sequence cut at the end of a line reads as the
            # invalid byte before the newline, as in a decode of the whole file.
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{key}: {path}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}: {exc.reason}); "
                "convert the file to UTF-8"
            ) from exc
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        if number == 1 and text.startswith(BOM):
            text = text[len(BOM):]
        if "\r" in text:
            raise DataError(f"{key}: {path}:{number}: carriage return inside a line (it would split the line in two)")
        yield number, text
    if number == 0:
        raise DataError(f"{key}: corpus is empty: {path}")


def read_text(path: Path, key: str) -> str:
    """A whole document (format text): newlines as universal newlines read them (``\\r\\n`` and
    ``\\r`` become ``\\n``), no byte-order mark; DataError with the line of the first bad byte."""
    raw = _whole(path, key)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{key}: {path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}: {exc.reason}); "
            "convert the file to UTF-8"
        ) from exc
    text = text[len(BOM):] if text.startswith(BOM) else text
    if not text:
        raise DataError(f"{key}: corpus is empty: {path}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def nonempty(text: str, where: str, what: str = "line") -> str:
    if not text.strip():
        raise DataError(f"{where}: empty {what} (a pair corpus may not hold empty examples)")
    return text


def _misaligned(key: str, src_path: Path, n_src: int, tgt_path: Path, n_tgt: int) -> DataError:
    return DataError(f"{key}: parallel files are misaligned: {src_path} has {n_src} lines, {tgt_path} has {n_tgt} lines")


def parallel_pairs(src_path: Path, tgt_path: Path, key: str, whole: bool) -> Iterator[tuple[str, str]]:
    """Aligned lines of two files. Whole: both files are read and counted before any line is
    checked for emptiness; streamed: pair by pair, the counts compared at the end."""
    src_lines, tgt_lines = lines(src_path, f"{key}.src", whole), lines(tgt_path, f"{key}.tgt", whole)
    if whole:
        src, tgt = list(src_lines), list(tgt_lines)
        if len(src) != len(tgt):
            raise _misaligned(key, src_path, len(src), tgt_path, len(tgt))
        for side, path, side_lines in (("src", src_path, src), ("tgt", tgt_path, tgt)):
            for number, text in side_lines:
                nonempty(text, f"{key}.{side}: {path}:{number}")
        yield from zip((t for _, t in src), (t for _, t in tgt))
        return
    n, a, b = 0, None, None
    while True:
        a, b = next(src_lines, None), next(tgt_lines, None)
        if a is None or b is None:
            break
        n += 1
        yield nonempty(a[1], f"{key}.src: {src_path}:{n}"), nonempty(b[1], f"{key}.tgt: {tgt_path}:{n}")
    if a is not None or b is not None:
        n_src = n + (a is not None) + sum(1 for _ in src_lines)
        n_tgt = n + (b is not None) + sum(1 for _ in tgt_lines)
        raise _misaligned(key, src_path, n_src, tgt_path, n_tgt)


def tsv_pairs(path: Path, key: str, whole: bool) -> Iterator[tuple[str, str]]:
    """Column 0 and column 1 of each line (further columns ignored; quotes are text)."""
    for number, line in lines(path, key, whole):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{key}: {path}:{number}: expected 2 tab-separated columns (source, target), found 1")
        for column in (0, 1):
            nonempty(fields[column], f"{key}: {path}:{number}", f"column {column}")
        yield fields[0], fields[1]


def jsonl_pairs(path: Path, key: str, src_field: str, tgt_field: str, whole: bool) -> Iterator[tuple[str, str]]:
    """The two fields of each JSONL record (see :func:`jsonl_field`)."""
    first_type: dict[str, type] = {}
    for number, line in lines(path, key, whole):
        where = f"{key}: {path}:{number}"
        record = parse_jsonl_line(line, where)
        yield jsonl_field(record, src_field, where, first_type), jsonl_field(record, tgt_field, where, first_type)


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
    value = lookup(record, field, where)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: '{field}' must be a string or an integer, got {type(value).__name__}")
    if first_type.setdefault(field, type(value)) is not type(value):
        earlier = first_type[field].__name__
        raise DataError(f"{where}: '{field}' is {type(value).__name__} here but {earlier} on earlier lines")
    if isinstance(value, str) and not value.strip():
        raise DataError(f"{where}: empty '{field}' (a pair corpus may not hold empty examples)")
    return value if isinstance(value, str) else str(value)


def lookup(record: Any, dotted: str, where: str) -> Any:
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(value) if isinstance(value, dict) else []
            raise DataError(f"{where}: no field '{dotted}' (keys: {', '.join(map(str, keys)) or 'none'})")
        value = value[part]
    return value


def unzip(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    src, tgt = [], []
    for s, t in pairs:
        src.append(s)
        tgt.append(t)
    return src, tgt
