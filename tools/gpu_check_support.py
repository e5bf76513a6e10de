"""tools/gpu_check.py's helpers: the dry run's tiny recipes, the figures read back from a run
directory and from pytest's JUnit XML, and the summary table."""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from seqkit import checkpoint as ckpt

# The dry run's copy of a recipe: its first lines of data, a small vocabulary and model.
DRY_LINES = {"train": 300, "valid": 40, "test": 40}
DRY_MODEL = {"embedding_dim": 16, "hidden_size": 16, "num_layers": 1}


def _head(path: Path, lines: int, dest: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        head = [next(fh) for _ in range(lines)]
    dest.write_text("".join(head), encoding="utf-8")
    return str(dest)


def dry_recipe(recipe: Path, work: Path) -> Path:
    """A copy of ``recipe`` that trains in seconds on a CPU: same keys, tiny data and model."""
    tree = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    data_dir = work / f"dry-{recipe.stem}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, lines in DRY_LINES.items():
        for side in ("src", "tgt"):
            source = recipe.parent / tree["data"][split][side]
            tree["data"][split][side] = _head(source, lines, data_dir / f"{split}.{side}")
    tree["tokenizer"]["source"]["vocab_size"] = 250
    for part in ("encoder", "decoder"):
        tree["model"][part].update(DRY_MODEL)
    tree["train"].update({"batch_tokens": 400, "num_threads": 1})
    path = work / f"dry-{recipe.name}"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Steps, target tokens/s of training (validation time left out), peak GPU memory and the
    last validation metric of a finished run, from its last checkpoint and metrics.jsonl."""
    state = ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(run_dir, "last"))
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    valid = [e for e in events if e.get("split") == "valid"]
    valid_seconds = sum(e.get("valid_seconds", 0.0) for e in valid)
    train_seconds = max(state["elapsed"] - valid_seconds, 1e-9)
    peaks = [e["gpu_peak_gib"] for e in valid if "gpu_peak_gib" in e]
    return {
        "steps": state["step"], "epochs": state["epoch"], "target_tokens": state["tokens"],
        "train_seconds": round(train_seconds, 1), "valid_seconds": round(valid_seconds, 1),
        "target_tokens_per_s": round(state["tokens"] / train_seconds),
        "gpu_peak_gib": max(peaks) if peaks else None,
        "valid_bleu": valid[-1].get("bleu") if valid else None,
    }


def test_outcomes(xml: Path) -> dict[str, Any]:
    """Which tests of a pytest JUnit XML passed, failed (with the message) or were skipped (why)."""
    out: dict[str, Any] = {"passed": [], "failed": {}, "skipped": {}}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        problem = next((child for child in case if child.tag in ("failure", "error")), None)
        skipped = case.find("skipped")
        if problem is not None:
            out["failed"][name] = (problem.get("message") or "")[:300]
        elif skipped is not None:
            out["skipped"][name] = skipped.get("message") or ""
        else:
            out["passed"].append(name)
    return out


def _figures(name: str, result: dict[str, Any]) -> str:
    if name == "tests":
        return (f"{len(result.get('passed', []))} passed, {len(result.get('failed', {}))} failed, "
                f"{len(result.get('skipped', {}))} skipped")
    if name == "bench":
        rates = result.get("target_tokens_per_s", {})
        gpu = {k.split(",")[0]: v for k, v in result.get("trainer_peak_gib", {}).items() if "GPU" in k}
        return "; ".join([*(f"{k}: {v:,} tok/s" for k, v in rates.items()),
                          *(f"peak GPU ({'fp32' if k == 'none' else k}) {v:.2f} GiB" for k, v in gpu.items())])
    parts = []
    if "steps" in result:
        parts.append(f"{result['steps']} steps, {result['target_tokens_per_s']:,} target tok/s")
    if result.get("gpu_peak_gib") is not None:
        parts.append(f"peak GPU {result['gpu_peak_gib']:.2f} GiB")
    if "bleu" in result:
        parts.append(f"test BLEU (beam 5) {result['bleu']:.2f}")
    if name == "ddp" and result.get("runs"):
        parts.append(f"backend {result['runs'][0]['backend']}, world size 1, resumed to step "
                     f"{result.get('steps')}: {'ok' if result.get('resumed_at_expected_step') else 'NO'}")
    return ", ".join(parts)


def summary_table(report: dict[str, Any]) -> str:
    """The markdown table printed at the end (and kept in the log)."""
    lines = [f"# gpu_check {'DRY RUN (cpu) ' if report['dry_run'] else ''}{report['date']} on {report['machine']['device']}",
             "", "| step | result | seconds | figures |", "|---|---|---:|---|"]
    for name, result in report["steps"].items():
        status = "ok" if result.get("rc") == 0 else f"FAILED (exit {result.get('rc')})"
        if "not_run" in result:
            status = f"NOT RUN: {result['not_run']}"
        lines.append(f"| {name} | {status} | {result.get('seconds', 0):.0f} | {_figures(name, result)} |")
    lines.append(f"\ntotal {report['seconds']:.0f} s")
    return "\n".join(lines)
