"""Plots: token labels, metrics.jsonl curves, the attention heat map, and their CLI commands
(`seqkit translate --attention-plot`, `seqkit plot RUN_DIR`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from test_export import SRC_LINES, export_tiny  # tests/ is on sys.path (no __init__.py)

from seqkit.cli import cli
from seqkit.errors import SeqkitError
from seqkit.plot import EOS_LABEL, curves, read_metrics, token_labels
from seqkit.tokenizers.word import WordTokenizer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVENTS = [
    {"step": 5, "epoch": 0, "time": 1.0, "split": "train", "loss": 4.0, "tok_s": 900.0, "lr": 0.01},
    {"step": 10, "epoch": 0, "time": 2.0, "split": "train", "loss": 3.0, "tok_s": 950.0, "lr": 0.01},
    {"step": 10, "epoch": 0, "time": 2.5, "split": "valid", "loss": 3.5, "ppl": 33.1, "bleu": 1.5, "valid_seconds": 0.4},
    {"step": 20, "epoch": 1, "time": 4.0, "split": "train", "loss": 2.0, "tok_s": 990.0, "lr": 0.005},
    {"step": 20, "epoch": 1, "time": 4.5, "split": "valid", "loss": 2.5, "ppl": 12.2, "bleu": 4.0, "valid_seconds": 0.4},
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def write_metrics(run_dir: Path, events: list[dict], tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + tail, encoding="utf-8")
    return run_dir


def seqkit(*args: str, stdin: str = "") -> Result:
    """The CLI in process (a subprocess per call costs seconds of imports); SeqkitError is the
    exception where `seqkit` would print `error: ...` and exit 1."""
    return CliRunner().invoke(cli, list(args), input=stdin)


def test_token_labels_use_only_decode(tmp_path):
    tok = WordTokenizer.train(["ein hund"], WordTokenizer.Config(), tmp_path)
    ids = tok.encode("ein hund katze")
    assert ids[2] == tok.unk_id
    assert token_labels(tok, ids + [tok.eos_id]) == ["ein", "hund", tok.decode([tok.unk_id]).strip() or "·", EOS_LABEL]


def test_curves_split_metrics_and_skip_bookkeeping(tmp_path):
    run = write_metrics(tmp_path / "run", EVENTS, tail='{"step": 30, "split": "tra')  # torn last line
    data = curves(read_metrics(run))
    assert sorted(data) == ["bleu", "loss", "ppl"]
    assert data["loss"]["train"] == ([5.0, 10.0, 20.0], [4.0, 3.0, 2.0])
    assert data["loss"]["valid"] == ([10.0, 20.0], [3.5, 2.5])
    assert data["bleu"] == {"valid": ([10.0, 20.0], [1.5, 4.0])}


def test_read_metrics_errors(tmp_path):
    with pytest.raises(SeqkitError, match="metrics.jsonl: missing"):
        read_metrics(tmp_path)
    write_metrics(tmp_path, EVENTS[:1], tail="not json\n" + json.dumps(EVENTS[1]) + "\n")
    with pytest.raises(SeqkitError, match=r"metrics.jsonl:2: not a JSON object"):
        read_metrics(tmp_path)


def test_plot_attention_checks_shape_and_writes_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    from seqkit.plot import plot_attention

    weights = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    path = plot_attention(weights, ["ein", "hund", EOS_LABEL], ["dog", EOS_LABEL], tmp_path / "a" / "att.png",
                          title="ein hund → dog")
    width, height = png_size(path)
    assert width > 300 and height > 200
    with pytest.raises(ValueError, match="does not match 2 target x 2 source"):
        plot_attention(weights, ["ein", "hund"], ["dog", EOS_LABEL], tmp_path / "bad.png")


def test_cli_plot_writes_curves(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    run = write_metrics(tmp_path / "run", EVENTS)
    done = seqkit("plot", str(run))
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(run / "curves.png")
    width, height = png_size(run / "curves.png")
    assert width >= 1000 and height >= 300  # three panels side by side
    out = seqkit("plot", str(run), "-o", str(tmp_path / "elsewhere.png"))
    assert out.exit_code == 0 and png_size(tmp_path / "elsewhere.png") == (width, height)
    empty = seqkit("plot", str(write_metrics(tmp_path / "empty", [{"step": 1, "split": "train", "lr": 0.1}])))
    assert isinstance(empty.exception, SeqkitError) and "no metric values to plot" in str(empty.exception)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("plot-s2s"), enc="gru", dec="gru", attention="luong-dot",
                       search={"max_len_offset": 3, "strategy": "greedy"})[1]


def test_cli_translate_attention_plot(exported, tmp_path, caplog):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    from seqkit.runtime import load_model

    out = tmp_path / "att.png"
    with caplog.at_level(logging.INFO, logger="seqkit"):
        done = seqkit("translate", str(exported), "--attention-plot", str(out),
                      stdin="\n" + "\n".join(SRC_LINES[:2]) + "\n")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == load_model(exported).translate(["", *SRC_LINES[:2]])  # output unchanged
    assert f"attention heat map written to {out}" in caplog.text
    width, height = png_size(out)
    assert width > 300 and height > 200


def test_cli_attention_plot_needs_attention(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra is not installed: pip install -e '.[plot]'")
    _, model_dir = export_tiny(tmp_path, enc="rnn", dec="rnn", attention="none", search={"max_len_offset": 3})
    done = seqkit("translate", str(model_dir), "--attention-plot", str(tmp_path / "x.png"), stdin=SRC_LINES[0] + "\n")
    assert isinstance(done.exception, SeqkitError) and "this model has no attention" in str(done.exception)
    assert not (tmp_path / "x.png").exists()
