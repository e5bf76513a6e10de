"""``seqkit train`` under torchrun (DDP, gloo on CPU): the same numbers as one process, resume after kill.

Tolerance. The comparisons below switch dropout off (a rank > 0 draws its masks from its own
random stream, so with dropout the runs are equally good but not equal). What remains is float
summation order: a 2-process step sums two per-rank gradients in the all-reduce where one
process accumulates them on ``.grad`` in the same batch order. Those sums may differ in the last
bit, and 10 optimizer steps can amplify that a little, so losses are compared with
``rel=1e-5`` (observed: identical). Real mistakes are orders of magnitude larger. Adam does not
see a uniform gradient scale, so the first test uses plain SGD without clipping, where weighting
the gradient 2x changes the loss at step 2 by 7% (measured); the kill-and-resume test compares
Adam runs, where a wrong or repeated batch shows (dropout alone moved it by ~2e-3 at step 2).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from seqkit import checkpoint as ckpt
from seqkit.distributed import local_part, main_first, resolve_device, torchrun_env
from seqkit.errors import SeqkitError
from seqkit.runs import load_run, train_run

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this torch build")

TOL = 1e-5  # see the module docstring
NO_DROPOUT = [f"model.{part}.{key}=0" for part in ("encoder", "decoder") for key in ("dropout", "embedding_dropout")]
# 13 batches per epoch at 240 tokens: a 2-process epoch ends with a 1-batch step (rank 1 idles).
TINY = [*NO_DROPOUT, "train.batch_tokens=240", "train.log_every=1"]


def torchrun(recipe: Path, overrides: list[str], *extra: str, nproc: int = 2) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "seqkit.cli", "train", str(recipe)]
    for item in overrides:
        cmd += ["--set", item]
    return cmd + list(extra)


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_torchrun(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def events(run_dir: Path, split: str) -> dict[int, dict]:
    """The last event per step (a killed run may have logged steps it redoes after resuming)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("split") == split:
            out[event["step"]] = event
    return out


def assert_close(a: dict[int, dict], b: dict[int, dict], steps: list[int]) -> None:
    for step in steps:
        assert a[step]["loss"] == pytest.approx(b[step]["loss"], rel=TOL), step


def test_two_processes_equal_one_process_accumulating_two_batches(tiny_recipe, tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    # SGD without clipping: the loss depends on the gradient's scale (see the module docstring).
    common = [*TINY, "train.max_steps=10", "train.valid_every=5", "train.optimizer.type=sgd", "train.optimizer.lr=1.0",
              "train.clip_grad_norm=null"]
    out = run_torchrun(torchrun(tiny_recipe, [*common, f"run_dir={ddp}"]))
    train_run(tiny_recipe, [*common, "train.accumulate=2", f"run_dir={single}"], resume=False)

    a, b = events(ddp, "train"), events(single, "train")
    assert sorted(a) == sorted(b) == list(range(1, 11))
    assert a[10]["epoch"] == 1, "the run should cross an epoch end (13 batches: a 1-batch global step)"
    assert_close(a, b, list(range(1, 11)))
    assert_close(events(ddp, "valid"), events(single, "valid"), [5, 10])
    # Only rank 0 writes: one line per event, one printed result, one checkpoint series.
    lines = (ddp / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 12
    assert out.stdout.count('"step": 10') == 1
    state = ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(ddp, "last"))
    assert state["step"] == 10 and len(state["rng_ranks"]) == 2
    assert load_run(ddp, "last").model is not None  # the plain model's tensors: loads in one process


def _descendants(pid: int) -> list[int]:
    if not Path(f"/proc/{pid}/task").is_dir():
        pytest.skip("finding torchrun's workers to kill them needs Linux /proc")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children] + [g for c in children for g in _descendants(int(c))]


