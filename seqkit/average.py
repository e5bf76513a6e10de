"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, written as a new
run directory that ``evaluate``, ``translate`` and ``export`` open like any other.

Averaging the last few checkpoints of one run (fairseq's ``average_checkpoints.py``, OpenNMT-py's
``average_models.py``) usually gains a little BLEU for free. The inputs are safetensors and the
output is safetensors: nothing is unpickled. Checkpoints of different architectures (a tensor
missing or shaped differently) are refused with both files named.

Output layout: ``OUT/recipe.yaml`` (the source run's, ``run_dir`` set to OUT), ``OUT/tokenizer/``
(and ``labels.json`` for a classifier) copied, ``OUT/checkpoints/step-N/`` holding the averaged
``model.safetensors`` and a ``state.json`` that lists the averaged checkpoints; ``last`` and
``best`` point at it. The directory is built beside OUT and renamed into place when complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from seqkit import checkpoint as ckpt
from seqkit.errors import CheckpointError
from seqkit.rundir import fsync_dir, sha256_file

log = logging.getLogger("seqkit")

RUN_FILES = ("recipe.yaml", "labels.json")  # copied when present, beside tokenizer/


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoint directories of ``run_dir``, oldest first."""
    ckpt_dir = run_dir / "checkpoints"
    if not (run_dir / "recipe.yaml").is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (recipe.yaml missing)")
    return sorted(d for d in ckpt_dir.glob("step-*") if d.is_dir())


def select_checkpoints(run_dir: Path, *, last: int | None = None, steps: list[int] | None = None) -> list[Path]:
    """The last ``last`` checkpoints, or those of ``steps``, of one run."""
    available = run_checkpoints(run_dir)
    if steps:
        by_step = {int(d.name.split("-", 1)[1]): d for d in available}
        missing = [s for s in steps if s not in by_step]
        if missing:
            have = ", ".join(str(s) for s in sorted(by_step)) or "none"
            raise CheckpointError(f"{run_dir}: no checkpoint at step {missing[0]} (saved steps: {have})")
        return [by_step[s] for s in steps]
    count = last or len(available)
    if len(available) < count:
        raise CheckpointError(f"{run_dir}: --last {count} asks for more checkpoints than the {len(available)} "
                              "saved; train with a larger train.keep_checkpoints")
    return available[-count:]


def expand_sources(paths: list[Path], *, last: int | None, steps: list[int] | None, at_least: int = 2) -> list[Path]:
    """Checkpoint directories from ``paths``: a run directory gives its ``--last N`` (or
    ``--steps``) checkpoints, a checkpoint directory (``RUN/checkpoints/step-N``) itself."""
    out: list[Path] = []
    for path in paths:
        if (path / "state.json").is_file():
            if last or steps:
                raise CheckpointError(f"{path}: a checkpoint directory; --last/--steps choose checkpoints of a run")
            out.append(path)
        elif path.is_dir():
            out += select_checkpoints(path, last=last, steps=steps)
        else:
            raise CheckpointError(f"{path}: no such run or checkpoint directory")
    if len(out) < at_least:
        raise CheckpointError(f"average: {len(out)} checkpoint(s) found; averaging needs at least {at_least}")
    return out


def average_weights(checkpoints: list[Path], weights: str = "model.safetensors") -> dict[str, torch.Tensor]:
    """Mean of the checkpoints' ``weights`` tensors (``model.safetensors``, or ``ema.safetensors``
    for the moving averages; float tensors averaged in float64, integer tensors must be equal).
    Every file's sha256 is verified first."""
    if not checkpoints:
        raise CheckpointError("average: no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first = checkpoints[0] / weights
    for path in checkpoints:
        state = ckpt.load_checkpoint_state(path)
        if weights not in state["sha256"]:
            raise CheckpointError(f"{path}: holds no {weights} (was it trained with train.ema?)")
        tensors = load_file(str(path / weights))
        if not total:
            total = {k: v.to(torch.float64) if v.is_floating_point() else v.clone() for k, v in tensors.items()}
            dtypes = {k: v.dtype for k, v in tensors.items()}
            continue
        _check_same_architecture(first, total, path / weights, tensors)
        for name, value in tensors.items():
            if value.is_floating_point():
                total[name] += value.to(torch.float64)
            elif not torch.equal(total[name], value):
                raise CheckpointError(f"{path / weights}: integer tensor '{name}' differs from {first}")
    n = len(checkpoints)
    return {k: (v / n).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}


def _check_same_architecture(first: Path, ref: dict[str, torch.Tensor], other: Path,
                             tensors: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(ref) ^ set(tensors))
    if missing:
        raise CheckpointError(f"average: {first} and {other} are different architectures "
                              f"(tensor '{missing[0]}' is in only one of them)")
    for name, value in tensors.items():
        if tuple(value.shape) != tuple(ref[name].shape):
            raise CheckpointError(f"average: {first} and {other} are different architectures (tensor '{name}' "
                                  f"is {tuple(ref[name].shape)} in one, {tuple(value.shape)} in the other)")


def average_run(sources: list[Path], out_dir: Path, *, weights: str = "model.safetensors") -> Path:
    """Write the average of ``sources``' ``weights`` (checkpoint directories; the first one's run
    supplies recipe and tokenizer) as the run directory ``out_dir``; returns its checkpoint."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CheckpointError(f"{out_dir}: already exists; average into a new directory")
    tensors = average_weights(sources, weights)
    source_run = sources[0].parent.parent
    step = max(int(d.name.split("-", 1)[1]) for d in sources)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_run(tmp, out_dir, source_run, sources, tensors, step, weights)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
        fsync_dir(out_dir.parent)
    except OSError as exc:
        raise CheckpointError(f"{out_dir}: cannot write the averaged run ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("averaged %s of %d checkpoint(s) (%s) into %s", weights, len(sources), ", ".join(d.name for d in sources),
             out_dir)
    return out_dir / "checkpoints" / f"step-{step:08d}"


def _write_run(tmp: Path, out_dir: Path, source_run: Path, sources: list[Path], weights: dict[str, torch.Tensor],
               step: int, weights_file: str) -> None:
    (tmp / "checkpoints").mkdir(parents=True)
    shutil.copytree(source_run / "tokenizer", tmp / "tokenizer")
    for name in RUN_FILES:
        if (source_run / name).is_file():
            shutil.copy2(source_run / name, tmp / name)
    recipe = (tmp / "recipe.yaml").read_text(encoding="utf-8")
    (tmp / "recipe.yaml").write_text(_with_run_dir(recipe, out_dir), encoding="utf-8")
    name = f"step-{step:08d}"
    final = tmp / "checkpoints" / name
    final.mkdir()
    save_file(weights, str(final / "model.safetensors"))
    state: dict[str, Any] = {"step": step, "averaged_from": [str(d.resolve()) for d in sources],
                             "weights": weights_file,
                             "metrics": {}, "sha256": {"model.safetensors": sha256_file(final / "model.safetensors")}}
    (final / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    for pointer in ckpt.POINTERS:
        (tmp / "checkpoints" / f"{pointer}.json").write_text(json.dumps({"checkpoint": name, "step": step,
                                                                          "metrics": {}}), encoding="utf-8")


def _with_run_dir(recipe_yaml: str, out_dir: Path) -> str:
    tree = yaml.safe_load(recipe_yaml)
    tree["run_dir"] = str(out_dir)
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
