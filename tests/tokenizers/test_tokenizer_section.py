import json

import pytest
from pydantic import ValidationError

from seqkit.errors import DataError, ModelError, PluginError
from seqkit.tokenizers import TokenizerSection, build_tokenizers, load_tokenizer, load_tokenizers, save_tokenizers
from seqkit.tokenizers.char import CharTokenizer
from seqkit.tokenizers.spm import SentencePieceTokenizer
from seqkit.tokenizers.word import WordTokenizer

SRC = ["ein hund", "eine katze"]
TGT = ["a dog", "a cat"]


def test_section_defaults_and_validation():
    section = TokenizerSection()
    assert section.shared is True
    assert section.source == {"type": "sentencepiece"}
    assert section.target is None
    assert TokenizerSection().source is not section.source  # no shared mutable default
    with pytest.raises(ValidationError, match="target is only used with shared: false"):
        TokenizerSection(target={"type": "char"})
    with pytest.raises(ValidationError):
        TokenizerSection(sharde=False)


def test_shared_tokenizer_sees_both_sides(tmp_path):
    src, tgt = build_tokenizers(TokenizerSection(source={"type": "word"}), SRC, TGT, tmp_path)
    assert src is tgt
    assert isinstance(src, WordTokenizer)
    assert 1 not in src.encode("ein hund a cat")  # unk id absent: both languages in one vocab


def test_separate_tokenizers_default_target_to_source_spec(tmp_path):
    section = TokenizerSection(shared=False, source={"type": "word"})
    src, tgt = build_tokenizers(section, SRC, TGT, tmp_path)
    assert isinstance(tgt, WordTokenizer) and src is not tgt
    assert tgt.token_to_id("hund") == 1 and src.token_to_id("hund") != 1
    section = TokenizerSection(shared=False, source={"type": "word"}, target={"type": "char", "lowercase": True})
    src, tgt = build_tokenizers(section, SRC, TGT, tmp_path)
    assert isinstance(tgt, CharTokenizer) and tgt.config.lowercase


def test_language_model_gets_no_source(tmp_path):
    src, tgt = build_tokenizers(TokenizerSection(source={"type": "char"}), None, ["to be or not"], tmp_path)
    assert src is None
    assert isinstance(tgt, CharTokenizer)


def test_bad_specs_name_the_recipe_path(tmp_path):
    with pytest.raises(PluginError, match=r"tokenizer\.source\.type: unknown tokenizer 'chr'; did you mean 'char'"):
        build_tokenizers(TokenizerSection(source={"type": "chr"}), SRC, TGT, tmp_path)
    section = TokenizerSection(shared=False, source={"type": "word"}, target={"type": "char", "min_frq": 2})
    with pytest.raises(PluginError, match=r"tokenizer\.target\.min_frq: unknown key; did you mean 'min_freq'"):
        build_tokenizers(section, SRC, TGT, tmp_path)
    with pytest.raises(DataError, match=r"^tokenizer\.source: sentencepiece training failed"):
        build_tokenizers(TokenizerSection(source={"type": "sentencepiece", "vocab_size": 5}), SRC, TGT, tmp_path)


def test_save_and_load_round_trip(tmp_path):
    section = TokenizerSection(shared=False, source={"type": "word"}, target={"type": "sentencepiece", "vocab_size": 12})
    src, tgt = build_tokenizers(section, SRC, TGT * 5, tmp_path / "work")
    save_tokenizers(tmp_path / "tok", src, tgt)
    assert json.loads((tmp_path / "tok" / "src" / "tokenizer.json").read_text())["type"] == "word"
    assert json.loads((tmp_path / "tok" / "tgt" / "tokenizer.json").read_text())["type"] == "sentencepiece"
    src2, tgt2 = load_tokenizers(tmp_path / "tok")
    assert src2 == src and tgt2 == tgt
    assert isinstance(tgt2, SentencePieceTokenizer)


def test_save_and_load_language_model(tmp_path):
    _, tgt = build_tokenizers(TokenizerSection(source={"type": "char"}), None, ["abc"], tmp_path)
    save_tokenizers(tmp_path / "tok", None, tgt)
    assert not (tmp_path / "tok" / "src").exists()
    assert load_tokenizers(tmp_path / "tok") == (None, tgt)


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ModelError, match="tokenizer directory not found: .*nowhere"):
        load_tokenizers(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"tokenizer file not found: .*empty/tokenizer\.json"):
        load_tokenizer(tmp_path / "empty")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "tokenizer.json").write_text('{"type": "bytepair"}')
    with pytest.raises(ModelError, match=r"odd/tokenizer\.json: unknown tokenizer 'bytepair'"):
        load_tokenizer(odd)
