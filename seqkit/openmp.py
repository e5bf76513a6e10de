"""How torch's OpenMP threads wait between kernels, set by ``seqkit`` before torch loads.

torch's CPU kernels run on GNU OpenMP (libgomp), which reads its environment once, when torch is
imported. A waiting thread spins (quick to resume, but it holds a core) or sleeps (frees the core,
but waking it costs time at every small kernel). Measured on the 2-core VM, 2 threads
(docs/benchmarks.md, "Threads waiting: spin or sleep"): on an idle machine a short spin
(``GOMP_SPINCOUNT=10000``) trained the translate recipe 1.4x and decoded with torch 1.6-1.8x
faster than sleeping at once (``OMP_WAIT_POLICY=PASSIVE``); beside one busy process it was the
other way round (0.55x training, 0.4x decoding). So the command looks at the machine when it
starts: spin briefly when it is idle, sleep when other work already holds half the CPUs.
"Holds" is read from the kernel's count of runnable tasks (/proc/loadavg), sampled for a few
milliseconds: the 1-minute load average, used where that count is not available, still counts a
job for a minute after it ended. onnxruntime has its own thread pool (seqkit.runtime.stepper).
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from pathlib import Path

SPIN_COUNT = "10000"
KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # libgomp reads both; either set means the user chose


def set_thread_wait(environ: MutableMapping[str, str] = os.environ, load: float | None = None,
                    cpus: int | None = None) -> str:
    """Unless ``environ`` already says how OpenMP threads wait (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``): ``OMP_WAIT_POLICY=PASSIVE`` when other work (``load``, default
    :func:`busy_cpus`) holds at least half the CPUs (``cpus``), else ``GOMP_SPINCOUNT=10000``.
    Call before torch is imported. Returns the setting, as the training log records it."""
    if any(key in environ for key in KEYS):
        return f"{thread_wait(environ)} (from the environment)"
    cpus = cpus if cpus is not None else os.cpu_count() or 1
    what = "busy CPUs"
    if load is None:
        load, what = busy_cpus()
    if load >= cpus / 2:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return f"OMP_WAIT_POLICY=PASSIVE ({what} {load:.1f} of {cpus})"
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return f"GOMP_SPINCOUNT={SPIN_COUNT} ({what} {load:.1f} of {cpus})"


def busy_cpus(samples: int = 10, interval: float = 0.005, loadavg: Path = Path("/proc/loadavg")) -> tuple[float, str]:
    """-> (CPUs other work keeps busy now, what that figure is).

    Linux: the mean over ``samples`` reads, ``interval`` seconds apart, of the runnable tasks in
    /proc/loadavg (its fourth field, "running/total") less this one. Elsewhere, or when the file
    cannot be read: the 1-minute load average (0 where there is none)."""
    counts = []
    try:
        for i in range(samples):
            if i:
                time.sleep(interval)
            running = loadavg.read_text(encoding="ascii").split()[3].split("/")[0]
            counts.append(max(int(running) - 1, 0))  # the reading task itself is runnable
    except (OSError, IndexError, ValueError):
        try:
            return os.getloadavg()[0], "load average"
        except OSError:  # not available on this platform
            return 0.0, "load average"
    return sum(counts) / len(counts), "busy CPUs"


def thread_wait(environ: MutableMapping[str, str] = os.environ) -> str:
    """How OpenMP threads wait in this process, for the training log."""
    return next((f"{key}={environ[key]}" for key in KEYS if key in environ), "libgomp's default spin")
