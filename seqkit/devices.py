"""Device names from recipes and the command line (``auto | cpu | cuda | cuda:N | mps``) as torch
devices that exist on this machine, or one error naming the key that asked for them."""

from __future__ import annotations

import torch

from seqkit.errors import SeqkitError


def pick_device(name: str, key: str = "train.device") -> torch.device:
    """``name`` as a device of this machine; ``key`` (``train.device``, ``--device``) names the
    setting in the error. ``auto`` is the first GPU when CUDA works, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeqkitError(f"{key}: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda":
        built = torch.backends.cuda.is_built()
        check_cuda(name, key, built=built, count=torch.cuda.device_count() if built else 0)
    return device


def check_cuda(name: str, key: str, *, built: bool, count: int) -> None:
    """Refuse ``name`` (cuda or cuda:N) unless this torch has CUDA and GPU N is visible.

    ``built``: torch was compiled with CUDA; ``count``: GPUs it sees (after CUDA_VISIBLE_DEVICES).
    Checked here because torch's own failures come later, deep in a ``.to()``, as a traceback.
    """
    if not built:
        raise SeqkitError(f"{key}: {name} requested but this torch build has no CUDA support "
                          "(install a CUDA build of torch, or use auto or cpu)")
    if count == 0:
        raise SeqkitError(f"{key}: {name} requested but no CUDA device is visible (use auto or cpu)")
    index = torch.device(name).index
    if index is not None and index >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise SeqkitError(f"{key}: {name}: no such GPU; this machine has {count} ({visible})")