def _last_step(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "last.json"
    return json.loads(path.read_text())["step"] if path.exists() else -1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_kill_every_process_then_resume_under_torchrun(tiny_recipe, tmp_path):
    """SIGKILL torchrun and both workers (a crashed node) right after a checkpoint; torchrun
    --resume finishes the run, every checkpoint verifies, and the steps after the resume point
    match one uninterrupted process with accumulate=2."""
    run_dir, single = tmp_path / "run", tmp_path / "single"
    target = 240  # far more than the first attempt reaches before its kill, on any machine
    common = [*TINY, f"train.max_steps={target}", "train.valid_every=3", f"run_dir={run_dir}"]
    proc = subprocess.Popen(torchrun(tiny_recipe, common), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while _last_step(run_dir) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0.0, 0.2))
    workers = _descendants(proc.pid)
    for pid in [proc.pid, *workers]:  # torchrun first, so it cannot react to its workers' deaths
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "torchrun finished before it could be killed"
    assert len(workers) >= 2
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)]
    killed_at = _last_step(run_dir)
    assert 3 <= killed_at < target

    run_torchrun(torchrun(tiny_recipe, [*common, f"train.max_steps={killed_at + 6}"], "--resume"))
    last = ckpt.resolve_checkpoint(run_dir, "last")
    assert ckpt.load_checkpoint_state(last)["step"] == killed_at + 6
    for d in (run_dir / "checkpoints").glob("step-*"):
        ckpt.load_checkpoint_state(d)
    assert not list((run_dir / "checkpoints").glob(".step-*"))

    train_run(tiny_recipe, [*common, f"train.max_steps={killed_at + 6}", "train.accumulate=2", f"run_dir={single}"],
              resume=False)
    assert_close(events(run_dir, "train"), events(single, "train"), list(range(killed_at + 1, killed_at + 7)))


@pytest.mark.slow
def test_ctrl_c_to_torchrun_saves_a_checkpoint_then_resume(tiny_recipe, tmp_path):
    """torchrun forwards SIGINT to its workers: they finish the step, rank 0 saves, both exit."""
    run_dir = tmp_path / "run"
    common = ["train.max_steps=100000", "train.valid_every=100000", f"run_dir={run_dir}"]
    proc = subprocess.Popen(torchrun(tiny_recipe, common), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (run_dir / "metrics.jsonl").exists() and proc.poll() is None:
        time.sleep(0.1)
    workers = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert err.count("stopping: interrupted") == 1, err[-3000:]  # rank 0 logs, the other rank is quiet
    assert not [pid for pid in workers if _alive(pid)]
    state = ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))
    assert state["metrics"]["interrupted"] and 0 < state["step"] < 100000
    run_torchrun(torchrun(tiny_recipe, [*common, f"train.max_steps={state['step'] + 2}"], "--resume"))
    assert ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))["step"] == state["step"] + 2


@pytest.mark.slow
def test_max_time_stops_every_rank_after_the_same_step(tiny_recipe, tmp_path):
    """Each rank's clock differs; the max-reduced clock stops all at one step (else a hang)."""
    run_dir = tmp_path / "run"
    # No step or epoch limit: on a quiet fast machine the tiny recipe's 30 epochs take under 3 s.
    run_torchrun(torchrun(tiny_recipe, ["train.max_time=3s", "train.max_steps=100000", "train.max_epochs=100000",
                                        f"run_dir={run_dir}"]))
    state = ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))
    assert state["elapsed"] >= 3 and state["step"] > 0


