"""Pictures of a model and a run: the source x target attention heat map, and training curves.

matplotlib (``pip install 'seqkit[plot]'``) is imported only inside the drawing functions, with
the Agg backend (files, no display); :func:`token_labels` and :func:`read_metrics` need neither
matplotlib nor torch, so the server uses them too.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seqkit.errors import SeqkitError

EOS_LABEL = "</s>"
# Bookkeeping fields of metrics.jsonl events: not curves.
NOT_CURVES = frozenset({"step", "epoch", "time", "split", "valid_seconds", "tok_s", "lr", "tokens", "seconds"})


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """One readable label per id: the token decoded alone (the contract's ``decode`` only, so
    any tokenizer plugin works); eos as ``</s>``, a token that decodes to nothing as ``·``."""
    labels = []
    for i in ids:
        if i == tokenizer.eos_id:
            labels.append(EOS_LABEL)
        else:
            labels.append(tokenizer.decode([i]).strip() or "·")
    return labels


def attention_labels(result: Any, src_tokenizer: Any, tgt_tokenizer: Any) -> tuple[list[str], list[str]]:
    """(source labels, target labels) matching ``result.attention`` (rows, cols) of a
    :class:`seqkit.inference.TranslationResult`: the target row list ends with eos."""
    return token_labels(src_tokenizer, result.src_tokens), token_labels(tgt_tokenizer, result.tokens) + [EOS_LABEL]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SeqkitError("plots need matplotlib: pip install 'seqkit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attention(weights: np.ndarray, src_labels: Sequence[str], tgt_labels: Sequence[str], path: Path,
                   *, title: str | None = None) -> Path:
    """Write the heat map of ``weights`` (T, S): row t = target token t, column s = source token s."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(tgt_labels), len(src_labels)):
        raise ValueError(f"attention {weights.shape} does not match {len(tgt_labels)} target x "
                         f"{len(src_labels)} source labels")
    plt = _pyplot()
    width = min(4 + 0.45 * len(src_labels), 30)
    height = min(3 + 0.4 * len(tgt_labels), 30)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src_labels)), labels=list(src_labels), rotation=60, ha="right")
        ax.set_yticks(range(len(tgt_labels)), labels=list(tgt_labels))
        ax.set_xlabel("source")
        ax.set_ylabel("target")
        if title:
            ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig: Any, path: Path) -> Path:
    """Lay out ``fig`` and write it to ``path`` (parent folders created)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The events of RUN_DIR/metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SeqkitError(f"{path}: missing (not a run directory, or no step logged yet)")
    events = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                continue
            raise SeqkitError(f"{path}:{n}: not a JSON object") from None
        if isinstance(event, dict) and isinstance(event.get("step"), (int, float)):
            events.append(event)
    if not events:
        raise SeqkitError(f"{path}: no events with a step")
    return events


def curves(events: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """metric -> split -> (steps, values) for every finite numeric field that is not bookkeeping."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for event in events:
        split = str(event.get("split", "train"))
        for key, value in event.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            steps, values = out.setdefault(key, {}).setdefault(split, ([], []))
            steps.append(float(event["step"]))
            values.append(float(value))
    return out


def plot_curves(run_dir: Path, path: Path) -> Path:
    """Write one PNG with a panel per metric (loss first), train and valid as separate lines."""
    data = curves(read_metrics(run_dir))
    if not data:
        raise SeqkitError(f"{Path(run_dir) / 'metrics.jsonl'}: no metric values to plot")
    names = sorted(data, key=lambda k: (k != "loss", k))
    plt = _pyplot()
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), dpi=100, squeeze=False)
    try:
        for ax, name in zip(axes.flat, names):
            for split, (steps, values) in sorted(data[name].items()):
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=split)
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        fig.suptitle(str(Path(run_dir).resolve().name), fontsize=11)
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_first_attention(lines: list[str], results: list, translator: Any, path: Path) -> None:
    """``seqkit translate --attention-plot``: the heat map of the first non-empty line of
    ``lines`` (its TranslationResult in ``results``) as a PNG at ``path``."""
    chosen = next(((line, r) for line, r in zip(lines, results) if r.src_tokens), None)
    if chosen is None:
        raise SeqkitError("--attention-plot: no non-empty input line to plot")
    line, result = chosen
    if result.attention is None:
        raise SeqkitError("--attention-plot: this model has no attention (its decoder's attention is 'none')")
    src, tgt = attention_labels(result, translator.src_tokenizer, translator.tgt_tokenizer)
    plot_attention(result.attention, src, tgt, path, title=f"{line.strip()}\n→ {result.text}")
    logging.getLogger("seqkit").info("attention heat map written to %s", path)
