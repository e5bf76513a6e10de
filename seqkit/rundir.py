"""The run directory: its layout and the file primitives that write and check it (torch-free),
as :mod:`seqkit.runtime.format` is for exported models.

::

    RUN_DIR/
      recipe.yaml             RECIPE_FILE: the resolved recipe (overrides applied, data paths absolute)
      tokenizer/src/, tgt/    TOKENIZER_DIR: tokenizer.json (+ model files) per side
      labels.json             LABELS_FILE: a classifier's labels, index = class id
      checkpoints/            CHECKPOINTS_DIR: step-N/ (MODEL_FILE, OPTIMIZER_FILE, EMA_FILE, STATE_FILE), last.json, best.json
      metrics.jsonl           METRICS_FILE: one JSON object per event
      train.log               TRAIN_LOG
      tb/                     TB_DIR: TensorBoard events
      cache/                  CACHE_DIR: the datasets cache (and cache/streaming/)

Writes are atomic: a temporary sibling, fsync, rename, then an fsync of the directory so the
rename itself is durable. Every writer of a run directory (checkpoints, recipe.yaml, labels,
tokenizers, metrics trimming) goes through :func:`atomic_write_bytes`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

RECIPE_FILE = "recipe.yaml"
TOKENIZER_DIR = "tokenizer"
LABELS_FILE = "labels.json"
CHECKPOINTS_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_FILE = "ema.safetensors"  # train.ema: the moving average of the weights (seqkit.ema)
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
TRAIN_LOG = "train.log"
TB_DIR = "tb"
CACHE_DIR = "cache"


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RECIPE_FILE).is_file()


def fsync_dir(path: Path) -> None:
    """Make a rename (or creation) inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (the digest manifests and state.json hold)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """The JSON value in ``path`` (UTF-8). Raises OSError, UnicodeDecodeError, RecursionError or
    ValueError (json.JSONDecodeError among them); each caller names the file in its own error."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
