"""Device names, checked once for torch (run directories) and onnxruntime (exported models).

A device is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. The same name means the same
thing for ``train.device``, ``--device`` on a run directory and ``--device`` on an exported
model; a device that this machine cannot use is an error naming what to install, never a
silent fall-back to the CPU.

This module is torch-free: torch is imported inside :func:`torch_device` only, so the runtime
(exported models, no torch installed) can check its ``--device`` here too.
"""

from __future__ import annotations

import re
from typing import Any

from seqkit.errors import SeqkitError, shorten

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def check_device_name(name: str, where: str = "--device") -> str:
    """``name`` if it is a device name; SeqkitError naming ``where`` otherwise."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise SeqkitError(f"{where}: unknown device {shorten(name)}; expected {DEVICE_HELP}")
    return name


def _cuda_index(name: str) -> int:
    return int(name.split(":", 1)[1]) if ":" in name else 0


def torch_device(name: str, where: str = "--device") -> Any:
    """The ``torch.device`` for ``name``, after checking that this torch can use it."""
    import torch  # torch only for run directories; this module stays importable without it

    check_device_name(name, where)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "a CUDA build"
            raise SeqkitError(f"{where} {name}: this torch is {build} and sees no CUDA device; install a CUDA "
                              "build of torch on a machine with an NVIDIA GPU, or use cpu")
        count = torch.cuda.device_count()
        if _cuda_index(name) >= count:
            raise SeqkitError(f"{where} {name}: this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SeqkitError(f"{where} mps: this torch sees no Apple GPU (MPS); use cpu")
    return torch.device(name)


def ort_providers(name: str, where: str = "--device") -> list[Any]:
    """onnxruntime execution providers for ``name``: CPU, or CUDA (with CPU for the ops it lacks)."""
    import onnxruntime as ort  # heavy; the CLI imports this module before it knows the model kind

    check_device_name(name, where)
    available = ort.get_available_providers()
    if name == "auto":
        name = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "mps":
        raise SeqkitError(f"{where} mps: exported models run on cpu or cuda (onnxruntime has no MPS provider)")
    if "CUDAExecutionProvider" not in available:
        raise SeqkitError(f"{where} {name}: this onnxruntime has no CUDA provider; "
                          "pip install onnxruntime-gpu in place of onnxruntime for GPU decoding, or use cpu")
    return [("CUDAExecutionProvider", {"device_id": _cuda_index(name)}), "CPUExecutionProvider"]
