"""Device names (``train.device``, ``--device``) become devices of this machine or one error line
naming the key (seqkit/devices.py). These need no GPU: a one-GPU machine is simulated by patching
what torch reports, and the CPU-only torch case runs where torch has no CUDA. The checks on a real
GPU are in tests/test_cuda.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seqkit.cli import main
from seqkit.devices import torch_device
from seqkit.errors import SeqkitError
from seqkit.runs import train_run
from seqkit.train import pick_device

ONE_GPU = "cuda:7: this machine has 1 CUDA device(s): cuda:0..cuda:0"


@pytest.fixture
def one_gpu(monkeypatch):
    """torch reports one visible GPU (nothing here touches a GPU itself)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_cuda_indices_on_a_one_gpu_machine(one_gpu):
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(SeqkitError) as exc:
        pick_device("cuda:7")
    assert str(exc.value) == f"train.device {ONE_GPU}"
    with pytest.raises(SeqkitError, match=r"^--device cuda:1: this machine has 1 CUDA device"):
        torch_device("cuda:1")


def test_cpu_and_auto():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def on_device(recipe: Path, device: str) -> Path:
    """A copy of ``recipe`` with ``train.device: DEVICE`` (in the file: no override flag needed)."""
    tree = yaml.safe_load(recipe.read_text())
    tree["train"]["device"] = device
    path = recipe.with_name(f"on-{device.replace(':', '-')}.yaml")
    path.write_text(yaml.safe_dump(tree))
    return path


def run_main(argv: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    """``seqkit ARGV`` in this process (so patches apply): exit status and stderr lines."""
    monkeypatch.setattr(sys, "argv", ["seqkit", *argv])
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:  # the CLI's logging.basicConfig would leave a handler on capsys's stream, closed later
        root.handlers[:], root.level = saved[0], saved[1]
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


def test_train_on_a_missing_gpu_is_one_error_line_before_any_work(tiny_recipe, one_gpu, monkeypatch, capsys):
    code, err = run_main(["train", str(on_device(tiny_recipe, "cuda:7"))], monkeypatch, capsys)
    assert (code, err) == (1, [f"error: train.device {ONE_GPU}"])
    assert not (tiny_recipe.parent / "run").exists()  # refused before the run directory is made


def test_evaluate_on_a_missing_gpu_names_the_option(tiny_recipe, one_gpu, monkeypatch, capsys):
    train_run(tiny_recipe, ["train.max_steps=2", "train.valid_every=2", "train.device=cpu"], resume=False)
    capsys.readouterr()
    code, err = run_main(["evaluate", str(tiny_recipe.parent / "run"), "--device", "cuda:7"], monkeypatch, capsys)
    assert (code, err) == (1, [f"error: --device {ONE_GPU}"])


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA: the CPU-only message cannot show")
def test_cuda_on_a_cpu_only_torch_is_one_error_line(tiny_recipe):
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "train", str(on_device(tiny_recipe, "cuda"))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: train.device cuda: this torch is a CPU-only build and sees no CUDA device; install a CUDA build "
        "of torch on a machine with an NVIDIA GPU, or use cpu"]
    assert not (tiny_recipe.parent / "run").exists()
