"""Device names (``train.device``, ``--device``) become devices of this machine or one error line
naming the key. These need no GPU: a one-GPU machine is simulated by patching what torch reports,
and the CPU-only torch case runs where torch has no CUDA. The checks on a real GPU are in
tests/test_cuda.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seqkit.cli import main
from seqkit.devices import check_cuda, pick_device
from seqkit.errors import SeqkitError
from seqkit.runs import train_run

NO_SUCH_GPU = "train.device: cuda:7: no such GPU; this machine has 1 (cuda:0)"


@pytest.fixture
def one_gpu(monkeypatch):
    """torch reports a CUDA build with one visible GPU (nothing here touches the GPU itself)."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_cuda_indices_on_a_one_gpu_machine(one_gpu):
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(SeqkitError) as exc:
        pick_device("cuda:7")
    assert str(exc.value) == NO_SUCH_GPU
    with pytest.raises(SeqkitError, match=r"^--device: cuda:1: no such GPU; this machine has 1 \(cuda:0\)$"):
        pick_device("cuda:1", key="--device")


def test_cuda_without_a_cuda_build_or_without_a_visible_gpu():
    with pytest.raises(SeqkitError, match=r"^train.device: cuda requested but this torch build has no CUDA support"):
        check_cuda("cuda", "train.device", built=False, count=0)
    with pytest.raises(SeqkitError, match=r"^train.device: cuda:0 requested but no CUDA device is visible"):
        check_cuda("cuda:0", "train.device", built=True, count=0)
    with pytest.raises(SeqkitError, match=r"has 4 \(cuda:0 to cuda:3\)$"):
        check_cuda("cuda:4", "train.device", built=True, count=4)
    check_cuda("cuda:3", "train.device", built=True, count=4)


def test_cpu_auto_and_unknown_names():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SeqkitError, match=r"^--device: expected auto, cpu, cuda or cuda:N, got 'gpu'$"):
        pick_device("gpu", key="--device")


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
    assert (code, err) == (1, [f"error: {NO_SUCH_GPU}"])
    assert not (tiny_recipe.parent / "run").exists()  # refused before the run directory is made


def test_evaluate_on_a_missing_gpu_names_the_option(tiny_recipe, one_gpu, monkeypatch, capsys):
    train_run(tiny_recipe, ["train.max_steps=2", "train.valid_every=2", "train.device=cpu"], resume=False)
    capsys.readouterr()
    code, err = run_main(["evaluate", str(tiny_recipe.parent / "run"), "--device", "cuda:7"], monkeypatch, capsys)
    assert (code, err) == (1, ["error: --device: cuda:7: no such GPU; this machine has 1 (cuda:0)"])


@pytest.mark.skipif(torch.backends.cuda.is_built(), reason="this torch has CUDA: the CPU-only message cannot show")
def test_cuda_on_a_cpu_only_torch_is_one_error_line(tiny_recipe):
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "train", str(on_device(tiny_recipe, "cuda"))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: train.device: cuda requested but this torch build has no CUDA support "
        "(install a CUDA build of torch, or use auto or cpu)"]
