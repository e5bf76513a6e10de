"""The extended vocabulary (model.decoder.copy_oov, seqkit.oov), coverage and word dropout end to
end: the ids, training, the exported model decoding exactly as torch, recipe errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import tiny_recipe_tree
from seqkit import oov
from seqkit.errors import RecipeError
from seqkit.export import export_run
from seqkit.recipe import load_recipe
from seqkit.runs import load_run, train_run
from seqkit.runtime import load_model
from seqkit.tasks.seq2seq import translate_lines
from seqkit.tokenizers.word import WordTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def tok():
    return WordTokenizer.train(["a b c", "a b"], WordTokenizer.Config(), None)  # 4 specials + a b c: V = 7


def test_unknown_source_words_get_the_sentences_own_ids(tok):
    V = tok.vocab_size
    ids = tok.encode("a zz b zz yy") + [tok.eos_id]
    ext = oov.extend_source(tok, "a zz b zz yy", ids)
    a, b = tok.encode("a b")
    assert ext.ids == [a, V, b, V, V + 1, tok.eos_id] and ext.words == ["zz", "yy"]
    assert oov.extend_target(tok, "zz c qq yy", tok.encode("zz c qq yy"), ext) == [V, tok.encode("c")[0], tok.unk_id, V + 1]
    # a literal unk token is no word to copy
    assert oov.extend_source(tok, "<unk> a", tok.encode("<unk> a") + [3]).words == []


def test_oov_dropout_hides_known_words_in_source_and_target(tok):
    V = tok.vocab_size
    a, b, c = tok.encode("a b c")
    src = [a, V, b, a, c, tok.eos_id]  # one word already unknown: V
    tgt = [b, a, V, c]
    # a (first at position 0) and c (position 4) are drawn below the rate; b's draw (position 2)
    # is not, nor is a's second position (only a word's first position counts); eos never hides.
    draws = [0.05, 0.0, 0.9, 0.9, 0.01, 0.0]
    specials = (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id)
    got_src, got_tgt = oov.hide_words(src, tgt, V, draws, 0.1, specials)
    assert got_src == [V + 1, V, b, V + 1, V + 2, tok.eos_id]
    assert got_tgt == [b, V + 1, V, V + 2]
    assert oov.hide_words(src, tgt, V, [0.5] * 6, 0.1, specials) == (src, tgt)


def test_oov_dropout_is_seeded_and_changes_training(tmp_path):
    """The draws are seeded by the recipe seed and the batch's examples: the same recipe trains to
    the same weights twice, and to other weights without the dropout."""
    def weights(name: str, rate: float) -> dict:
        tree = yaml.safe_load(_recipe(tmp_path, max_steps=6, oov_dropout=rate).read_text())
        tree["run_dir"] = str(tmp_path / name)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
        train_run(tmp_path / f"{name}.yaml", [], resume=False)
        return load_run(tmp_path / name).model.state_dict()

    one, two, none = weights("one", 0.3), weights("two", 0.3), weights("none", 0.0)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not all(torch.equal(one[k], none[k]) for k in one)


def test_oov_rates_count_unknown_and_copyable_target_words(tok):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import oov_rates

    # sources: 6 tokens, 2 unknown (zz, yy); targets: 5 tokens, 3 unknown, 2 of them in their source
    got = oov_rates.rates(tok, ["a zz b", "yy c a"], ["zz qq", "b yy c"], max_src_len=10)
    assert got == {"pairs": 2, "source_unknown_pct": 33.33, "target_unknown_pct": 60.0, "target_copyable_pct": 40.0}
    # max_src_len cuts the source as training does: yy is then not there to copy
    assert oov_rates.rates(tok, ["a b yy"], ["yy"], max_src_len=3)["target_copyable_pct"] == 0.0


def test_decode_tokens_spells_extended_ids_and_replaces_unks(tok):
    V = tok.vocab_size
    a = tok.encode("a")[0]
    attention = torch.eye(4).numpy()  # step t attends to source position t
    got = oov.decode_tokens([V + 1, a, tok.unk_id, V + 5, tok.eos_id], tok, oov_words=["zz", "yy"],
                            attention=attention, src_words=["x", "y", "w"])
    assert got == "yy a w ⁇"  # V + 5: past the sentence's words
    assert oov.decode_tokens([V, tok.unk_id], tok, oov_words=["zz"]) == "zz ⁇"


def _recipe(tmp_path, **train):
    tree = tiny_recipe_tree(tmp_path / "data", tmp_path / "run")
    tree["tokenizer"]["source"] = {"type": "word", "max_vocab": 9}  # a..e known; f..j must be copied
    tree["model"]["decoder"].update(copy_source=True, copy_oov=True, coverage=True)
    tree["train"].update({"max_steps": 20, "valid_every": 20, "coverage_loss": 1.0, "word_dropout": 0.1, **train})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_train_export_and_runtime_decode_unknown_words_identically(tmp_path):
    recipe = _recipe(tmp_path)
    train_run(recipe, [], resume=False)
    run_dir = tmp_path / "run"
    run = load_run(run_dir)
    assert run.src_tok.vocab_size == 9 and run.model.oov_start == 9
    valid = [line for line in (tmp_path / "data" / "split2.src").read_text().splitlines()][:12]
    torch_out = translate_lines(run.model, run.src_tok, run.tgt_tok, run.recipe, valid, device=torch.device("cpu"))
    model_dir = export_run(run_dir, tmp_path / "model")
    config = json.loads((model_dir / "config.json").read_text())
    assert config["copy_oov"] is True and len(config["state"]) == 2  # (h,) + coverage
    exported = load_model(model_dir, threads=1)
    assert exported.translate(valid) == torch_out
    # With the gate shut the model can only copy: every output word is a source word, known or not.
    with torch.no_grad():
        run.model.decoder.copy.gate.bias.fill_(-1e4)
    line = "f g h i"  # all outside the 9-entry vocabulary
    out = translate_lines(run.model, run.src_tok, run.tgt_tok, run.recipe, [line], device=torch.device("cpu"))[0]
    assert out and set(out.split()) <= set(line.split())


@pytest.mark.parametrize("change,message", [
    ({"train": {"coverage_loss": 1.0}, "decoder": {"coverage": False}}, r"train\.coverage_loss: .*coverage: true"),
    ({"decoder": {"copy_source": False}}, r"model\.decoder\.copy_oov: .*copy_source: true"),
    ({"train": {"oov_dropout": 0.1}, "decoder": {"copy_oov": False}}, r"train\.oov_dropout: .*copy_oov: true"),
    ({"tokenizer": {"type": "sentencepiece", "vocab_size": 50}}, r"model\.decoder\.copy_oov: .*word or char"),
])
def test_recipe_errors_name_the_key(tmp_path, change, message):
    path = _recipe(tmp_path)
    tree = yaml.safe_load(path.read_text())
    tree["model"]["decoder"].update(change.get("decoder", {}))
    tree["train"].update(change.get("train", {}))
    if "tokenizer" in change:
        tree["tokenizer"]["source"] = change["tokenizer"]
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_streaming_cache_holds_the_extended_ids(tmp_path):
    from datasets import Dataset

    train_run(_recipe(tmp_path, max_steps=4), ["data.streaming=true"], resume=False)
    arrow = next((tmp_path / "run" / "cache" / "streaming").glob("*/train.arrow"))
    rows = Dataset.from_file(str(arrow))
    assert max(max(ids) for ids in rows["src"]) >= 9  # f..j: ids 9 + k
    assert max(max(ids) for ids in rows["tgt"]) >= 9  # reversed, so every target copies them
