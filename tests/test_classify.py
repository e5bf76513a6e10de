"""Sequence classification: labels.json, the Classifier model, training and evaluation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from seqkit.errors import CheckpointError, DataError, PluginError, RecipeError
from seqkit.evaluate import evaluate_run, is_classifier
from seqkit.model_config import ModelConfig
from seqkit.models import Classifier, build_model
from seqkit.recipe import load_recipe
from seqkit.runs import load_run, train_run
from seqkit.tasks.classification import build_labels, classify_lines, label_ids, load_labels, save_labels
from seqkit.tasks.common import check_model

ROOT = Path(__file__).resolve().parents[1]
GOOD, BAD = ["great", "lovely", "superb", "fine"], ["awful", "poor", "broken", "dull"]
FILLER = ["the", "food", "was", "really", "and", "service", "it", "a", "phone", "movie"]


def toy_tsv(path: Path, n: int, seed: int) -> Path:
    """Label pos iff the sentence holds a GOOD word (else a BAD one): separable by one token."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label == "pos" else BAD))
        lines.append(" ".join(words) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_recipe(tmp_path: Path) -> Path:
    tree = {
        "task": "classification",
        "run_dir": str(tmp_path / "run"),
        "seed": 2,
        "data": {"format": "tsv", "train": {"path": str(toy_tsv(tmp_path / "train.tsv", 300, 1))},
                 "valid": {"path": str(toy_tsv(tmp_path / "valid.tsv", 40, 2))},
                 "test": {"path": str(toy_tsv(tmp_path / "test.tsv", 40, 3))}},
        "tokenizer": {"source": {"type": "word"}},
        "model": {"encoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 16, "num_layers": 1,
                              "dropout": 0.0, "embedding_dropout": 0.0},
                  "head": {"pooling": "max", "dropout": 0.0}},
        "train": {"batch_tokens": 200, "max_steps": 40, "valid_every": 20, "progress": False, "num_threads": 1,
                  "optimizer": {"lr": 0.02}},
    }
    path = tmp_path / "classify.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("classify")
    train_run(write_recipe(tmp), [], resume=False)
    return tmp / "run"


def test_trains_above_chance_and_writes_labels(trained):
    assert json.loads((trained / "labels.json").read_text()) == ["neg", "pos"]
    assert (trained / "tokenizer" / "src" / "tokenizer.json").is_file()
    assert not (trained / "tokenizer" / "tgt").exists()
    events = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    valid = [e for e in events if e.get("split") == "valid"]
    assert [e["step"] for e in valid] == [20, 40]
    assert valid[-1]["accuracy"] >= 0.9 and valid[-1]["macro_f1"] >= 0.9  # chance is 0.5


def test_evaluate_reports_accuracy_and_macro_f1(trained, tmp_path):
    out = tmp_path / "pred.txt"
    result = evaluate_run(trained, split="test", which="best", beam_size=None, strategy=None, output=out, device="cpu")
    assert result["split"] == "test" and result["examples"] == 40
    assert result["accuracy"] >= 0.9 and 0.0 <= result["macro_f1"] <= 1.0
    preds = out.read_text().splitlines()
    assert len(preds) == 40 and set(preds) <= {"neg", "pos"}
    gold = [line.split("\t")[1] for line in (trained.parent / "test.tsv").read_text().splitlines()]
    assert sum(p == g for p, g in zip(preds, gold)) / 40 == pytest.approx(result["accuracy"])
    last = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "evaluate" and last["accuracy"] == result["accuracy"]


def test_classify_lines(trained):
    run = load_run(trained)
    assert is_classifier(trained) and run.tgt_tok is None and not run.model.training
    (label_a, p_a), (label_b, _) = classify_lines(run, ["the food was superb", "the movie was awful"])
    assert (label_a, label_b) == ("pos", "neg") and 0.5 < p_a <= 1.0


def test_resume_keeps_the_labels(trained):
    metrics = train_run(trained, ["train.max_steps=50"], resume=True)
    assert metrics["step"] == 50
    assert load_labels(trained) == ["neg", "pos"]


# -- labels ---------------------------------------------------------------------------------------
def test_labels_are_sorted_numerically_and_round_trip(tmp_path):
    labels = build_labels(["10", "2", "1", "2"])
    assert labels == ["1", "2", "10"]
    assert build_labels(["pos", "neg", "pos"]) == ["neg", "pos"]
    save_labels(tmp_path, labels)
    assert load_labels(tmp_path) == labels
    assert label_ids(["10", "1"], labels, "valid").tolist() == [2, 0]


def test_label_errors(tmp_path):
    with pytest.raises(DataError, match="at least 2 distinct labels"):
        build_labels(["pos", "pos"])
    with pytest.raises(DataError, match=r"data\.test: label\(s\) \['maybe'\]"):
        label_ids(["pos", "maybe"], ["neg", "pos"], "test")
    with pytest.raises(CheckpointError, match="labels.json: missing"):
        load_labels(tmp_path)
    (tmp_path / "labels.json").write_text('{"a": 1}')
    with pytest.raises(CheckpointError, match="list of at least 2"):
        load_labels(tmp_path)


# -- the model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_classifier_pooling_ignores_padding(pooling):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder={"type": "lstm", "embedding_dim": 8, "hidden_size": 6, "num_layers": 2},
                      head={"pooling": pooling})
    model = build_model(cfg, "classifier", 20, 3, 0).eval()
    assert isinstance(model, Classifier)
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    logits = model(src, torch.tensor([4, 3]))
    assert logits.shape == (2, 3)
    alone = model(src[1:, :3], torch.tensor([3]))
    torch.testing.assert_close(logits[1:], alone)


def test_validate_model_config_for_classification():
    check_model(ModelConfig(encoder={"type": "gru"}), "classifier")
    with pytest.raises(PluginError, match=r"^model\.encoder"):
        check_model(ModelConfig(encoder={"type": "gruu"}), "classifier")
    with pytest.raises(Exception, match="pooling"):
        ModelConfig(head={"pooling": "median"})


def test_shipped_classify_recipe():
    recipe = load_recipe(ROOT / "recipes" / "classify.yaml")
    assert recipe.task == "classification" and recipe.data.format == "tsv"
    assert recipe.model.head.pooling in ("mean", "max", "last")
    with pytest.raises(RecipeError, match=r"model\.head\.pooling"):
        load_recipe(ROOT / "recipes" / "classify.yaml", ["model.head.pooling=avg"])
