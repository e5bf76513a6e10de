"""seqkit.textio: the CLI's line reader (gzip files, damaged gzip, pipes)."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import pytest

from seqkit.errors import InputError
from seqkit.textio import read_aligned, read_lines


def test_gzip_files_read_decompressed_whatever_their_name(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress("ein hund\r\nzwei katzen\n".encode()))
    (tmp_path / "b.txt").write_bytes(gzip.compress(b"x\ny\n"))  # named .txt, gzip inside
    (tmp_path / "c.txt").write_text("one\ntwo\n")
    assert read_lines(tmp_path / "a.gz") == ["ein hund", "zwei katzen"]
    assert read_lines(tmp_path / "b.txt") == ["x", "y"]
    assert read_aligned(tmp_path / "a.gz", [tmp_path / "c.txt"], "why")[1] == [["one", "two"]]


def test_damaged_gzip_is_one_error_naming_the_file(tmp_path):
    body = bytearray(gzip.compress(b"".join(b"line %d\n" % i for i in range(5000))))
    for i in range(40, len(body) - 8):
        body[i] ^= 0x5A
    (tmp_path / "bad.gz").write_bytes(bytes(body))
    with pytest.raises(InputError, match=r"bad\.gz: cannot read past line \d+: corrupt or truncated gzip data"):
        read_lines(tmp_path / "bad.gz")
    (tmp_path / "latin1.gz").write_bytes(gzip.compress("caf\xe9\n".encode("latin-1")))
    with pytest.raises(InputError, match=r"latin1\.gz: line 1 is not UTF-8 text"):
        read_lines(tmp_path / "latin1.gz")


def test_a_named_pipe_reads_without_seeking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: Path(fifo).write_bytes(gzip.compress(b"a\nb\n")))
    writer.start()
    assert read_lines(fifo) == ["a", "b"]
    writer.join(timeout=30)
