"""Classifier export: classifier.onnx parity with torch, the runtime's labels, the generic CLI
(`seqkit export` / `seqkit translate` on run and exported directories), tampering, int8.

Run directories are built without training: the toy sentiment corpus of test_classify, a word
tokenizer trained on it, and a randomly initialized classifier (fixed seed) saved as the best
checkpoint. ``make_classifier_run`` is shared with tests/test_runtime.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from test_classify import toy_tsv  # tests/ is on sys.path (no __init__.py)

from seqkit.runs import load_run
from seqkit.tasks.classification import text_classifier
from seqkit.cli import cli
from seqkit.errors import CheckpointError, ModelError
from seqkit.export import export_run
from seqkit.runtime import load_model
from seqkit.runtime import format as fmt

LINES = ["the food was superb", "the movie was awful", "it was fine and the service was really lovely",
         "broken phone", "a a a", "zzz unknown words"]


def make_classifier_run(root: Path, *, enc: str = "gru", pooling: str = "max", layers: int = 1,
                        bidirectional: bool = True, seed: int = 0) -> Path:
    """A classification run directory holding a randomly initialized tiny model as its best checkpoint."""
    from seqkit.checkpoint import save_checkpoint
    from seqkit.tasks.classification import build_labels, prepare_text_tokenizer, save_labels
    from seqkit.data import load_split
    from seqkit.models import build_model
    from seqkit.recipe import load_recipe
    from seqkit.runs import write_recipe

    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / "run"
    tree = {
        "task": "classification", "run_dir": str(run_dir),
        "data": {"format": "tsv", "max_src_len": 8, "train": {"path": str(toy_tsv(root / "train.tsv", 60, 1))},
                 "valid": {"path": str(toy_tsv(root / "valid.tsv", 12, 2))}},
        "tokenizer": {"source": {"type": "word"}},
        "model": {"encoder": {"type": enc, "embedding_dim": 8, "hidden_size": 8, "num_layers": layers,
                              "bidirectional": bidirectional},
                  "head": {"pooling": pooling}},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    recipe = load_recipe(root / "recipe.yaml")
    run_dir.mkdir()
    write_recipe(recipe, run_dir)
    train = load_split(recipe.data, "train", recipe.base_dir, cache_dir=run_dir / "cache")
    labels = build_labels(train.tgt)
    save_labels(run_dir, labels)
    tokenizer = prepare_text_tokenizer(recipe, run_dir, train.src, resume=False)
    torch.manual_seed(seed)
    model = build_model(recipe.model, "classifier", tokenizer.vocab_size, len(labels), tokenizer.pad_id)
    with torch.no_grad():
        model.output.weight.mul_(20.0)  # random weights give probabilities near 0.5; spread them
    save_checkpoint(run_dir / "checkpoints", 1, model, None, {"metrics": {}}, pointers=("last", "best"))
    return run_dir


def export_classifier_tiny(root: Path, **kwargs) -> tuple[Path, Path]:
    """(run dir, exported dir) for make_classifier_run(**kwargs)."""
    options = kwargs.pop("export_options", {})
    run_dir = make_classifier_run(root, **kwargs)
    return run_dir, export_run(run_dir, root / "model", **options)


CASES = {
    "gru-max-bi": {"enc": "gru", "pooling": "max"},
    "lstm-last-1layer": {"enc": "lstm", "pooling": "last"},  # the case the legacy exporter trips on
    "rnn-mean-2layers": {"enc": "rnn", "pooling": "mean", "layers": 2, "bidirectional": False},
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    torch.set_num_threads(1)
    return export_classifier_tiny(tmp_path_factory.mktemp(request.param), **CASES[request.param])


def test_export_writes_the_documented_directory(exported):
    import onnx

    run_dir, model_dir = exported
    files = fmt.model_files(model_dir)
    assert files == [fmt.CLASSIFIER_FILE, fmt.CONFIG_FILE, "tokenizer/src/tokenizer.json"]
    config = fmt.read_config(model_dir)
    assert config.task == "classification" and config.model_kind == "classifier"
    assert config.labels == ["neg", "pos"] == json.loads((run_dir / "labels.json").read_text())
    assert config.tgt_vocab_size == 2 and config.max_src_len == 8 and config.graph_files == {"classifier": fmt.CLASSIFIER_FILE}
    manifest = fmt.verify_manifest(model_dir)
    assert sorted(manifest.files) == files
    report = manifest.verification["fp32"]
    assert report["argmax_identical"] == "12/12"  # the valid split
    assert manifest.verification["samples"] == "12 sentences from valid split"
    assert 0.0 <= report["max_abs_diff"]["probs"] < 1e-4
    graph = onnx.load(str(model_dir / fmt.CLASSIFIER_FILE)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*graph.input, *graph.output)}
    assert dims == {"src": ["batch", "src_len"], "src_lengths": ["batch"], "probs": ["batch", 2]}
    assert not list(model_dir.parent.glob(".model.tmp-*"))


def test_runtime_labels_and_probabilities_match_torch(exported):
    run_dir, model_dir = exported
    run = load_run(run_dir)
    labels = run.labels
    lines = LINES + ["", " ".join(["superb"] * 20)]  # an empty line and one beyond max_src_len
    want = text_classifier(run, labels).classify(lines)
    model = load_model(model_dir, threads=1)
    for batch_size in (None, 2):  # batching must not change a line's result
        got = model.classifier(batch_size).classify(lines)
        assert [r.label for r in got] == [r.label for r in want]
        np.testing.assert_allclose([r.probability for r in got], [r.probability for r in want], atol=1e-5)
        for g, w in zip(got, want):
            assert (g.probs is None) == (w.probs is None)
            if g.probs is not None:
                np.testing.assert_allclose(g.probs, w.probs, atol=1e-5)
                assert g.probs.sum() == pytest.approx(1.0, abs=1e-5) and g.probability == g.probs.max()
    assert got[len(LINES)].label == "" and got[len(LINES)].probability == 0.0
    assert got[-1].warnings and "truncated" in got[-1].warnings[0]
    assert model.classify(LINES) == [(r.label, r.probability) for r in got[: len(LINES)]]


def test_labels_vary_so_the_comparison_means_something(exported):
    _, model_dir = exported
    labels = {label for label, _ in load_model(model_dir, threads=1).classify(LINES + ["poor dull", "great lovely"])}
    assert labels == {"neg", "pos"}


def test_runtime_refuses_other_uses(exported):
    model = load_model(exported[1], threads=1)
    with pytest.raises(ModelError, match="a classification model labels lines instead of translating"):
        model.translate(["x"])
    with pytest.raises(ModelError, match="does not generate from a prompt; use `seqkit translate`"):
        model.generator()


def test_failed_probability_parity_leaves_nothing(tmp_path, monkeypatch):
    import seqkit.export_verify as verify

    run_dir = make_classifier_run(tmp_path)
    monkeypatch.setattr(verify, "ATOL", -1.0)  # every difference, even 0, is now beyond tolerance
    with pytest.raises(ModelError, match=r"parity: output 'probs' \(12 samples\) differs from torch by max \|diff\| = "):
        export_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_different_argmax_fails_export(tmp_path, monkeypatch):
    import seqkit.export_classifier as exc
    import seqkit.export_verify as verify

    run_dir = make_classifier_run(tmp_path)
    real = exc.ort_probs
    monkeypatch.setattr(verify, "ATOL", 2.0)  # probabilities pass; only the argmax check is left
    monkeypatch.setattr(exc, "ort_probs", lambda d: (lambda src, lengths: real(d)(src, lengths)[:, ::-1]))
    with pytest.raises(ModelError, match=r"parity: predicted label of sample 0 differs: torch '(neg|pos)' \(p=0\.\d+\) "
                                         r"vs onnxruntime '(neg|pos)'"):
        export_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_check_sentences_and_missing_labels(tmp_path):
    run_dir = make_classifier_run(tmp_path)
    model_dir = export_run(run_dir, tmp_path / "a", check_sentences=["superb food", "awful"])
    assert fmt.verify_manifest(model_dir).verification["samples"] == "2 sentences from check_sentences"
    (run_dir / "labels.json").unlink()
    with pytest.raises(CheckpointError, match=r"labels\.json: missing"):
        export_run(run_dir, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_int8_export_reports_agreement(tmp_path):
    import onnx

    _, model_dir = export_classifier_tiny(tmp_path, export_options={"quantize": "int8"})
    manifest = fmt.verify_manifest(model_dir)
    assert manifest.quantized == "int8" and set(manifest.verification) == {"checkpoint", "samples", "fp32", "int8"}
    assert manifest.verification["int8"]["argmax_identical"].endswith("/12")
    assert "probs" in manifest.verification["int8"]["max_abs_diff"]
    ops = {n.op_type for n in onnx.load(str(model_dir / fmt.CLASSIFIER_FILE)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM"}
    predicted = load_model(model_dir, threads=1).classify(LINES)
    assert len(predicted) == len(LINES) and all(label in ("neg", "pos") and 0.5 <= p <= 1.0 for label, p in predicted)


def test_tampered_classifier_is_refused(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported[1], copy)
    config = json.loads((copy / fmt.CONFIG_FILE).read_text())
    config["labels"] = ["pos", "neg"]  # swapping labels would silently invert every prediction
    (copy / fmt.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"config\.json: sha256 mismatch with manifest\.json"):
        load_model(copy, threads=1)
    result = CliRunner().invoke(cli, ["translate", str(copy)], input="superb\n")
    assert result.exit_code != 0 and "config.json: sha256 mismatch" in str(result.exception)
    del config["labels"]
    (copy / fmt.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"config\.json: .*labels are required for model_kind 'classifier'"):
        fmt.read_config(copy)


def test_cli_export_and_translate_on_run_and_exported_dirs(tmp_path):
    run_dir = make_classifier_run(tmp_path)
    runner = CliRunner()
    done = runner.invoke(cli, ["export", str(run_dir), "-o", str(tmp_path / "m")])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["files"] == [fmt.CLASSIFIER_FILE, fmt.CONFIG_FILE, "tokenizer/src/tokenizer.json"]
    assert report["verification"]["fp32"]["argmax_identical"] == "12/12"
    text = "\n".join(LINES) + "\n\n"
    by_run = runner.invoke(cli, ["translate", str(run_dir)], input=text)
    by_model = runner.invoke(cli, ["translate", str(tmp_path / "m"), "--batch-size", "2"], input=text)
    assert by_run.exit_code == 0 and by_model.exit_code == 0, by_model.output
    assert by_run.stdout == by_model.stdout
    labels = by_model.stdout.split("\n")
    assert len(labels) == len(LINES) + 2 and set(labels[: len(LINES)]) == {"neg", "pos"} and labels[-2:] == ["", ""]
    scored = runner.invoke(cli, ["translate", str(tmp_path / "m"), "--scores"], input=text)
    rows = [line.split("\t") for line in scored.stdout.splitlines()]
    assert [label for _, label in rows] == labels[:-1]
    assert all(0.5 <= float(p) <= 1.0 for p, label in rows if label) and rows[-1] == ["0.0000", ""]
    misuse = runner.invoke(cli, ["translate", str(tmp_path / "m"), "--beam-size", "3"], input=text)
    assert misuse.exit_code == 1 and "--beam-size: search options do not apply to a classification model" in str(misuse.exception)


def test_generate_on_a_classifier_is_a_clear_error(exported):
    run_dir, model_dir = exported
    for directory in (run_dir, model_dir):
        result = CliRunner().invoke(cli, ["generate", str(directory)])
        assert result.exit_code != 0
        assert "a classification model does not generate from a prompt; use `seqkit translate`" in str(result.exception)
