"""The GPU check's steps (run through tools/gpu_check.sh, which installs what the machine lacks).

    python tools/gpu_check.py OUT_DIR [--dry-run] [--steps tests,train,bench,ddp] [--work DIR]

Steps, each with its budget written in REAL and DRY below:
  tests       pytest -m cuda tests/test_cuda.py (which passed, which skipped and why)
  train       seqkit train recipes/translate.yaml on cuda, bf16, for a fixed time, then
              seqkit evaluate on test2016 (BLEU, beam 5): target tokens/s, steps, peak GPU
              memory, BLEU
  bench       tools/bench_train.py on the device: fused vs stepwise vs the bare loops, bf16, fp32
  ddp         torchrun, one process (SEQKIT_FORCE_DDP=1: DDP and nccl on one GPU), then --resume
  gpu-recipe  (not in the default set) recipes/translate-gpu.yaml for its own budget, then BLEU

--dry-run runs every step on the CPU with a tiny budget and tiny copies of the recipes (their
first lines of data, a small model) so that tests/test_gpu_check.py can keep the script working.
OUT_DIR receives two files, gpu_check.json and gpu_check.log; runs and scratch files go to
--work (default: a fresh temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
# The checkout this script lives in, ahead of any installed seqkit (as tools/bench_train.py does).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from gpu_check_support import dry_recipe, run_figures, summary_table, test_outcomes  # noqa: E402

# The command line's spellings, in one place.
SET = "--set"
BEAM = "--beam-size"

STEPS = ["tests", "train", "bench", "ddp", "gpu-recipe"]
DEFAULT_STEPS = ["tests", "train", "bench", "ddp"]


@dataclass(frozen=True)
class Budget:
    """Everything that differs between the real run and the dry run."""

    device: str
    train: list[str]  # overrides for the `train` step (and the gpu recipe, less its own budget)
    gpu_recipe: list[str]
    bench: list[str]  # tools/bench_train.py options
    ddp: list[str]  # overrides for both torchrun runs
    ddp_steps: tuple[int, int]  # max_steps of the first run, then of the resumed one
    total_s: int  # the whole script: a command's timeout never reaches past it
    timeout_s: dict[str, int] = field(default_factory=dict)  # per command, a ceiling, not a plan


# The real run: under 8 minutes on one H200 (docs/gpu.md has the arithmetic).
REAL = Budget(
    device="cuda",
    train=["train.device=cuda", "train.amp=bf16", "train.max_time=3m", "train.progress=false"],
    gpu_recipe=["train.device=cuda", "train.progress=false"],  # its own max_time (4m) and amp
    bench=["--device", "cuda", "--batches", "8", "--rounds", "2", "--memory-steps", "20"],
    ddp=["train.device=cuda", "train.amp=bf16", "train.valid_every=50", "train.valid_metric_max_sentences=200",
         "train.progress=false"],
    ddp_steps=(100, 200),
    total_s=470,  # 7 min 50 s, leaving the install its seconds within 8 minutes
    timeout_s={"tests": 150, "train": 330, "evaluate": 120, "bench": 200, "ddp": 150, "gpu-recipe": 400},
)
# The dry run: every step on the CPU in seconds, on tiny copies of the recipes.
DRY = Budget(
    device="cpu",
    train=["train.device=cpu", "train.amp=bf16", "train.max_steps=2", "train.valid_every=2", "train.log_every=1",
           "train.progress=false"],
    gpu_recipe=["train.device=cpu", "train.max_steps=2", "train.valid_every=2", "train.log_every=1",
                "train.progress=false"],
    bench=["--device", "cpu", "--batches", "2", "--rounds", "1", "--memory-steps", "2"],
    ddp=["train.device=cpu", "train.valid_every=1", "train.log_every=1", "train.progress=false"],
    ddp_steps=(1, 2),
    total_s=900,
    timeout_s={"tests": 120, "train": 120, "evaluate": 120, "bench": 180, "ddp": 120, "gpu-recipe": 120},
)


class Runner:
    """Runs the steps' commands, each logged in full to gpu_check.log."""

    def __init__(self, out: Path, budget: Budget):
        self.log = out / "gpu_check.log"
        self.log.write_text("", encoding="utf-8")
        self.budget = budget
        self.deadline = time.perf_counter() + budget.total_s

    def seconds_left(self) -> float:
        return self.deadline - time.perf_counter()

    def note(self, text: str) -> None:
        print(text, flush=True)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    def run(self, step: str, cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        """One command: its exit status, seconds and output (output also into the log)."""
        timeout = max(1, min(self.budget.timeout_s[step], int(self.seconds_left())))
        self.note(f"\n$ {' '.join(cmd)}   # {step}, at most {timeout} s")
        start = time.perf_counter()
        # A session of its own, so that a timeout ends torchrun's workers too, not only torchrun.
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            rc, stderr = 124, stderr + f"\n(killed after {timeout} s)"
        seconds = round(time.perf_counter() - start, 1)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(stdout + stderr + f"(exit {rc}, {seconds} s)\n")
        return {"command": cmd, "rc": rc, "seconds": seconds, "stdout": stdout, "stderr": stderr}


def seqkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqkit.cli", *args]


def overrides(items: list[str]) -> list[str]:
    return [part for item in items for part in (SET, item)]


def step_tests(runner: Runner, work: Path) -> dict[str, Any]:
    xml = work / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}"]
    result = runner.run("tests", cmd)
    return {"rc": result["rc"], "seconds": result["seconds"], **(test_outcomes(xml) if xml.exists() else {})}


