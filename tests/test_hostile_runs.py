"""Issue 22, items 2, 3, 4 and 12 for run directories: a rejected resume, a kill or a full disk
during a checkpoint write, and two trainers at once never leave a run that cannot continue."""

from __future__ import annotations

import functools
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_recipe_tree
from seqkit import checkpoint as ckpt
from seqkit.errors import CheckpointError, DataError, SeqkitError
from seqkit.runs import train_run

# Kill this process (SIGKILL, no cleanup) at one phase of the Nth checkpoint write, then train.
_KILLER = r"""
import os, signal, sys
from pathlib import Path
import seqkit.checkpoint as c
phase, nth = sys.argv[1], int(sys.argv[2])
seen = {"n": 0}
def due(hit):
    if hit:
        seen["n"] += 1
    return hit and seen["n"] == nth
real_save, real_replace = c.save_file, os.replace
def save_file(tensors, path, *a, **k):
    real_save(tensors, path, *a, **k)
    if due(f"{phase}.safetensors" == Path(path).name):
        os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst):
    name = Path(dst).name
    if due((phase == "rename" and name.startswith("step-")) or (phase == "pointer" and name == "last.json")):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
c.save_file, c.os.replace = save_file, replace
from seqkit.cli import main
sys.argv = ["seqkit", "train", *sys.argv[3:]]
main()
"""


def _recipe(tmp_path: Path, **train) -> tuple[Path, Path]:
    tree = tiny_recipe_tree(tmp_path / "data", tmp_path / "run")
    tree["train"].update({"max_steps": 10, "valid_every": 5, "log_every": 5, **train})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path, tmp_path / "run"


@functools.lru_cache(maxsize=1)
def _set_flag() -> str:
    """How `seqkit train` spells a recipe override (``-o`` is becoming ``--set`` on main)."""
    from click.testing import CliRunner

    from seqkit.cli import cli

    return "--set" if "--set" in CliRunner().invoke(cli, ["train", "--help"]).output else "-o"


def _set(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in (_set_flag(), pair)]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kw)


def _killed_at(tmp_path: Path, phase: str, nth: int) -> tuple[Path, Path]:
    recipe, run_dir = _recipe(tmp_path)
    proc = _run(["-c", _KILLER, phase, str(nth), str(recipe)])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return recipe, run_dir


def _steps(run_dir: Path, split: str) -> list[int]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e["step"] for e in events if e.get("split") == split]


def test_rejected_resume_override_leaves_the_run_usable(tmp_path, one_thread):
    recipe, run_dir = _recipe(tmp_path)
    train_run(recipe, [], resume=False)
    before = (run_dir / "recipe.yaml").read_bytes()
    with pytest.raises(CheckpointError, match="shape"):
        train_run(run_dir, ["model.encoder.hidden_size=32"], resume=True)
    with pytest.raises(DataError, match="file not found"):
        train_run(run_dir, [f"data.train.src={tmp_path / 'misspelled.src'}"], resume=True)
    assert (run_dir / "recipe.yaml").read_bytes() == before
    from seqkit.evaluate import open_translator

    assert len(open_translator(run_dir, {}).translate(["a b c"])) == 1
    metrics = train_run(run_dir, ["train.max_steps=15"], resume=True)  # and it still resumes
    assert metrics["step"] == 15


def test_kill_during_first_checkpoint_restarts_from_scratch(tmp_path):
    recipe, run_dir = _killed_at(tmp_path, "model", 1)
    assert list((run_dir / "checkpoints").glob(".step-*.tmp-*")) and not ckpt.has_checkpoint(run_dir)
    resumed = _run(["-m", "seqkit.cli", "train", str(run_dir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "no complete checkpoint; training starts from scratch" in resumed.stderr
    assert ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))["step"] == 10
    assert not list((run_dir / "checkpoints").glob(".step-*"))


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["model", "optimizer", "rename", "pointer"])
@pytest.mark.parametrize("nth", [1, 2])
def test_kill_at_every_checkpoint_phase(tmp_path, phase, nth):
    recipe, run_dir = _killed_at(tmp_path, phase, nth)
    fresh = _run(["-m", "seqkit.cli", "train", str(recipe)])
    if nth == 1:  # no complete checkpoint: a plain `train` starts over instead of refusing
        assert fresh.returncode == 0, fresh.stderr[-2000:]
    else:
        assert fresh.returncode == 1 and "continue it with --resume" in fresh.stderr
        resumed = _run(["-m", "seqkit.cli", "train", str(recipe), "--resume"])
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))["step"] == 10
    assert not list((run_dir / "checkpoints").glob(".*tmp-*"))
    assert _steps(run_dir, "valid") == [5, 10]


