"""Language-model task: TBPTT training, state carried across chunks, metrics, evaluate, generate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from seqkit.data import load_split
from seqkit.errors import DataError
from seqkit.evaluate import evaluate_run
from seqkit.inference import Generator
from seqkit.tasks.lm import LMTask, evaluate_lm, lm_metrics, stream_nll
from seqkit.models import TorchStepper
from seqkit.recipe import load_recipe
from seqkit.runs import build_task, load_run, train_run

ROOT = Path(__file__).resolve().parents[1]
LINES = ["ROMEO: to be or not.", "JULIET: not to be.", "ROMEO: be or be not!", "NURSE: to bed, to bed."]


def write_lm_recipe(tmp_path: Path, **train: object) -> Path:
    text = "\n".join(LINES[i % len(LINES)] for i in range(300)) + "\n"
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    tree = {
        "task": "lm",
        "run_dir": str(tmp_path / "run"),
        "seed": 5,
        "data": {"format": "text", "train": {"path": str(tmp_path / "text.txt")}, "valid_fraction": 0.1},
        "tokenizer": {"source": {"type": "char"}},
        "model": {"decoder": {"type": "lstm", "embedding_dim": 8, "hidden_size": 32, "num_layers": 1,
                              "dropout": 0.0, "embedding_dropout": 0.0, "tie_embeddings": False}},
        "train": {"batch_size": 4, "bptt": 16, "max_steps": 40, "valid_every": 20, "log_every": 10,
                  "label_smoothing": 0.0, "progress": False, "num_threads": 1, "optimizer": {"lr": 0.02},
                  **train},
        "search": {"strategy": "sample", "temperature": 0.5, "max_len": 40, "seed": 1},
    }
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("lm")
    train_run(write_lm_recipe(tmp), [], resume=False)
    return tmp / "run"


def valid_events(run_dir: Path) -> list[dict]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e.get("split") == "valid"]


def test_lm_trains_and_validation_loss_decreases(trained_lm):
    events = valid_events(trained_lm)
    assert [e["step"] for e in events] == [20, 40]
    first, last = events[0], events[-1]
    assert last["loss"] < first["loss"] < math.log(20)  # well below a uniform guess over the chars
    for e in events:
        assert e["bits_per_char"] == pytest.approx(e["loss"] / math.log(2))
        assert e["ppl"] == pytest.approx(math.exp(e["loss"]))
    assert not (trained_lm / "tokenizer" / "src").exists()  # a language model has one tokenizer


def test_evaluate_lm_reports_bits_per_char(trained_lm):
    run = load_run(trained_lm, "best")
    corpus = load_split(run.recipe.data, "valid", run.recipe.base_dir)
    assert evaluate_lm(run, corpus)["loss"] > 0
    result = evaluate_run(trained_lm, split="valid", which="best", beam_size=None, strategy=None, output=None,
                          device="cpu")  # evaluate_lm, and the event appended to metrics.jsonl
    assert result["split"] == "valid" and result["chars"] == len(corpus.text)
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2))
    best = min(valid_events(trained_lm), key=lambda e: e["loss"])
    assert result["loss"] == pytest.approx(best["loss"], rel=1e-5)  # the same scoring as validation
    last = json.loads((trained_lm / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "evaluate" and last["loss"] == pytest.approx(result["loss"])


def test_generator_samples_from_a_run(trained_lm):
    run = load_run(trained_lm, "best")
    generator = Generator(TorchStepper(run.model), run.tgt_tok, run.recipe.search)
    text = generator.generate("ROMEO:", max_tokens=30, seed=1)
    assert text.startswith("ROMEO:") and len(text) <= len("ROMEO:") + 30
    assert text == generator.generate("ROMEO:", max_tokens=30, seed=1)  # seeded


def make_task(tmp_path: Path, **train: object) -> LMTask:
    torch.manual_seed(0)
    recipe = load_recipe(write_lm_recipe(tmp_path, **train))
    run_dir = Path(recipe.run_dir)
    run_dir.mkdir(parents=True)
    task = build_task(recipe, run_dir, False, torch.device("cpu"))
    assert isinstance(task, LMTask)
    return task


def test_state_is_carried_across_chunks_and_reset_when_they_do_not_follow(tmp_path):
    task = make_task(tmp_path)
    task.model.eval()  # no dropout: numbers must match exactly
    chunks = task.batches(0, seed=5)
    assert chunks == list(range(len(chunks))) and len(chunks) > 3
    inputs, targets = task._streams
    with torch.no_grad():
        _, n0, nll0 = task.loss(0)
        assert all(not s.requires_grad for s in task._state)
        _, n1, nll1 = task.loss(1)
        # One pass over both chunks with a continuous state gives the same total NLL.
        logits, _ = task.model(inputs[:, :32])
        whole = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets[:, :32].reshape(-1),
                                                  reduction="sum")
        assert n0 == n1 == 4 * 16
        assert float(nll0 + nll1) == pytest.approx(float(whole), rel=1e-5)
        # Chunk 3 after chunk 1 (as after a resume) starts from zeros.
        _, _, nll3 = task.loss(3)
        logits3, _ = task.model(inputs[:, 48:64])
        fresh = torch.nn.functional.cross_entropy(logits3.reshape(-1, logits3.size(-1)),
                                                  targets[:, 48:64].reshape(-1), reduction="sum")
        assert float(nll3) == pytest.approx(float(fresh), rel=1e-5)


def test_epochs_shift_the_streams_deterministically(tmp_path):
    task = make_task(tmp_path)
    task.batches(0, seed=5)
    a0 = task._streams[0].clone()
    task.end_epoch()
    task.batches(1, seed=5)
    a1 = task._streams[0].clone()
    task.end_epoch()
    task.batches(0, seed=5)
    assert torch.equal(task._streams[0], a0)  # what resume relies on
    assert a0.shape[0] == a1.shape[0] == 4
    # Every stream row is a contiguous slice of the text, whatever the offset.
    ids = torch.from_numpy(task.ids)
    for row in (a0[0], a1[1]):
        starts = [i for i in range(len(ids) - len(row)) if torch.equal(ids[i : i + 8], row[:8])]
        assert any(torch.equal(ids[s : s + len(row)], row) for s in starts)


def test_stream_nll_and_metrics(tmp_path):
    task = make_task(tmp_path)
    ids = task.valid_ids
    nll, n = stream_nll(task.model, ids, bptt=7, device=torch.device("cpu"), streams=3)
    assert n == 3 * ((len(ids) - 1) // 3)
    with torch.no_grad():  # the state runs on within each row: one whole-row pass per row
        x = torch.from_numpy(ids[:n].reshape(3, -1))
        y = torch.from_numpy(ids[1 : n + 1].reshape(3, -1))
        logits, _ = task.model(x)
        direct = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
    assert nll == pytest.approx(float(direct), rel=1e-5)
    metrics = lm_metrics(nll, n, chars_per_token=1.0)
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / math.log(2))
    assert lm_metrics(2.0, 1, chars_per_token=4.0)["bits_per_char"] == pytest.approx(0.5 / math.log(2))


def test_text_too_short_for_the_streams_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="train.batch_size"):
        make_task(tmp_path, batch_size=4000)


def test_shipped_charlm_recipe():
    recipe = load_recipe(ROOT / "recipes" / "charlm.yaml")
    assert recipe.task == "lm" and recipe.tokenizer.source["type"] == "char"
    assert recipe.train.max_time == 30 * 60 and recipe.train.label_smoothing == 0.0
    assert recipe.search.strategy == "sample"