def train_and_evaluate(runner: Runner, step: str, recipe: Path, budget: list[str], run_dir: Path) -> dict[str, Any]:
    """seqkit train for the budget, then seqkit evaluate (test split, beam 5)."""
    trained = runner.run(step, seqkit("train", str(recipe), *overrides([*budget, f"run_dir={run_dir}"])))
    out: dict[str, Any] = {"rc": trained["rc"], "seconds": trained["seconds"], "train_command": trained["command"]}
    if trained["rc"] != 0:
        return out
    out.update(run_figures(run_dir))
    scored = runner.run("evaluate", seqkit("evaluate", str(run_dir), "--split", "test", BEAM, "5",
                                           "--device", runner.budget.device))
    out["rc"], out["seconds"] = scored["rc"], round(out["seconds"] + scored["seconds"], 1)
    if scored["rc"] == 0:
        result = json.loads(scored["stdout"])
        out.update({key: result[key] for key in ("bleu", "chrf", "sentences", "decode_seconds", "bleu_signature")})
    return out


def step_bench(runner: Runner, recipe: Path, work: Path) -> dict[str, Any]:
    report = work / "bench_train.json"
    cmd = [sys.executable, "tools/bench_train.py", str(recipe), *runner.budget.bench, "--json", str(report)]
    scratch = work / "bench-tmp"  # bench_train's temporary run folders, kept inside --work
    scratch.mkdir(exist_ok=True)
    result = runner.run("bench", cmd, env={"OMP_WAIT_POLICY": "PASSIVE", "TMPDIR": str(scratch)})
    out = {"rc": result["rc"], "seconds": result["seconds"]}
    if result["rc"] == 0:
        bench = json.loads(report.read_text())
        out.update({"target_tokens_per_s": {k: round(v) for k, v in bench["rates"].items()},
                    "trainer_peak_gib": bench["trainer_peak_rss_gib"], "padding_waste": bench["padding_waste"]})
    return out


