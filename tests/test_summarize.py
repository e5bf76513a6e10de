"""Summarization: the shipped recipe, the lead baseline, and evaluate reporting both."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from seqkit import metrics as M
from seqkit.data import load_split
from seqkit.evaluate import evaluate_run
from seqkit.tasks.seq2seq import lead_baseline, lead_words
from seqkit.recipe import load_recipe
from seqkit.runs import train_run

ROOT = Path(__file__).resolve().parents[1]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def test_shipped_summarize_recipe():
    recipe = load_recipe(ROOT / "recipes" / "summarize.yaml")
    assert recipe.task == "summarization" and recipe.data.truncate_src
    search = recipe.search
    assert search.strategy == "beam" and search.no_repeat_ngram_size == 3
    assert 0 < search.min_len < search.max_len
    train = recipe.train  # checkpoints are chosen on the moving average, decoded by the test search
    assert train.ema and train.validate_ema and train.valid_strategy == "beam"
    assert train.valid_metric_max_sentences is None


@pytest.mark.parametrize("name", ["charlm.yaml", "summarize.yaml", "classify.yaml"])
def test_shipped_task_recipes_pass_recipe_check(name):
    out = subprocess.run([sys.executable, "-m", "seqkit.cli", "recipe", "check", str(ROOT / "recipes" / name)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["task"] in ("lm", "summarization", "classification")


def test_lead_baseline():
    assert lead_baseline(["a b  c d", "x", "  p q r"], 2) == ["a b", "x", "p q"]
    assert lead_words(["a b", "a b c d"]) == 3
    assert lead_words(["a"]) == 1


def test_lead_baseline_scores_on_the_gigaword_sample():
    recipe = load_recipe(ROOT / "recipes" / "summarize.yaml")
    valid = load_split(recipe.data, "valid", recipe.base_dir)
    n = lead_words(valid.tgt)
    assert 6 <= n <= 10  # headlines are ~8 words
    scores = M.rouge(lead_baseline(valid.src[:100], n), valid.tgt[:100])
    assert 10 < scores["rouge1"] < 60 and 0 < scores["rouge2"] < scores["rouge1"]


def toy_pairs(directory: Path, name: str, n: int, seed: int) -> tuple[Path, Path]:
    """Source: 5-9 random words; summary: its first 3 words (the lead baseline is perfect)."""
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 9))]
        src.append(" ".join(words))
        tgt.append(" ".join(words[:3]))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
    (directory / f"{name}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return directory / f"{name}.src", directory / f"{name}.tgt"


def test_summarization_run_evaluates_model_and_lead(tmp_path):
    torch.set_num_threads(1)
    splits = {name: toy_pairs(tmp_path / "data", name, n, seed)
              for name, n, seed in (("train", 300, 1), ("valid", 30, 2), ("test", 30, 3))}
    tree = {
        "task": "summarization", "run_dir": str(tmp_path / "run"), "seed": 4,
        "data": {"format": "parallel", "max_src_len": 6, "truncate_src": True,
                 **{name: {"src": str(s), "tgt": str(t)} for name, (s, t) in splits.items()}},
        "tokenizer": {"source": {"type": "word"}},
        "model": {"encoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 16, "num_layers": 1},
                  "decoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1,
                              "attention": {"type": "luong-general"}}},
        "train": {"batch_tokens": 300, "max_steps": 20, "valid_every": 20, "progress": False, "num_threads": 1,
                  "optimizer": {"lr": 0.01}},
        "search": {"beam_size": 2, "min_len": 2, "max_len": 6, "no_repeat_ngram_size": 2},
    }
    path = tmp_path / "summarize.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    metrics = train_run(path, [], resume=False)
    assert {"rouge1", "rouge2", "rougeL"} <= set(metrics)
    out = tmp_path / "hyps.txt"
    result = evaluate_run(tmp_path / "run", split="test", which="best", beam_size=None, strategy=None, output=out,
                          device="cpu")
    assert result["lead_words"] == 3
    assert result["lead_rouge1"] == pytest.approx(100.0) and result["lead_rouge2"] == pytest.approx(100.0)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert 0.0 <= result[key] <= 100.0
    hyps = out.read_text().splitlines()
    assert result["repeated_trigrams"] == M.repeated_ngrams(hyps, 3) == 0  # the bigram block rules them out
    assert len(hyps) == 30 and all(len(h.split()) <= 6 for h in hyps)
    for hyp in hyps:  # no_repeat_ngram_size=2: no bigram twice
        words = hyp.split()
        bigrams = list(zip(words, words[1:]))
        assert len(bigrams) == len(set(bigrams))


def test_holdout_split_keeps_line_order_and_decides_on_the_source_alone(tmp_path):
    import gzip

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import holdout_split

    src, tgt = tmp_path / "s.gz", tmp_path / "t.gz"
    for path, lines in ((src, ["china wins", "us loses", "beijing talks", "rain"]),
                        (tgt, ["a", "china b", "c", "d"])):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
    holdout_split.main([str(tmp_path / "out"), "--src", str(src), "--tgt", str(tgt)])
    read = lambda name: gzip.open(tmp_path / "out" / name, "rt", encoding="utf-8").read().splitlines()  # noqa: E731
    assert read("heldout.src.gz") == ["china wins", "beijing talks"] and read("heldout.tgt.gz") == ["a", "c"]
    assert read("train.src.gz") == ["us loses", "rain"] and read("train.tgt.gz") == ["china b", "d"]
    assert read("heldout-unseen.tgt.gz") == ["a", "c"]