def test_kill_before_pointer_rename_leaves_no_stale_temp_or_duplicate_metrics(tmp_path):
    recipe, run_dir = _killed_at(tmp_path, "pointer", 2)  # the step-10 checkpoint, its last.json
    assert list((run_dir / "checkpoints").glob(".last.json.tmp-*"))
    assert _steps(run_dir, "valid") == [5, 10]  # step 10 was logged before the kill
    resumed = _run(["-m", "seqkit.cli", "train", str(run_dir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list((run_dir / "checkpoints").glob(".*tmp-*"))
    assert _steps(run_dir, "valid") == [5, 10]  # not [5, 10, 10]
    assert _steps(run_dir, "train") == [5, 10]


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_during_checkpoint_is_one_error_line(tmp_path):
    recipe, run_dir = _recipe(tmp_path)
    train_run(recipe, ["train.max_steps=5"], resume=False)
    size = (ckpt.resolve_checkpoint(run_dir, "last") / "optimizer.safetensors").stat().st_size
    before = (run_dir / "checkpoints" / "last.json").read_bytes()
    # Files may grow to just under the optimizer state: the next checkpoint write fails part-way.
    proc = subprocess.run([sys.executable, "-m", "seqkit.cli", "train", str(run_dir), "--resume",
                           *_set("train.max_steps=10")],
                          capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(size - 1))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {run_dir / 'checkpoints'}: cannot write checkpoint step-00000010: ")
    assert "File too large" in last and last.endswith("the previous checkpoint is untouched")
    assert (run_dir / "checkpoints" / "last.json").read_bytes() == before
    assert not list((run_dir / "checkpoints").glob(".step-*"))
    assert ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))["step"] == 5


def test_second_trainer_is_refused_with_the_holders_pid(tmp_path, one_thread):
    recipe, run_dir = _recipe(tmp_path)
    train_run(recipe, [], resume=False)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from seqkit.runlock import lock_run_dir; "
                               "lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (run_dir / "metrics.jsonl").read_bytes()
        with pytest.raises(CheckpointError, match=f"another trainer \\(PID {holder.pid}\\)"):
            train_run(run_dir, ["train.max_steps=20"], resume=True)
        assert (run_dir / "metrics.jsonl").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    assert train_run(run_dir, ["train.max_steps=15"], resume=True)["step"] == 15  # the lock died with it


def test_concurrent_resumes_one_wins(tmp_path):
    recipe, run_dir = _recipe(tmp_path)
    assert _run(["-m", "seqkit.cli", "train", str(recipe)]).returncode == 0
    cmd = [sys.executable, "-m", "seqkit.cli", "train", str(run_dir), "--resume"]
    first = subprocess.Popen(cmd + _set("train.max_steps=100000", "train.max_epochs=null", "train.valid_every=100000"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (run_dir / "train.log").read_text().count("training on") < 2:
            time.sleep(0.2)
        second = _run(cmd[1:])
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith(f"error: {run_dir}: another trainer (PID {first.pid})")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    # SIGTERM saves a checkpoint and exits cleanly, like SIGINT (item 12).
    assert first.returncode == 0, err[-2000:]
    assert "stopping: interrupted" in err
    assert ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))["step"] > 10


def test_state_json_of_the_wrong_shape(tmp_path, one_thread):
    recipe, run_dir = _recipe(tmp_path)
    train_run(recipe, [], resume=False)
    state_path = ckpt.resolve_checkpoint(run_dir, "last") / "state.json"
    state = json.loads(state_path.read_text())
    for bad in ([1, 2], {**state, "step": "ten"}, {**state, "sha256": {"/dev/zero": "0" * 64}},
                {**state, "sha256": {"../../recipe.yaml": "0" * 64}}):
        state_path.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError) as info:
            train_run(run_dir, ["train.max_steps=15"], resume=True)
        assert "\n" not in str(info.value) and str(state_path) in str(info.value)


def test_pointer_outside_the_run_is_refused(tmp_path, one_thread):
    recipe, run_dir = _recipe(tmp_path)
    train_run(recipe, [], resume=False)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in (str(outside), "../../elsewhere", "step-00000010/../../../elsewhere"):
        (run_dir / "checkpoints" / "last.json").write_text(json.dumps({"checkpoint": name}))
        (run_dir / "checkpoints" / "best.json").unlink(missing_ok=True)
        with pytest.raises(SeqkitError, match="step-NNNNNNNN"):
            ckpt.resolve_checkpoint(run_dir, "last")
    os.symlink(outside, run_dir / "checkpoints" / "step-00000099")
    (run_dir / "checkpoints" / "last.json").write_text(json.dumps({"checkpoint": "step-00000099"}))
    with pytest.raises(SeqkitError, match="outside"):
        ckpt.resolve_checkpoint(run_dir, "last")