@pytest.mark.slow
def test_resume_with_dropout_is_exact_under_torchrun(tiny_recipe, tmp_path):
    """Per-rank RNG state is checkpointed: stop at 6, resume to 12 == 12 straight (dropout on)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["train.log_every=1", "train.valid_every=3"]
    run_torchrun(torchrun(tiny_recipe, [*common, "train.max_steps=12", f"run_dir={straight}"]))
    run_torchrun(torchrun(tiny_recipe, [*common, "train.max_steps=6", f"run_dir={split}"]))
    run_torchrun(torchrun(tiny_recipe, [*common, "train.max_steps=12", f"run_dir={split}"], "--resume"))
    assert_close(events(split, "train"), events(straight, "train"), list(range(1, 13)))


@pytest.mark.slow
def test_language_model_streams_are_split_across_processes(tmp_path):
    """2 processes x batch_size 2 == 1 process x batch_size 4 (the streams are divided, not the chunks)."""
    from test_lm import write_lm_recipe  # tests/ is on sys.path (no __init__.py)

    recipe = write_lm_recipe(tmp_path)
    common = ["train.max_steps=8", "train.log_every=1", "train.valid_every=4"]
    run_torchrun(torchrun(recipe, [*common, "train.batch_size=2", f"run_dir={tmp_path / 'ddp'}"]))
    train_run(recipe, [*common, "train.batch_size=4", f"run_dir={tmp_path / 'single'}"], resume=False)
    a, b = events(tmp_path / "ddp", "train"), events(tmp_path / "single", "train")
    assert_close(a, b, list(range(1, 9)))
    assert_close(events(tmp_path / "ddp", "valid"), events(tmp_path / "single", "valid"), [4, 8])


@pytest.mark.slow
def test_classification_under_torchrun(tmp_path):
    from test_classify import write_recipe  # tests/ is on sys.path (no __init__.py)

    recipe = write_recipe(tmp_path)
    common = ["train.max_steps=8", "train.log_every=1", "train.valid_every=4"]
    run_torchrun(torchrun(recipe, [*common, f"run_dir={tmp_path / 'ddp'}"]))
    train_run(recipe, [*common, "train.accumulate=2", f"run_dir={tmp_path / 'single'}"], resume=False)
    assert_close(events(tmp_path / "ddp", "train"), events(tmp_path / "single", "train"), list(range(1, 9)))
    assert (tmp_path / "ddp" / "labels.json").is_file()


# -- no processes ---------------------------------------------------------------------------------
def test_torchrun_env_is_read_only_for_several_processes():
    assert torchrun_env({}) is None
    assert torchrun_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None
    assert torchrun_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (3, 1, 4)
    with pytest.raises(SeqkitError, match="expected integers"):
        torchrun_env({"WORLD_SIZE": "two"})
    with pytest.raises(SeqkitError, match="outside"):
        torchrun_env({"WORLD_SIZE": "2", "RANK": "2"})


def test_devices_and_backends():
    assert resolve_device("cpu", 3) == (resolve_device("cpu", 0)[0], "gloo")
    with pytest.raises(SeqkitError, match="cuda:LOCAL_RANK"):
        resolve_device("cuda:1", 0)


def test_global_group_is_split_contiguously_and_evenly():
    group = list(range(5))
    assert [local_part(group, r, 2) for r in range(2)] == [[0, 1], [2, 3, 4]]
    assert [local_part([7], r, 2) for r in range(2)] == [[], [7]]
    assert [local_part(list(range(4)), r, 2) for r in range(2)] == [[0, 1], [2, 3]]
    assert [i for r in range(3) for i in local_part(list(range(11)), r, 3)] == list(range(11))


def test_close_frees_the_ddp_wrapper_while_the_group_is_alive(tmp_path):
    """The fix for the end-of-run hang (distributed.teardown): DDP's Reducer must not hold the
    process group's last reference when it is freed, so close() frees it before the group goes."""
    import types
    import weakref

    import torch

    from seqkit.distributed import DDPTraining, DistContext

    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)
    try:
        ctx = DistContext(0, 0, 1, torch.device("cpu"), "gloo")
        training = DDPTraining(ctx, torch.nn.Linear(2, 2), types.SimpleNamespace(model=None))
        wrapper = weakref.ref(training.ddp)
        training.close()
        assert wrapper() is None and dist.is_initialized()
        training.close()  # twice is harmless (train_run's finally may follow an earlier close)
    finally:
        dist.destroy_process_group()


def test_single_process_builds_once_as_given(tmp_path):
    calls = []
    assert main_first(None, lambda first: calls.append(first) or "task", tmp_path) == "task"
    assert calls == [True]
