"""Run directories: create one for training, reopen one for resume, evaluation and export.

A run directory alone reproduces the run: ``recipe.yaml`` (resolved, data paths absolute),
``tokenizer/`` and ``checkpoints/`` (see :mod:`seqkit.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import platform
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqkit import __version__
from seqkit import checkpoint as ckpt
from seqkit import distributed
from seqkit.cpu_memory import keep_freed_memory
from seqkit.data import Corpus, load_split
from seqkit.devices import torch_device
from seqkit.embeddings import apply_pretrained
from seqkit.errors import CheckpointError, SeqkitError
from seqkit.models import TorchStepper
from seqkit.openmp import thread_wait
from seqkit.recipe import Recipe, dump_recipe, load_recipe
from seqkit.rundir import (
    CACHE_DIR,
    EMA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RECIPE_FILE,
    TRAIN_LOG,
    atomic_write_text,
    is_run_dir,
    sha256_file,
)
from seqkit.runlock import lock_run_dir
from seqkit.streaming import StreamingData
from seqkit.tasks import TASKS, entry, load_task
from seqkit.tasks.common import log_model, new_model
from seqkit.train import Trainer, check_run_dir_writable, pick_device

log = logging.getLogger("seqkit")



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def open_recipe_for_training(path: Path, overrides: list[str], resume: bool) -> Recipe:
    """The recipe to train with. Resuming reads the run's own recipe.yaml (plus overrides)."""
    if path.is_dir():
        if not resume:
            raise SeqkitError(f"{path} is a directory: give a recipe file, or add --resume to continue that run")
        return _reopen(path, overrides)
    recipe = load_recipe(path, overrides)
    run_dir = Path(recipe.run_dir)
    if resume:
        if not is_run_dir(run_dir):
            raise CheckpointError(f"--resume: {run_dir} holds no run ({RECIPE_FILE} missing); train without --resume first")
        return _reopen(run_dir, overrides)
    if ckpt.has_checkpoint(run_dir):
        raise SeqkitError(
            f"{run_dir} already holds a trained run; continue it with --resume, or choose another "
            f"directory with --set run_dir=PATH"
        )
    return recipe


def _reopen(run_dir: Path, overrides: list[str]) -> Recipe:
    return load_recipe(run_dir / RECIPE_FILE, [*overrides, f"run_dir={run_dir}"])


def write_recipe(recipe: Recipe, run_dir: Path) -> None:
    atomic_write_text(run_dir / RECIPE_FILE, dump_recipe(recipe))


class InMemoryData:
    """The training data of a run held in memory: the train and valid splits, read now (for a
    task that needs no validation split, valid is cut from the training text when absent)."""

    streaming = False

    def __init__(self, recipe: Recipe, run_dir: Path):
        cache = run_dir / CACHE_DIR
        self.train = load_split(recipe.data, "train", recipe.base_dir, cache_dir=cache)
        has_valid = recipe.data.valid is not None or not entry(recipe.task).needs_valid
        self.valid = load_split(recipe.data, "valid", recipe.base_dir, cache_dir=cache) if has_valid else None

    def tokenizer_corpus(self) -> Corpus:
        """What the tokenizers learn from: the whole training split."""
        return self.train


def training_data(recipe: Recipe, run_dir: Path) -> InMemoryData | StreamingData:
    """The data source the recipe asks for: in memory, or streamed from disk (data.streaming)."""
    if not recipe.data.streaming:
        return InMemoryData(recipe, run_dir)
    if not entry(recipe.task).streams:
        streamed = " and ".join(name for name, e in TASKS.items() if e.streams)
        raise SeqkitError(f"data.streaming: implemented for {streamed}, not task '{recipe.task}'")
    return StreamingData(recipe, run_dir)


def build_task(recipe: Recipe, run_dir: Path, resume: bool, device: torch.device) -> Any:
    """The Trainer's adapter for the recipe's task: data, tokenizers (and labels), model."""
    task = load_task(recipe.task)
    data = training_data(recipe, run_dir)
    vocab = task.prepare_vocab(recipe, run_dir, data, resume)
    model = new_model(recipe.model, entry(recipe.task).model, vocab.sizes, device)
    apply_pretrained(recipe, model, vocab.src_tok, vocab.tgt_tok, initialize=not resume)  # resume: the checkpoint's
    log_model(model, vocab.describe())
    return task.trainable(recipe, model, vocab, data, device)


