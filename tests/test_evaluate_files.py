"""seqkit evaluate MODEL --src FILE --ref FILE: any model, run directory or export (fp32, int8)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sacrebleu
from test_export import SRC_LINES, TGT_LINES, export_run  # tests/ is on sys.path (no __init__.py)
from test_export import export_tiny


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalfiles")
    run_dir, fp32 = export_tiny(root, enc="lstm", dec="lstm", attention="luong-general")
    int8 = export_run(run_dir, root / "int8", quantize="int8")
    (root / "src.txt").write_text("".join(s + "\n" for s in SRC_LINES), encoding="utf-8")
    (root / "ref.txt").write_text("".join(t + "\n" for t in TGT_LINES), encoding="utf-8")
    (root / "ref2.txt").write_text("".join(t.replace("a ", "one ") + "\n" for t in TGT_LINES), encoding="utf-8")
    (root / "short.txt").write_text("a man .\n", encoding="utf-8")
    return root, run_dir, fp32, int8


def seqkit(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *map(str, args)], input=stdin, capture_output=True,
                          timeout=300)


@pytest.mark.parametrize("which", ["fp32", "int8", "run"])
def test_evaluate_on_files_equals_translate_then_sacrebleu(models, which, tmp_path):
    root, run_dir, fp32, int8 = models
    model = {"fp32": fp32, "int8": int8, "run": run_dir}[which]
    done = seqkit("evaluate", model, "--src", root / "src.txt", "--ref", root / "ref.txt", "--beam-size", "2",
                  "-o", tmp_path / "hyps.txt")
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    translated = seqkit("translate", model, "-i", root / "src.txt", "--beam-size", "2")
    hyps = translated.stdout.decode().splitlines()
    assert (tmp_path / "hyps.txt").read_text(encoding="utf-8").splitlines() == hyps
    want = sacrebleu.corpus_bleu(hyps, [TGT_LINES])
    assert result["bleu"] == round(want.score, 2) and "nrefs:1" in result["bleu_signature"]
    assert result["sentences"] == len(SRC_LINES) and result["strategy"] == "beam" and result["beam_size"] == 2


def test_several_references_and_bad_files(models):
    root, run_dir, fp32, _ = models
    done = seqkit("evaluate", fp32, "--src", root / "src.txt", "--ref", root / "ref.txt", "--ref", root / "ref2.txt")
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert "nrefs:2" in result["bleu_signature"]
    cases = [
        (["evaluate", fp32, "--src", root / "src.txt", "--ref", root / "short.txt"],
         f"error: {root / 'short.txt'}: 1 lines, but {root / 'src.txt'} has {len(SRC_LINES)}"),
        (["evaluate", fp32], f"error: {fp32}: an exported model carries no data splits; give --src FILE --ref FILE"),
        (["evaluate", fp32, "--src", root / "src.txt"], "error: --src needs at least one --ref file"),
        (["evaluate", run_dir, "--ref", root / "ref.txt"], "error: --ref needs --src"),
    ]
    for args, message in cases:
        bad = seqkit(*args)
        err = bad.stderr.decode()
        assert bad.returncode == 1 and err.startswith(message) and err.count("\n") == 1, err
