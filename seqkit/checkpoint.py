"""Checkpoints: safetensors weights + JSON state, written atomically, never unpickled.

Layout under ``RUN_DIR/checkpoints/``::

    step-00001200/          one complete checkpoint (written as a .tmp dir, then renamed)
        model.safetensors   model weights
        optimizer.safetensors  optimizer tensors (Adam moments, ...)
        ema.safetensors     the moving average of the weights, when train.ema is on
        state.json          step, epoch, data position, metrics, optimizer hyper-parameters,
                            schedule state, RNG state, sha256 of both tensor files
    last.json               {"checkpoint": "step-00001200", ...} replaced atomically
    best.json               the same for the best validation score

A checkpoint directory only ever appears complete (``rename`` is atomic), and a pointer is
only written after its directory is durable, so a kill at any moment leaves the previous
pointer valid. Loading re-checks the sha256 of each tensor file.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqkit.errors import CheckpointError, shorten
from seqkit.rundir import atomic_write_text, fsync_dir, read_json, sha256_file
from seqkit.safepath import inside, regular_file

POINTERS = ("last", "best")
# The only names a pointer may hold and the only files state.json may hash: anything else
# (an absolute path, ``../``, /dev/zero) would make loading read outside the run directory.
CHECKPOINT_NAME = re.compile(r"step-\d{8,}")
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "ema.safetensors")


# -- optimizer state <-> (tensors, json) -------------------------------------------------------
def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for idx, slots in state["state"].items():
        plain: dict[str, Any] = {}
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[name] = value
        per_param[str(idx)] = plain
    return tensors, {"param_groups": state["param_groups"], "plain": per_param}


def join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["plain"].items()}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, str]:
    out = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")}
    if torch.cuda.is_available():
        out["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(saved: dict[str, Any]) -> None:
    raw = base64.b64decode(saved["torch"])
    torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8) for s in saved["cuda"]])


# -- whole checkpoints ---------------------------------------------------------------------------
def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with tied parameters stored once (safetensors refuses shared storage)."""
    seen: dict[int, str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel() > 0:
            continue
        seen[key] = name
        out[name] = tensor.detach().cpu().contiguous()
    return out


def load_model_tensors(model: torch.nn.Module, path: Path) -> None:
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
        raise CheckpointError(f"{path}: cannot read weights: {exc}") from None
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            # A diverged or damaged model decodes to no hypothesis at all; say so here, by name.
            raise CheckpointError(f"{path}: tensor {shorten(name)} holds NaN or infinite values")
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {shorten(name)} (does the recipe match the checkpoint?)")
        if tuple(expected[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: tensor '{name}' has shape {tuple(tensor.shape)}, model expects {tuple(expected[name].shape)}"
            )
    missing = model.load_state_dict(tensors, strict=False).missing_keys
    # Tied weights are stored once; the missing alias is filled through the tie itself.
    untied = [k for k in missing if not _is_tied_alias(model, k, tensors)]
    if untied:
        raise CheckpointError(f"{path}: missing tensor '{untied[0]}' ({len(untied)} missing in all)")


def _is_tied_alias(model: torch.nn.Module, name: str, tensors: dict[str, torch.Tensor]) -> bool:
    state = model.state_dict()
    ptr = state[name].data_ptr()
    return any(state[k].data_ptr() == ptr for k in tensors if k in state)


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    pointers: tuple[str, ...] = ("last",),
    keep: int = 1,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``step-N/`` atomically, point ``pointers`` at it, prune unreferenced ones.

    A write that fails (full disk, quota, I/O error) raises one CheckpointError naming the
    directory; the previous checkpoint and pointers are untouched and the partial temp is removed.
    ``extra`` maps more tensor files (``ema.safetensors``) to their tensors.
    """
    name = f"step-{step:08d}"
    tmp = ckpt_dir / f".{name}.tmp-{os.getpid()}"
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = ckpt_dir / name
        if not final.exists():
            _write_checkpoint_dir(tmp, final, model, optimizer, dict(state, step=step), extra or {})
        for pointer in pointers:
            atomic_write_text(ckpt_dir / f"{pointer}.json", json.dumps({"checkpoint": name, "step": step, "metrics": state.get("metrics", {})}))
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
        raise CheckpointError(f"{ckpt_dir}: cannot write checkpoint {name}: {reason}; "
                              "the previous checkpoint is untouched") from None
    prune(ckpt_dir, keep)
    return final


def _write_checkpoint_dir(tmp: Path, final: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                          state: dict[str, Any], extra: dict[str, dict[str, torch.Tensor]]) -> None:
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(model_tensors(model), str(tmp / "model.safetensors"))
    for fname, tensors in extra.items():
        save_file(tensors, str(tmp / fname))
    meta: dict[str, Any] = {}
    if optimizer is not None:
        opt_tensors, meta = split_optimizer_state(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    full = dict(state, optimizer=meta, rng=rng_state())
    full["sha256"] = {f.name: sha256_file(f) for f in sorted(tmp.glob("*.safetensors"))}
    (tmp / "state.json").write_text(json.dumps(full, indent=1), encoding="utf-8")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def prune(ckpt_dir: Path, keep: int) -> None:
    """Delete checkpoint dirs no pointer names, keeping the newest ``keep``; and stale temps."""
    referenced = {read_pointer(ckpt_dir, p) for p in POINTERS}
    dirs = sorted(d for d in ckpt_dir.glob("step-*") if d.is_dir())
    recent = set(dirs[-keep:]) if keep > 0 else set()
    for d in dirs:
        if d.name not in referenced and d not in recent:
            # Renamed first (atomic): a kill during the delete leaves a temp name, which the
            # next prune removes, never a half-deleted directory that looks like a checkpoint.
            doomed = d.with_name(f".{d.name}.tmp-{os.getpid()}")
            if doomed.exists():
                shutil.rmtree(doomed, ignore_errors=True)
            os.replace(d, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    for tmp in ckpt_dir.glob(".step-*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in ckpt_dir.glob(".*.json.tmp-*"):  # a pointer write killed before its rename
        tmp.unlink(missing_ok=True)


def read_pointer(ckpt_dir: Path, pointer: str) -> str | None:
    path = ckpt_dir / f"{pointer}.json"
    if not path.exists():
        return None
    try:
        name = read_json(path)["checkpoint"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint pointer ({type(exc).__name__})") from None
    if not (isinstance(name, str) and CHECKPOINT_NAME.fullmatch(name)):
        raise CheckpointError(f"{path}: 'checkpoint' must name a step-NNNNNNNN directory beside it, "
                              f"got {shorten(name)}")
    return name


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete checkpoint (a ``last`` pointer to an existing one)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    try:
        name = read_pointer(ckpt_dir, "last")
    except CheckpointError:
        return True  # a damaged pointer is reported where the run is opened, not papered over
    return name is not None and (ckpt_dir / name).is_dir()


def resolve_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """The checkpoint dir that ``which`` (best|last) points to; best falls back to last."""
    ckpt_dir = run_dir / "checkpoints"
    for pointer in (which, "last") if which == "best" else (which,):
        name = read_pointer(ckpt_dir, pointer)
        if name is not None:
            path = inside(ckpt_dir, name, str(ckpt_dir / f"{pointer}.json"), CheckpointError)
            if not path.is_dir():
                raise CheckpointError(f"{ckpt_dir / (pointer + '.json')}: points to missing checkpoint {path}")
            return path
    raise CheckpointError(f"{run_dir}: no checkpoint found (is this a run directory that has trained?)")


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    """state.json of one checkpoint, after checking the sha256 of its tensor files."""
    try:
        state = json.loads(inside(path, "state.json", str(path), CheckpointError).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: state.json missing (incomplete checkpoint)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise CheckpointError(f"{path / 'state.json'}: corrupt JSON ({type(exc).__name__})") from None
    _check_state_shape(state, path / "state.json")
    for fname, digest in state["sha256"].items():
        fpath = inside(path, fname, str(path / "state.json"), CheckpointError)
        if not regular_file(fpath):
            raise CheckpointError(f"{fpath}: missing from checkpoint")
        if sha256_file(fpath) != digest:
            raise CheckpointError(f"{fpath}: sha256 mismatch; the file is corrupt or was modified")
    return state


# Keys a resume reads, with their JSON types (see Trainer._state).
_STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "step": int, "epoch": int, "batch_in_epoch": int, "elapsed": (int, float), "stale": int,
    "best": (int, float, type(None)), "schedule": dict, "optimizer": dict, "rng": dict, "sha256": dict,
}


def _check_state_shape(state: Any, where: Path) -> None:
    """What every load reads: a JSON object whose sha256 lists the model (and only tensor files)."""
    if not isinstance(state, dict) or not isinstance(state.get("sha256"), dict):
        raise CheckpointError(f"{where}: expected a JSON object with a 'sha256' object")
    for fname, digest in state["sha256"].items():
        if fname not in TENSOR_FILES or not isinstance(digest, str):
            raise CheckpointError(f"{where}: sha256 may only list {', '.join(TENSOR_FILES)}, got {shorten(fname)}")
    if "model.safetensors" not in state["sha256"]:
        raise CheckpointError(f"{where}: sha256 does not list model.safetensors")


def verify_checkpoint(path: Path) -> None:
    """Check one checkpoint without loading it: state.json readable, the tensor files' sha256."""
    load_checkpoint_state(path)


def check_resume_state(state: dict[str, Any], path: Path) -> None:
    """What a resume reads besides the tensors (see Trainer._state): present and of its JSON type."""
    for key, kind in _STATE_KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path / 'state.json'}: '{key}' is missing or of the wrong type "
                                  "(is this checkpoint from a training run?)")
    if "optimizer.safetensors" not in state["sha256"] or not {"param_groups", "plain"} <= set(state["optimizer"]):
        raise CheckpointError(f"{path}: holds no optimizer state to resume from")


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path, meta: dict[str, Any]) -> None:
    tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer.load_state_dict(join_optimizer_state(tensors, meta))