def train_run(recipe_path: Path, overrides: list[str], resume: bool) -> dict[str, Any]:
    """``seqkit train``: everything between a recipe and a trained run directory."""
    recipe = open_recipe_for_training(recipe_path, overrides, resume)
    cfg = recipe.train
    run_dir = Path(recipe.run_dir)
    dist = distributed.setup(cfg.device)  # None unless torchrun started several processes
    lock = None
    try:
        if dist is not None and recipe.data.streaming:
            raise SeqkitError(
                "data.streaming is not supported under torchrun yet (one process only): train with one "
                "process, or set data.streaming=false to load the corpus in memory in every process"
            )
        device = dist.device if dist is not None else pick_device(cfg.device)
        is_main = dist is None or dist.is_main  # only rank 0 writes into run_dir
        if is_main:
            check_run_dir_writable(run_dir)
            lock = lock_run_dir(run_dir)
            _attach_log_file(run_dir)
        if resume and not ckpt.has_checkpoint(run_dir):
            # Killed (or out of disk) before its first checkpoint was complete: nothing to continue.
            log.warning("--resume: %s holds no complete checkpoint; training starts from scratch", run_dir)
            resume = False
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # A step's largest tensors are mapped afresh each time unless malloc keeps them (seqkit.cpu_memory).
        malloc = keep_freed_memory() if device.type == "cpu" else "malloc unchanged (not the CPU)"
        seed_everything(recipe.seed)
        return _fit(recipe, run_dir, resume, device, dist, is_main, malloc)
    except OSError as exc:  # a disk that fills (or goes read-only) mid-run: one line naming the file
        where = exc.filename or run_dir
        raise CheckpointError(f"{where}: {exc.strerror or exc}; the last complete checkpoint is untouched") from None
    finally:
        distributed.teardown(dist)
        if lock is not None:
            lock.release()


def _fit(recipe: Recipe, run_dir: Path, resume: bool, device: torch.device, dist: Any, is_main: bool,
         malloc: str) -> dict[str, Any]:
    if is_main and not resume:
        write_recipe(recipe, run_dir)
    # Ranks > 0 build after rank 0 and read its tokenizer (and labels) as a resume would.
    task = distributed.main_first(dist, lambda first: build_task(recipe, run_dir, resume or not first, device), run_dir)
    distributed.seed_rank(dist, recipe.seed)
    trainer = Trainer(task, recipe.train, run_dir, seed=recipe.seed, metric=entry(recipe.task).metric, dist=dist)
    try:
        if resume:
            trainer.resume()
        if is_main:
            # A resumed recipe (with its overrides) replaces recipe.yaml only once it has been shown
            # to fit the checkpoint: a rejected override must not break the run for good.
            write_recipe(recipe, run_dir)
            trim_metrics(run_dir, trainer.step)
            _log_environment(recipe, run_dir, device, malloc)
        log.info("training on %s; run directory %s", device, run_dir)
        metrics = trainer.fit()
        distributed.barrier(dist)  # rank 0's last checkpoint is durable before any rank exits
        return metrics
    finally:
        trainer.close()  # DDP's wrapper goes before the process group (see distributed.teardown)


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics.jsonl events after ``step`` (and a line cut by a kill): a resume from a
    checkpoint at ``step`` logs those steps again, and a restart from scratch logs them all."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("step"), int) and event["step"] <= step:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


def _log_environment(recipe: Recipe, run_dir: Path, device: torch.device, malloc: str) -> None:
    """What train.log needs to reproduce the run: versions, device, threads, allocator, the recipe's hash."""
    digest = sha256_file(run_dir / RECIPE_FILE)
    log.info("seqkit %s, torch %s, python %s, %s; device %s, %d torch threads (%s), %s", __version__,
             torch.__version__, platform.python_version(), platform.platform(terse=True), device,
             torch.get_num_threads(), thread_wait(), malloc)
    log.info("recipe %s (sha256 %s)%s", run_dir / RECIPE_FILE, digest[:16],
             f": {recipe.description}" if recipe.description else "")


def _attach_log_file(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / TRAIN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("seqkit").addHandler(handler)


@dataclass
class LoadedRun:
    run_dir: Path
    recipe: Recipe
    src_tok: Any  # None for a language model
    tgt_tok: Any  # None for a classifier
    model: torch.nn.Module
    device: torch.device
    checkpoint: Path
    labels: list[str] | None = None  # a classifier's, in class-id order

    def stepper(self) -> TorchStepper:
        """The search step function over the model (seq2seq and language models)."""
        return TorchStepper(self.model, self.device)


def load_run(run_dir: Path, which: str = "best", device: str = "cpu") -> LoadedRun:
    """Reopen a trained run for evaluation, translation or export (model in eval mode)."""
    dev = torch_device(device)  # a bad name fails before anything is loaded
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    if not is_run_dir(run_dir):
        raise CheckpointError(f"{run_dir}: not a run directory ({RECIPE_FILE} missing)")
    recipe = _reopen(run_dir, [])
    vocab = load_task(recipe.task).open_vocab(run_dir)
    path = ckpt.resolve_checkpoint(run_dir, which)
    ckpt.verify_checkpoint(path)  # the sha256 of the tensor files
    model = new_model(recipe.model, entry(recipe.task).model, vocab.sizes, "cpu")
    # train.validate_ema chose this checkpoint on its moving average: that is the model to decode
    # (a `seqkit average` output keeps the recipe but holds one set of weights: model.safetensors).
    averaged = recipe.train.validate_ema and (path / EMA_FILE).is_file()
    ckpt.load_model_tensors(model, path / (EMA_FILE if averaged else MODEL_FILE))
    model.to(dev).eval()
    return LoadedRun(run_dir, recipe, vocab.src_tok, vocab.tgt_tok, model, dev, path, vocab.labels)
