"""The task table (seqkit.tasks): a task registered by one entry, implemented in one module
(tests/copy_task.py, the example of docs/architecture.md), trains, evaluates, exports and
translates through the same commands as the built-in tasks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import copy_task
from seqkit.cli import cli
from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe
from seqkit.tasks import TASKS, entry, load_task

WORDS = ["ka", "lo", "mi", "nu", "po", "ri", "su", "te"]


def lines(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(" ".join(rng.choices(WORDS, k=rng.randint(2, 5))) + "\n" for _ in range(n)),
                    encoding="utf-8")
    return path


def copy_recipe(tmp: Path) -> Path:
    tree = {
        "task": "copy", "run_dir": str(tmp / "run"), "seed": 1,
        "data": {"format": "text", "train": {"path": str(lines(tmp / "train.txt", 300, 1))},
                 "valid": {"path": str(lines(tmp / "valid.txt", 20, 2))},
                 "test": {"path": str(lines(tmp / "test.txt", 20, 3))}},
        "tokenizer": {"shared": True, "source": {"type": "word"}},
        "model": {"encoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1},
                  "decoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1,
                              "attention": {"type": "luong-general"}}},
        "train": {"batch_tokens": 400, "max_steps": 120, "valid_every": 60, "progress": False, "num_threads": 1,
                  "optimizer": {"lr": 0.01}},
        "search": {"beam_size": 1},
    }
    path = tmp / "copy.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_an_unregistered_task_is_refused_with_the_choices(tmp_path):
    with pytest.raises(RecipeError, match=r"task: unknown value 'copy'; expected 'translation', 'summarization', "
                                          r"'lm' or 'classification'"):
        load_recipe(copy_recipe(tmp_path))


def test_every_table_entry_has_its_module():
    for name in TASKS:
        task = load_task(name)
        assert all(callable(getattr(task, m)) for m in ("prepare_vocab", "open_vocab", "trainable", "front_end",
                                                         "evaluate", "export"))
    assert entry("lm").front_end == "generator" and entry("classification").model == "classifier"


def test_a_registered_task_trains_evaluates_and_exports(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, "copy", copy_task.ENTRY)  # the one table entry
    recipe, run_dir, model_dir = copy_recipe(tmp_path), tmp_path / "run", tmp_path / "exported"
    runner = CliRunner()

    trained = runner.invoke(cli, ["train", str(recipe)])
    assert trained.exit_code == 0, trained.output
    valid = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    valid = [e for e in valid if e.get("split") == "valid"]
    assert [e["step"] for e in valid] == [60, 120] and all(0.0 <= e["accuracy"] <= 1.0 for e in valid)
    assert valid[-1]["loss"] < valid[0]["loss"]  # it learns

    evaluated = runner.invoke(cli, ["evaluate", str(run_dir), "--split", "test"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.output)
    assert result["split"] == "test" and result["sentences"] == 20 and 0.0 <= result["accuracy"] <= 1.0

    exported = runner.invoke(cli, ["export", str(run_dir), "-o", str(model_dir)])
    assert exported.exit_code == 0, exported.output
    assert json.loads((model_dir / "config.json").read_text())["task"] == "copy"

    text = (tmp_path / "test.txt").read_text()
    by_run, by_export = (runner.invoke(cli, ["translate", str(d)], input=text) for d in (run_dir, model_dir))
    assert by_run.exit_code == 0 and by_export.exit_code == 0, by_run.output + by_export.output
    assert by_export.output == by_run.output and len(by_run.output.splitlines()) == 20

    on_files = runner.invoke(cli, ["evaluate", str(model_dir), "--src", str(tmp_path / "test.txt"),
                                   "--ref", str(tmp_path / "test.txt")])
    assert on_files.exit_code == 0, on_files.output
    assert json.loads(on_files.output)["accuracy"] == pytest.approx(result["accuracy"])
