"""Lines in and out of the CLI: UTF-8 whatever the locale, errors with line numbers, input
that streams from a terminal or an open pipe, and output files that appear only complete.

Input lines end at ``\\n`` only (a ``\\r\\n`` ending loses its ``\\r``): a stray ``\\r`` inside a
line stays in that line, so the output has exactly one line per input line. Torch-free.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import queue
import stat
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from seqkit.corpus import read_failure
from seqkit.errors import InputError

# Lines taken into one model call at most when input streams; a full pipe still gets
# length-bucketed batches within each chunk (Translator sorts a chunk by length).
STREAM_CHUNK_LINES = 1024


def decode_line(raw: bytes, where: str, lineno: int) -> str:
    """One input line (bytes, newline included or not) as text; InputError naming the line."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: line {lineno} is not UTF-8 text ({exc.reason} at byte {exc.start + 1} "
                         "of the line)") from None


GZIP_MAGIC = b"\x1f\x8b"


def _source(input_path: Path | None) -> tuple[BinaryIO, str, list[BinaryIO]]:
    """(binary stream, name for errors, what to close after it). A gzip file (by its magic bytes,
    whatever its name) is read decompressed, as the recipe's corpora are."""
    if input_path is not None:
        try:
            fh = open(input_path, "rb")
            if fh.peek(2)[:2] == GZIP_MAGIC:  # peek, not read + seek: -i may name a pipe
                # GzipFile never closes a fileobj it was given: both are closed after reading.
                gz = gzip.GzipFile(fileobj=fh, mode="rb")
                return gz, str(input_path), [gz, fh]  # type: ignore[list-item,return-value]
            return fh, str(input_path), [fh]
        except OSError as exc:
            raise InputError(f"{input_path}: cannot read ({exc.strerror or exc})") from None
    return sys.stdin.buffer, "stdin", []


def read_lines(input_path: Path | None) -> list[str]:
    """Every line of ``input_path`` (default: stdin; gzip files decompressed), read to the end."""
    stream, where, owned = _source(input_path)
    lines: list[str] = []
    try:
        for raw in stream:
            lines.append(decode_line(raw, where, len(lines) + 1))
        return lines
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or damaged gzip body, an I/O error
        raise InputError(f"{where}: cannot read past line {len(lines)}: {read_failure(exc)}") from None
    finally:
        for fh in owned:
            fh.close()


def read_aligned(first: Path, others: list[Path], what: str) -> tuple[list[str], list[list[str]]]:
    """The lines of ``first`` and of each of ``others``, which must have as many lines;
    ``what`` says why in the error (e.g. "one reference line per source line")."""
    lines = read_lines(first)
    rest = [read_lines(path) for path in others]
    for path, other in zip(others, rest):
        if len(other) != len(lines):
            raise InputError(f"{path}: {len(other)} lines, but {first} has {len(lines)}: {what}")
    return lines, rest


def streams(input_path: Path | None) -> bool:
    """True when input should be answered as it arrives: stdin from a terminal or a pipe
    (not a file given with -i, nor a regular file redirected to stdin)."""
    if input_path is not None:
        return False
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):  # no real stdin (e.g. a test runner's replacement)
        return False
    return not stat.S_ISREG(mode)


def line_chunks(input_path: Path | None, max_lines: int = STREAM_CHUNK_LINES) -> Iterator[tuple[int, list[str]]]:
    """``(first line number, lines)`` chunks of the input. A file comes as one chunk; a terminal
    or pipe yields as soon as a line has arrived, with whatever else is already waiting (up to
    ``max_lines``), so an interactive user gets each answer at once and a full pipe still
    decodes in large batches."""
    if not streams(input_path):
        yield 1, read_lines(input_path)
        return
    lines: queue.Queue = queue.Queue(maxsize=4 * max_lines)
    # The daemon reader reads its own duplicate of the descriptor with os.read (see _read_into):
    # no buffered object whose lock it could hold when an error ends the process.
    reader = threading.Thread(target=_read_into, args=(os.dup(sys.stdin.fileno()), lines), daemon=True)
    reader.start()
    lineno, done = 1, False
    while not done:
        chunk: list[str] = []
        item = lines.get()  # block until one line (or the end) arrives
        while True:
            if item is None:
                done = True
                break
            if isinstance(item, BaseException):
                raise item
            chunk.append(decode_line(item, "stdin", lineno + len(chunk)))
            if len(chunk) >= max_lines:
                break
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
        if chunk:
            yield lineno, chunk
            lineno += len(chunk)


def _read_into(fd: int, lines: queue.Queue) -> None:
    """The lines of file descriptor ``fd`` (newlines kept), then None.

    os.read rather than sys.stdin.buffer: this daemon thread blocked in the buffer's readline
    holds the buffer's lock, and an interpreter exiting meanwhile (an error on an earlier line)
    then aborts with "could not acquire lock for <stdin> at interpreter shutdown" (SIGABRT,
    seen in tests/test_runtime.py about one run in three)."""
    pending = bytearray()
    try:
        while chunk := os.read(fd, 1 << 16):
            pending += chunk
            start = 0
            while (end := pending.find(b"\n", start)) != -1:
                lines.put(bytes(pending[start : end + 1]))
                start = end + 1
            del pending[:start]
        if pending:
            lines.put(bytes(pending))
    except BaseException as exc:  # noqa: BLE001 - handed to the reading thread, which raises it
        lines.put(InputError(f"stdin: read failed ({exc})"))
    lines.put(None)


@contextlib.contextmanager
def open_output(output_path: Path | None) -> Iterator[TextIO]:
    """``output_path`` for writing, or stdout as UTF-8 text (left open).

    A file is written beside its destination and renamed into place only when everything
    was written, so a failure halfway leaves any earlier file of that name untouched.
    """
    if output_path is None:
        sys.stdout.flush()
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
        try:
            yield out
        finally:
            out.flush()
            out.detach()  # never close the process's stdout
        return
    if output_path.is_dir():
        raise InputError(f"{output_path}: is a directory; give a file name for the output")
    tmp = output_path.with_name(f".{output_path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(tmp, output_path)
    except OSError as exc:
        raise InputError(f"{output_path}: cannot write ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
