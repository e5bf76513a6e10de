"""Paths a model or run directory names must stay inside it (imports no torch).

An exported model or a run directory may come from someone else: its manifest, tokenizer.json,
checkpoint pointers and state.json name files by path. Every such path is refused unless it is
relative, free of ``..`` and, with every symlink resolved, still inside the directory. The check
happens before anything is opened or even stat'ed, and the message is the same whether or not
the outside file exists, so a crafted model cannot be used to probe the machine's files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from seqkit.errors import ModelError, SeqkitError, shorten


def inside(root: Path, name: str, where: str, error: type[SeqkitError] = ModelError) -> Path:
    """``root / name`` if it stays inside ``root`` (symlinks resolved); else ``error`` naming ``where``."""
    # Control characters are refused too: no file seqkit writes has one, and a newline in a name
    # would break the one-line error that echoes it.
    if not isinstance(name, str) or not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise error(f"{where}: expected a relative file name inside {root}, got {shorten(name)}")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or Path(name).is_absolute():
        raise error(f"{where}: {shorten(name)} is outside {root}; only paths inside it are read")
    path = root / name
    base = os.path.realpath(root)
    if os.path.commonpath([base, os.path.realpath(path)]) != base:
        raise error(f"{where}: {shorten(name)} is outside {root}; only paths inside it are read")
    return path


def regular_file(path: Path) -> bool:
    """Whether ``path`` (already checked by :func:`inside`) is a regular file: not a device or FIFO
    that would block or never end when read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
