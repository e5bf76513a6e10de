"""One trainer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock``.

Two trainers on one directory interleave metrics.jsonl and race on the checkpoint renames. The
lock is an advisory ``flock`` (released by the kernel when the holder exits, however it exits,
so a kill -9 leaves no stale lock); the file holds the holder's PID for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from seqkit.errors import CheckpointError

LOCK_FILE = ".lock"


class RunLock:
    """Held from :func:`lock_run_dir` until :meth:`release` (or the process exits)."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def lock_run_dir(run_dir: Path) -> RunLock:
    """Take the run directory's lock; CheckpointError naming the holder's PID if it is taken."""
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise CheckpointError(f"{run_dir}: another trainer (PID {holder}) is using this run directory; "
                              "wait for it to finish or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return RunLock(fd)
