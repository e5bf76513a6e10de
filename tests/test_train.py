"""Training end to end on a tiny recipe: checkpoints, exact resume, determinism, guards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqkit import checkpoint as ckpt
from seqkit.errors import CheckpointError, SeqkitError
from seqkit.optim import LRSchedule
from seqkit.train_config import ScheduleConfig
from seqkit.recipe import load_recipe
from seqkit.runs import build_task, load_run, train_run
from seqkit.train import Trainer
from seqkit.train_config import parse_duration


def train_losses(run_dir: Path) -> dict[int, float]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in events if e.get("split") == "train"}


def valid_events(run_dir: Path) -> list[dict]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e.get("split") == "valid"]


def test_tiny_run_trains_checkpoints_and_reloads(tiny_recipe):
    metrics = train_run(tiny_recipe, ["train.max_steps=30"], resume=False)
    run_dir = tiny_recipe.parent / "run"
    assert metrics["step"] == 30
    events = valid_events(run_dir)
    assert [e["step"] for e in events] == [10, 20, 30]
    assert events[-1]["loss"] < events[0]["loss"]
    for pointer in ("last", "best"):
        name = ckpt.read_pointer(run_dir / "checkpoints", pointer)
        assert (run_dir / "checkpoints" / name / "model.safetensors").is_file()
    run = load_run(run_dir, "last")
    assert run.recipe.task == "translation" and not run.model.training
    assert (run_dir / "recipe.yaml").is_file() and (run_dir / "tokenizer" / "src" / "tokenizer.json").is_file()


def test_resume_continues_exactly(tiny_recipe, tmp_path):
    """20 steps straight == 10 steps, stop, resume to 20: same losses (data position, RNG, Adam)."""
    straight = tmp_path / "straight"
    train_run(tiny_recipe, ["train.max_steps=20", f"run_dir={straight}"], resume=False)
    split = tmp_path / "split"
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={split}"], resume=False)
    train_run(tiny_recipe, ["train.max_steps=20", f"run_dir={split}"], resume=True)
    a, b = train_losses(straight), train_losses(split)
    assert set(a) == set(b) == {5, 10, 15, 20}
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5), step
    assert valid_events(split)[-1]["loss"] == pytest.approx(valid_events(straight)[-1]["loss"], rel=1e-5)


def test_same_seed_gives_bit_identical_losses(tiny_recipe, tmp_path):
    runs = []
    for name in ("one", "two"):
        train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={tmp_path / name}"], resume=False)
        runs.append(train_losses(tmp_path / name))
    assert runs[0] == runs[1]


def test_existing_run_needs_resume(tiny_recipe):
    train_run(tiny_recipe, ["train.max_steps=10"], resume=False)
    with pytest.raises(SeqkitError, match="--resume"):
        train_run(tiny_recipe, ["train.max_steps=10"], resume=False)


def test_resume_without_run_is_clear(tiny_recipe):
    with pytest.raises(CheckpointError, match="holds no run"):
        train_run(tiny_recipe, [], resume=True)


def test_unwritable_run_dir_fails_before_training(tiny_recipe, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "run"  # a path under a regular file cannot be created, even by root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "run"
    with pytest.raises(CheckpointError, match="not writable"):
        train_run(tiny_recipe, [f"run_dir={target}"], resume=False)


def test_non_finite_loss_is_skipped_then_aborts(tiny_recipe, monkeypatch):
    from seqkit.tasks import seq2seq as tasks

    real = tasks.smoothed_loss
    monkeypatch.setattr(tasks, "smoothed_loss", lambda *a: tuple(x * float("nan") for x in real(*a)))
    with pytest.raises(SeqkitError, match="diverged: 3 consecutive non-finite"):
        train_run(tiny_recipe, ["train.max_bad_steps=3"], resume=False)
    assert ckpt.read_pointer(tiny_recipe.parent / "run" / "checkpoints", "last") is None


def test_corrupt_checkpoint_is_refused(tiny_recipe):
    train_run(tiny_recipe, ["train.max_steps=10"], resume=False)
    run_dir = tiny_recipe.parent / "run"
    path = ckpt.resolve_checkpoint(run_dir, "last") / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_run(run_dir, "last")


def _last_step(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "last.json"
    return json.loads(path.read_text())["step"] if path.exists() else -1


def test_sigkill_at_random_moments_then_resume(tiny_recipe):
    """Kill the trainer several times mid-run (checkpoints every 3 steps, so some kills land
    mid-write); every resume succeeds and every checkpoint left on disk verifies."""
    import random

    rng = random.Random(0)
    run_dir = tiny_recipe.parent / "run"
    # The target is far beyond what one attempt reaches before its kill (a kill follows the
    # attempt's first new checkpoint within 0.2 s), so every kill lands mid-run on any machine.
    target = 240
    cmd = [sys.executable, "-m", "seqkit.cli", "train", str(tiny_recipe), "--set", f"train.max_steps={target}",
           "--set", "train.valid_every=3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for i in range(3):
        seen = _last_step(run_dir)
        log_path = tiny_recipe.parent / f"attempt-{i}.log"  # kept: a failed attempt says why
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd + (["--resume"] if i else []), env=env,
                                    stdout=subprocess.DEVNULL, stderr=log_file)
            # The deadline only bounds a hang: a resume on a loaded machine took 20-40 s here
            # (two busy-loop processes, an fsync-heavy disk hog and other test runs at once).
            start = time.time()
            while _last_step(run_dir) <= seen and time.time() < start + 300 and proc.poll() is None:
                time.sleep(0.01)
            waited = time.time() - start
            time.sleep(rng.uniform(0.0, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        stderr = log_path.read_text(encoding="utf-8", errors="replace")
        assert _last_step(run_dir) > seen, (f"no progress between kills (attempt {i}, rc {proc.returncode}, "
                                            f"{waited:.0f} s):\n{stderr[-3000:]}")
    assert kills == 3, "an attempt finished before it could be killed"
    assert _last_step(run_dir) < target
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    last = ckpt.resolve_checkpoint(run_dir, "last")
    assert ckpt.load_checkpoint_state(last)["step"] == target
    for d in (run_dir / "checkpoints").glob("step-*"):
        ckpt.load_checkpoint_state(d)  # every checkpoint on disk is complete and verifies
    assert not list((run_dir / "checkpoints").glob(".step-*"))


def test_sigint_saves_and_exits(tiny_recipe):
    run_dir = tiny_recipe.parent / "run"
    cmd = [sys.executable, "-m", "seqkit.cli", "train", str(tiny_recipe), "--set", "train.max_steps=100000",
           "--set", "train.valid_every=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "metrics.jsonl").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "stopping: interrupted" in err
    state = ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))
    assert 0 < state["step"] < 100000


def test_schedules_and_durations():
    assert parse_duration("15m") == 900 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(ValueError):
        parse_duration("soon")
    inv = LRSchedule(ScheduleConfig(type="inverse_sqrt", warmup_steps=100), 1.0)
    assert inv.lr(0) == pytest.approx(0.01) and inv.lr(99) == pytest.approx(1.0) and inv.lr(400) == pytest.approx(0.5)
    plateau = LRSchedule(ScheduleConfig(type="plateau", patience=1, factor=0.5), 1.0)
    plateau.observe(10.0, True)
    plateau.observe(9.0, True)
    assert plateau.lr(5) == pytest.approx(0.5)


def test_amp_dtype_per_device(caplog, monkeypatch):
    from seqkit.train import amp_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("none", cpu) is None and amp_dtype("none", cuda) is None
    assert amp_dtype("bf16", cuda) is torch.bfloat16 and amp_dtype("fp16", cuda) is torch.float16
    assert amp_dtype("fp16", cpu) is None and "CUDA only" in caplog.text
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert amp_dtype("bf16", cpu) is None and "needs a CPU with native bf16" in caplog.text
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert amp_dtype("bf16", cpu) is torch.bfloat16


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no native bf16")
def test_bf16_training_on_cpu_learns(tiny_recipe):
    fp32 = train_run(tiny_recipe, ["train.max_steps=30", f"run_dir={tiny_recipe.parent / 'fp32'}"], resume=False)
    bf16 = train_run(tiny_recipe, ["train.max_steps=30", "train.amp=bf16", f"run_dir={tiny_recipe.parent / 'bf16'}"],
                     resume=False)
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.1)  # bf16 rounding, same learning
    assert bf16["loss"] != fp32["loss"]  # autocast really ran: bf16 arithmetic changes the losses


def test_to_device_on_cpu_shares_the_array_and_accepts_strided_input():
    from seqkit.tasks.common import to_device

    batch = np.arange(12, dtype=np.int64).reshape(3, 4)
    tensor = to_device(batch, torch.device("cpu"))
    batch[0, 0] = 99
    assert tensor[0, 0].item() == 99  # no copy on the CPU
    strided = to_device(batch[:, ::2], torch.device("cpu"))
    assert strided.tolist() == batch[:, ::2].tolist()


def test_fp16_overflow_lowers_the_grad_scale_instead_of_aborting(tiny_recipe):
    """A grad scaler's overflowing steps are skipped with a lower scale, not counted as
    divergence (which aborts after train.max_bad_steps): on the CPU, with a CPU GradScaler and a
    gradient hook that overflows the first backward as fp16 gradients overflow on a GPU."""
    recipe = load_recipe(tiny_recipe, ["train.max_bad_steps=1"])
    run_dir = tiny_recipe.parent / "run"
    run_dir.mkdir()
    task = build_task(recipe, run_dir, resume=False, device=torch.device("cpu"))
    trainer = Trainer(task, recipe.train, run_dir, seed=recipe.seed, metric=("loss", False))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    overflow = [True]
    weight = next(task.model.parameters())
    weight.register_hook(lambda g: g * float("inf") if overflow.pop() else g)
    first, second = task.batches(0, recipe.seed)[:2]
    assert trainer._train_step([first])["tokens"] == 0 and trainer.step == 0  # overflowed: skipped
    assert trainer.scaler.get_scale() == 2.0**15 and trainer._bad_in_a_row == 0
    overflow.append(False)
    assert trainer._train_step([second])["tokens"] > 0 and trainer.step == 1
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


def test_a_kill_while_pruning_leaves_no_half_deleted_checkpoint(tiny_recipe, monkeypatch):
    """prune renames a checkpoint out of the step-* namespace before deleting it: a kill during
    the delete leaves a temp directory (removed by the next prune), never a broken step-N."""
    train_run(tiny_recipe, ["train.max_steps=30", "train.keep_checkpoints=1"], resume=False)
    ckpt_dir = tiny_recipe.parent / "run" / "checkpoints"
    (ckpt_dir / "step-00000001").mkdir()  # an old checkpoint that no pointer names
    (ckpt_dir / "step-00000001" / "model.safetensors").write_bytes(b"x")
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda *a, **k: None)  # "killed" before deleting anything
    ckpt.prune(ckpt_dir, keep=1)
    assert not (ckpt_dir / "step-00000001").exists() and list(ckpt_dir.glob(".step-00000001.tmp-*"))
    monkeypatch.undo()
    ckpt.prune(ckpt_dir, keep=1)
    assert not list(ckpt_dir.glob(".step-*"))
    for d in ckpt_dir.glob("step-*"):
        ckpt.load_checkpoint_state(d)
