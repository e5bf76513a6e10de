"""How torch's OpenMP threads wait, and what it costs: training and decoding per setting, idle and beside a busy loop.

    python tools/bench_threads.py RUN_DIR [--recipe recipes/translate.yaml] [--steps 80] [--threads 2] [--busy]

For each setting (``OMP_WAIT_POLICY=PASSIVE``: sleep at once; ``GOMP_SPINCOUNT=10000``: the seqkit
command's default, seqkit.openmp; ``OMP_WAIT_POLICY=ACTIVE``: a long spin), in fresh processes,
taking turns:

- training: ``seqkit train RECIPE`` for ``--steps`` steps (no validation), the mean of the
  trainer's own target tokens/s lines after the first quarter of the steps;
- decoding: RUN_DIR's model through torch (seqkit.inference.Translator, batch 32) over the test
  split, greedy and beam 5, the faster of two passes, the encoder's share timed apart.

``--busy`` repeats everything with one busy process (a Python loop) beside it: a machine whose
other core is taken. Prints a markdown table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin 10000": {"GOMP_SPINCOUNT": "10000"},
            "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}}

DECODE = r"""
import json, sys, time, torch
from pathlib import Path
from seqkit.data import load_split
from seqkit.inference import Translator
from seqkit.models import TorchStepper
from seqkit.runs import load_run
torch.set_num_threads(int(sys.argv[2]))
run = load_run(Path(sys.argv[1]))
src = load_split(run.recipe.data, "test", run.recipe.base_dir, cache_dir=run.run_dir / "cache").src
class Timed(TorchStepper):
    encoder = 0.0
    def start(self, *a):
        t = time.perf_counter(); out = super().start(*a); Timed.encoder += time.perf_counter() - t; return out
out = {}
for strategy in ("greedy", "beam"):
    search = run.recipe.search.model_copy(update={"strategy": strategy, "beam_size": 5, "n_best": 1, "batch_size": 32})
    tr = Translator(Timed(run.model), run.src_tok, run.tgt_tok, search)
    tr.translate(src[:64])
    best = None
    for _ in range(2):
        Timed.encoder = 0.0
        t = time.perf_counter(); tr.translate(src); total = time.perf_counter() - t
        if best is None or total < best[0]:
            best = (total, Timed.encoder)
    out[strategy] = {"seconds": round(best[0], 3), "encoder_s": round(best[1], 3)}
print(json.dumps(out))
"""


def env_for(setting: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **setting}


def train_rate(recipe: Path, steps: int, threads: int, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="bench_threads-") as tmp:
        cmd = [sys.executable, "-m", "seqkit.cli", "train", str(recipe)]
        for s in (f"run_dir={tmp}/run", f"train.max_steps={steps}", "train.max_time=null", "train.progress=false",
                  f"train.valid_every={10 * steps}", f"train.log_every={max(steps // 8, 1)}", f"train.num_threads={threads}"):
            cmd += ["--set", s]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: seqkit train failed: {done.stderr.strip().splitlines()[-1:]}")
    rates = [(int(m.group(1)), float(m.group(2))) for m in re.finditer(r"step (\d+) train: loss [\d.]+, (\d+) tok/s", done.stderr)]
    after = [r for s, r in rates if s > steps // 4]
    return round(sum(after) / max(len(after), 1))


def decode(run_dir: Path, threads: int, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", DECODE, str(run_dir), str(threads)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: decoding failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, load: str) -> dict[str, Any]:
    rows = {}
    for name, setting in SETTINGS.items():
        env = env_for(setting)
        rows[name] = {"train_tok_s": train_rate(args.recipe, args.steps, args.threads, env),
                      **decode(args.run_dir, args.threads, env)}
        print(f"{load} {name}: {rows[name]}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "translate.yaml")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--busy", action="store_true", help="also measure beside one busy process")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    report = {"idle": measure(args, "idle")}
    if args.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            report["one core busy"] = measure(args, "busy")
        finally:
            busy.kill()
    print(f"| threads wait ({args.threads} threads) | load | training tok/s | torch greedy s (encoder) | torch beam 5 s (encoder) |")
    print("|---|---|---:|---:|---:|")
    for load, rows in report.items():
        for name, r in rows.items():
            print(f"| {name} | {load} | {r['train_tok_s']:,} | {r['greedy']['seconds']:.2f} ({r['greedy']['encoder_s']:.2f}) "
                  f"| {r['beam']['seconds']:.2f} ({r['beam']['encoder_s']:.2f}) |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
