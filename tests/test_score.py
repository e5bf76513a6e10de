"""seqkit score: forced decoding over the step protocol, the same numbers from torch and onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_export import LM_TEXT, SRC_LINES, TGT_LINES, export_tiny  # tests/ is on sys.path (no __init__.py)

from seqkit.models import TorchStepper
from seqkit.runs import load_run
from seqkit.runtime import load_model
from seqkit.score import score_pairs


@pytest.fixture(scope="module")
def s2s(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    run_dir, model_dir = export_tiny(root, enc="gru", dec="lstm", attention="bahdanau")
    (root / "src.txt").write_text("".join(s + "\n" for s in SRC_LINES) + "\n", encoding="utf-8")
    (root / "tgt.txt").write_text("".join(t + "\n" for t in TGT_LINES) + "a dog .\n", encoding="utf-8")
    return root, run_dir, model_dir


def seqkit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_forced_decoding_of_the_greedy_output_is_its_log_prob(s2s):
    _, _, model_dir = s2s
    model = load_model(model_dir, threads=1)
    results = model.translator(strategy="greedy").translate(SRC_LINES)
    scored = score_pairs(model.stepper, model.src_tokenizer, model.tgt_tokenizer, SRC_LINES, [r.text for r in results])
    for r, s in zip(results, scored):
        assert s.tokens == len(r.tokens) + 1  # its tokens and eos
        assert s.log_prob == pytest.approx(r.log_prob, abs=1e-4)


def test_torch_and_onnxruntime_give_the_same_scores(s2s):
    root, run_dir, model_dir = s2s
    torch_out = seqkit("score", run_dir, "--src", root / "src.txt", "--tgt", root / "tgt.txt", "--format", "jsonl")
    ort_out = seqkit("score", model_dir, "--src", root / "src.txt", "--tgt", root / "tgt.txt", "--format", "jsonl")
    assert torch_out.returncode == 0 and ort_out.returncode == 0, torch_out.stderr + ort_out.stderr
    a = [json.loads(line) for line in torch_out.stdout.splitlines()]
    b = [json.loads(line) for line in ort_out.stdout.splitlines()]
    assert len(a) == len(b) == len(SRC_LINES) + 1 and [r["line"] for r in a] == list(range(1, len(a) + 1))
    assert np.abs(np.array([r["log_prob"] for r in a]) - [r["log_prob"] for r in b]).max() < 1e-4
    assert all(r["log_prob"] < 0 and r["normalized"] == pytest.approx(r["log_prob"] / r["tokens"], abs=1e-5) for r in a)
    tsv = seqkit("score", model_dir, "--src", root / "src.txt", "--tgt", root / "tgt.txt").stdout.splitlines()
    assert [float(row.split("\t")[0]) for row in tsv] == [r["log_prob"] for r in b]


def test_a_language_model_scores_lines_in_bits_per_char(tmp_path):
    run_dir, model_dir = export_tiny(tmp_path, task="lm", dec="gru")
    lines = LM_TEXT.splitlines()[:5]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = load_run(run_dir)
    want = score_pairs(TorchStepper(run.model), None, run.tgt_tok, None, lines)
    done = seqkit("score", model_dir, "--tgt", tmp_path / "text.txt")
    assert done.returncode == 0, done.stderr
    rows = [row.split("\t") for row in done.stdout.splitlines()]
    assert [int(r[2]) for r in rows] == [len(line) + 1 for line in lines]
    for row, w in zip(rows, want):
        assert float(row[0]) == pytest.approx(w.log_prob, abs=1e-4) and float(row[3]) > 0
    bad = seqkit("score", model_dir, "--src", tmp_path / "text.txt", "--tgt", tmp_path / "text.txt")
    assert bad.returncode == 1 and bad.stderr == "error: --src: a language model scores --tgt lines alone\n"


def test_score_errors_are_one_line(s2s, tmp_path):
    root, _, model_dir = s2s
    (tmp_path / "one.txt").write_text("a dog .\n", encoding="utf-8")
    cases = [
        (["score", model_dir, "--src", root / "src.txt", "--tgt", tmp_path / "one.txt"],
         f"error: {tmp_path / 'one.txt'}: 1 lines, but {root / 'src.txt'} has {len(SRC_LINES) + 1}"),
        (["score", model_dir, "--tgt", root / "tgt.txt"], "error: --src is required: a translation model scores"),
    ]
    for args, message in cases:
        bad = seqkit(*args)
        assert bad.returncode == 1 and bad.stderr.startswith(message) and bad.stderr.count("\n") == 1, bad.stderr
