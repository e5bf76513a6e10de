"""tools/gpu_check.sh --dry-run end to end: every step of the GPU check runs on the CPU with
tiny budgets, so that the script is known to work before the few minutes on a GPU machine."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from seqkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import gpu_check  # noqa: E402  (tools/ is no package)
STEPS = ["tests", "train", "bench", "ddp", "gpu-recipe"]


def test_dry_run_runs_every_step_on_the_cpu_and_reports_them(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "tools/gpu_check.sh", "--dry-run", "--steps", ",".join(STEPS), "--work", str(work),
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["budget"]["device"] == "cpu"
    assert any(line.startswith("install: ok") for line in report["install"])
    steps = report["steps"]
    assert list(steps) == STEPS and all(s["rc"] == 0 for s in steps.values())

    tests = steps["tests"]
    assert not tests["failed"] and len(tests["passed"]) + len(tests["skipped"]) >= 8
    if not torch.cuda.is_available():  # every cuda test skips, saying why
        assert tests["passed"] == [] and all("needs a CUDA GPU" in why for why in tests["skipped"].values())

    for name, steps_run in (("train", 2), ("gpu-recipe", 2)):
        run = steps[name]
        assert run["steps"] == steps_run and run["target_tokens_per_s"] > 0 and run["gpu_peak_gib"] is None
        assert run["sentences"] == 40 and 0 <= run["bleu"] <= 100 and "tok:13a" in run["bleu_signature"]

    rates = steps["bench"]["target_tokens_per_s"]
    for contender in ("seqkit fused, fp32", "seqkit input-feeding, fp32", "bare stepwise (input feeding)",
                      "bare fused (no input feeding)"):
        assert rates[contender] > 0, contender

    ddp = steps["ddp"]
    assert [r["backend"] for r in ddp["runs"]] == ["gloo", "gloo"] and [r["resume"] for r in ddp["runs"]] == [False, True]
    assert ddp["resumed_at_expected_step"] and ddp["steps"] == 2 and ddp["world_size"] == 1

    assert "# gpu_check DRY RUN (cpu)" in done.stdout and "| ddp | ok |" in done.stdout
    log = (out / "gpu_check.log").read_text()
    assert "torch.distributed.run --standalone --nproc-per-node=1" in log and "tools/bench_train.py" in log


def test_the_gpu_recipe_is_valid_and_larger_than_the_cpu_one():
    gpu = load_recipe(ROOT / "recipes" / "translate-gpu.yaml")
    cpu = load_recipe(ROOT / "recipes" / "translate.yaml")
    assert gpu.data == cpu.data and gpu.tokenizer == cpu.tokenizer  # same data, same tokenizer
    assert gpu.train.device == "cuda" and gpu.train.amp == "bf16" and gpu.train.max_time <= 300
    assert gpu.train.batch_tokens > cpu.train.batch_tokens
    assert gpu.model.encoder["hidden_size"] > cpu.model.encoder["hidden_size"]


def test_steps_past_the_budget_are_reported_not_run_and_the_json_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "DRY", dataclasses.replace(gpu_check.DRY, total_s=5))
    assert gpu_check.main([str(tmp_path / "out"), "--dry-run", "--work", str(tmp_path / "w"), "--steps", "train,ddp"]) == 1
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert {name: step["not_run"] for name, step in report["steps"].items()} == {
        "train": "the 5 s budget is spent", "ddp": "the 5 s budget is spent"}


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


def test_a_command_past_its_timeout_is_ended_with_its_children(tmp_path):
    """As torchrun's workers must be when torchrun is: the whole session of the command goes."""
    budget = dataclasses.replace(gpu_check.DRY, timeout_s={"x": 1})
    pidfile = tmp_path / "child.pid"
    result = gpu_check.Runner(tmp_path, budget).run("x", ["bash", "-c", f"(echo $BASHPID > {pidfile}; sleep 60) & wait"])
    assert result["rc"] == 124 and "killed after 1 s" in result["stderr"]
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 30
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
