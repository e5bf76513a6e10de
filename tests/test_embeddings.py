"""model.pretrained_embeddings: rows initialized from a small word2vec/GloVe text file written
here (no download), coverage logged, freezing, sentencepiece pieces, and one error line naming
the key for each bad file."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from seqkit.embeddings import apply_pretrained
from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe
from seqkit.runs import load_run, train_run
from seqkit.tokenizers.spm import SentencePieceTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

WORDS = "a b c d e".split()  # 5 of the tiny corpus' 10 words (conftest.VOCAB)


def write_vectors(path, words, dim, *, header=False, seed=0):
    rng = np.random.default_rng(seed)
    vectors = {w: rng.normal(size=dim).astype(np.float32).round(4) for w in words}
    lines = ([f"{len(words)} {dim}"] if header else []) + [f"{w} " + " ".join(f"{x:.4f}" for x in v)
                                                             for w, v in vectors.items()]
    path.write_text("\n".join(lines + ["zzz " + " ".join(["0.5"] * dim)]) + "\n", encoding="utf-8")
    return vectors


def test_word_recipe_reports_coverage_freezes_and_trains(tiny_recipe, caplog):
    vectors = write_vectors(tiny_recipe.parent / "vectors.txt", WORDS, 16, header=True)
    overrides = ["train.max_steps=20", "model.pretrained_embeddings.source.path=vectors.txt",
                 "model.pretrained_embeddings.source.freeze=true"]
    with caplog.at_level(logging.INFO, logger="seqkit"):
        metrics = train_run(tiny_recipe, overrides, resume=False)
    assert "model.pretrained_embeddings.source: 5 of 10 vocabulary entries (50.0%) found in" in caplog.text
    losses = [json_loss for json_loss in _train_losses(tiny_recipe.parent / "run")]
    assert metrics["step"] == 20 and losses[-1] < losses[0]  # it trains
    run = load_run(tiny_recipe.parent / "run")
    weight = run.model.encoder.embedding.weight.detach().numpy()
    for word, vector in vectors.items():  # frozen: still the file's vectors after 20 steps
        np.testing.assert_array_equal(weight[run.src_tok.token_to_id(word)], vector)
    recipe = yaml.safe_load((tiny_recipe.parent / "run" / "recipe.yaml").read_text())
    assert recipe["model"]["pretrained_embeddings"]["source"]["path"] == str((tiny_recipe.parent / "vectors.txt").resolve())


def _train_losses(run_dir):
    import json

    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e.get("split") == "train"]


def _model_and_vocab(tiny_recipe, overrides):
    from seqkit.runs import build_task

    recipe = load_recipe(tiny_recipe, overrides)
    torch.manual_seed(0)
    return recipe, build_task(recipe, tiny_recipe.parent / "run", False, torch.device("cpu"))


def test_unfrozen_target_rows_start_at_the_vectors_and_the_rest_stay_random(tiny_recipe):
    vectors = write_vectors(tiny_recipe.parent / "glove.txt", WORDS, 16)  # GloVe: no header line
    plain_recipe, plain = _model_and_vocab(tiny_recipe, [])
    recipe, task = _model_and_vocab(tiny_recipe, ["model.pretrained_embeddings.target.path=glove.txt"])
    got, before = task.model.decoder.embedding.weight, plain.model.decoder.embedding.weight
    assert got.requires_grad
    tok = task.tgt_tok
    for word, vector in vectors.items():
        np.testing.assert_array_equal(got[tok.token_to_id(word)].detach().numpy(), vector)
    untouched = [tok.token_to_id(w) for w in "f g h".split()] + [tok.pad_id, tok.unk_id]
    torch.testing.assert_close(got[untouched], before[untouched])
    torch.testing.assert_close(task.model.encoder.embedding.weight, plain.model.encoder.embedding.weight)


def test_sentencepiece_pieces_match_words_without_the_boundary_mark(tmp_path, caplog):
    texts = ["the quick brown fox jumps over the lazy dog", "a man rides a bike in the park"] * 40
    tok = SentencePieceTokenizer.train(texts, SentencePieceTokenizer.Config(vocab_size=33, num_threads=1), tmp_path)
    pieces = {tok.id_to_token(i): i for i in range(tok.vocab_size)}
    word_piece = next(p for p in pieces if p.startswith("\u2581") and len(p) > 2)
    inner = next(p for p in pieces if not p.startswith("\u2581") and p.isalpha() and p not in ("<unk>",))
    vectors = write_vectors(tmp_path / "vec.txt", [word_piece[1:], inner], 4)
    model = torch.nn.Module()
    model.decoder = torch.nn.Module()
    model.decoder.embedding = torch.nn.Embedding(tok.vocab_size, 4)
    recipe = load_recipe_tree(tmp_path, {"target": {"path": "vec.txt"}})
    with caplog.at_level(logging.INFO, logger="seqkit"):
        apply_pretrained(recipe, model, None, tok, initialize=True)
    weight = model.decoder.embedding.weight.detach().numpy()
    np.testing.assert_array_equal(weight[pieces[word_piece]], vectors[word_piece[1:]])
    np.testing.assert_array_equal(weight[pieces[inner]], vectors[inner])
    assert f"model.pretrained_embeddings.target: 2 of {tok.vocab_size - 4} vocabulary entries" in caplog.text


def load_recipe_tree(root, pretrained):
    from conftest import tiny_recipe_tree

    tree = tiny_recipe_tree(root / "data", root / "run")
    tree["model"]["pretrained_embeddings"] = pretrained
    (root / "r.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    return load_recipe(root / "r.yaml")


@pytest.mark.parametrize("content, message", [
    ("3 50\na " + " ".join(["0.1"] * 50), "holds 50-dimensional vectors (its header); the embedding_dim is 16"),
    ("a " + " ".join(["0.1"] * 5), "line 1 holds a 5-dimensional vector; the embedding_dim is 16"),
    ("a " + " ".join(["x"] * 16), "line 1: not a vector of numbers after the token"),
    ("a " + " ".join(["nan"] * 16), "line 1: the vector holds NaN or infinity"),
    (b"\xff\xfe a 0.1", "is not a UTF-8 text (or gzip) embedding file"),
    (None, "cannot read"),
])
def test_bad_files_are_one_error_naming_the_key(tiny_recipe, content, message):
    path = tiny_recipe.parent / "bad.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content + "\n", encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        train_run(tiny_recipe, ["train.max_steps=1", "model.pretrained_embeddings.source.path=bad.txt"], resume=False)
    text = str(info.value)
    assert text.startswith("model.pretrained_embeddings.source: ") and message in text and "\n" not in text


def test_cli_prints_one_error_line_for_a_wrong_dimension(tiny_recipe):
    write_vectors(tiny_recipe.parent / "v50.txt", WORDS, 50)
    proc = subprocess.run([sys.executable, "-m", "seqkit.cli", "train", str(tiny_recipe), "--set",
                           f"model.pretrained_embeddings.target.path={tiny_recipe.parent / 'v50.txt'}"],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: model.pretrained_embeddings.target: ") and "50-dimensional" in errors[0]


def test_recipe_keys_are_checked_at_load(tiny_recipe):
    with pytest.raises(RecipeError, match=r"model.pretrained_embeddings.source.frezee: unknown key"):
        load_recipe(tiny_recipe, ["model.pretrained_embeddings.source.path=v.txt",
                                  "model.pretrained_embeddings.source.frezee=true"])
    with pytest.raises(RecipeError, match=r"model.pretrained_embeddings.target.path: String should have at least 1"):
        load_recipe(tiny_recipe, ["model.pretrained_embeddings.target.path="])