def step_ddp(runner: Runner, recipe: Path, work: Path) -> dict[str, Any]:
    """torchrun with one process and DDP forced on (nccl on a GPU, gloo on the CPU), then --resume."""
    run_dir, (first, second) = work / "ddp", runner.budget.ddp_steps
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m", "seqkit.cli",
              "train", str(recipe)]
    env = {"SEQKIT_FORCE_DDP": "1", "OMP_NUM_THREADS": "1"}
    out: dict[str, Any] = {"world_size": 1, "rc": 0, "seconds": 0.0, "runs": []}
    for max_steps, extra in ((first, []), (second, ["--resume"])):
        cmd = launch + overrides([*runner.budget.ddp, f"train.max_steps={max_steps}", f"run_dir={run_dir}"]) + extra
        result = runner.run("ddp", cmd, env=env)
        out["rc"], out["seconds"] = out["rc"] or result["rc"], round(out["seconds"] + result["seconds"], 1)
        backend = next((line.split("backend ")[1].split(",")[0] for line in result["stderr"].splitlines()
                        if "distributed: 1 processes, backend" in line), None)
        out["runs"].append({"max_steps": max_steps, "resume": bool(extra), "rc": result["rc"], "backend": backend})
        if result["rc"] != 0:
            return out
    figures = run_figures(run_dir)
    out.update(figures)
    resumed = f"resumed from step-{first:08d}" in (run_dir / "train.log").read_text(encoding="utf-8")
    out["resumed_at_expected_step"] = resumed and figures.get("steps") == second
    if not out["resumed_at_expected_step"]:
        out["rc"] = 1
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info.update({"device": torch.cuda.get_device_name(0), "cuda_version": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version(), "gpus": torch.cuda.device_count()})
    else:
        info["device"] = f"cpu ({platform.processor() or platform.machine()})"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                        check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = None  # the GPU machine may get the tree without .git
    return info


def run_steps(runner: Runner, steps: list[str], dry: bool, work: Path, results: dict[str, Any],
              save: Callable[[], None]) -> None:
    """Run ``steps`` into ``results``, calling ``save`` after each (a run cut short keeps the rest)."""
    recipes = {name: ROOT / "recipes" / f"{name}.yaml" for name in ("translate", "translate-gpu")}
    if dry:
        recipes = {name: dry_recipe(path, work) for name, path in recipes.items()}
    budget = runner.budget
    for index, name in enumerate(steps, 1):
        runner.note(f"\n## [{index}/{len(steps)}] {name}")
        if runner.seconds_left() < 10:
            results[name] = {"rc": 124, "seconds": 0.0, "not_run": f"the {budget.total_s} s budget is spent"}
        elif name == "tests":
            results[name] = step_tests(runner, work)
        elif name == "train":
            results[name] = train_and_evaluate(runner, name, recipes["translate"], budget.train, work / "translate")
        elif name == "gpu-recipe":
            results[name] = train_and_evaluate(runner, name, recipes["translate-gpu"], budget.gpu_recipe,
                                               work / "translate-gpu")
        elif name == "bench":
            results[name] = step_bench(runner, recipes["translate"], work)
        else:
            results[name] = step_ddp(runner, recipes["translate"], work)
        runner.note(f"{name}: {'ok' if results[name]['rc'] == 0 else 'FAILED'} in {results[name]['seconds']:.0f} s")
        save()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for gpu_check.json and gpu_check.log")
    ap.add_argument("--dry-run", action="store_true", help="every step on the CPU with a tiny budget")
    ap.add_argument("--steps", default=",".join(DEFAULT_STEPS), help=f"comma-separated, from {', '.join(STEPS)}")
    ap.add_argument("--work", type=Path, default=None, help="runs and scratch files (default: a new temp folder)")
    args = ap.parse_args(argv)
    args.steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        ap.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device is visible; use --dry-run to run the steps on the CPU", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(args.out, DRY if args.dry_run else REAL)
    start = time.perf_counter()
    report: dict[str, Any] = {"dry_run": args.dry_run, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": machine(), "work": str(work), "budget": runner.budget.__dict__}
    runner.note(f"gpu_check{' --dry-run' if args.dry_run else ''}: steps {', '.join(args.steps)}; work in {work}")
    install_log = Path(os.environ.get("GPU_CHECK_INSTALL_LOG", "/nonexistent"))
    if install_log.is_file():  # tools/gpu_check.sh's install step, before this script started
        report["install"] = install_log.read_text(encoding="utf-8").strip().splitlines()
        runner.note("\n## install (tools/gpu_check.sh)\n" + "\n".join(report["install"]))
    report["steps"] = {}

    def save() -> None:
        report["seconds"] = round(time.perf_counter() - start, 1)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

    run_steps(runner, args.steps, args.dry_run, work, report["steps"], save)
    save()
    runner.note("\n" + summary_table(report))
    return 0 if all(r["rc"] == 0 for r in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
