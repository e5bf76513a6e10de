import gzip
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from seqkit.contracts import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from seqkit.errors import DataError, ModelError
from seqkit.tokenizers.spm import SentencePieceTokenizer

MULTI30K = Path(__file__).resolve().parents[2] / "recipes" / "data" / "multi30k"
TEXTS = ["the cat sat on the mat", "a dog barks at the cat", "the mat is red", "dogs and cats"] * 5


def read_lines(name: str) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def small(tmp_path, **options) -> SentencePieceTokenizer:
    config = SentencePieceTokenizer.Config(vocab_size=options.pop("vocab_size", 30), **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small corpus may not reach vocab_size
        return SentencePieceTokenizer.train(TEXTS, config, tmp_path)


def test_special_ids_and_contract(tmp_path):
    tok = small(tmp_path)
    assert isinstance(tok, Tokenizer)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tok.token_to_id("</s>") == EOS_ID


def test_round_trip_and_decode_skips_specials(tmp_path):
    tok = small(tmp_path)
    ids = tok.encode("the dog sat on the red mat")
    assert BOS_ID not in ids and EOS_ID not in ids
    assert tok.decode([BOS_ID] + ids + [EOS_ID, PAD_ID]) == "the dog sat on the red mat"
    # identity normalization only collapses and strips spaces
    assert tok.normalize("  the   cat  ") == "the cat"
    assert tok.decode(tok.encode("  the   cat  ")) == "the cat"


def test_unknown_chars_are_unk_unless_byte_fallback(tmp_path):
    tok = small(tmp_path)
    ids = tok.encode("the zebra")
    assert UNK_ID in ids
    assert "\u2047" in tok.decode(ids)
    fallback = small(tmp_path, vocab_size=300, byte_fallback=True)
    assert UNK_ID not in fallback.encode("the zebra")
    assert fallback.decode(fallback.encode("the zebra ü")) == "the zebra ü"


def test_bpe_model_type(tmp_path):
    tok = small(tmp_path, model_type="bpe")
    assert tok.vocab_size == 30
    assert tok.decode(tok.encode("the cat and the dog")) == "the cat and the dog"


def test_vocab_too_large_warns_and_shrinks(tmp_path):
    with pytest.warns(UserWarning, match="supports only .* pieces; vocab_size=8000 was reduced"):
        tok = SentencePieceTokenizer.train(TEXTS, SentencePieceTokenizer.Config(), tmp_path)
    assert 4 < tok.vocab_size < 8000


def test_vocab_too_small_and_empty_corpus_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="vocab_size=8 .*required_chars"):
        SentencePieceTokenizer.train(TEXTS, SentencePieceTokenizer.Config(vocab_size=8), tmp_path)
    with pytest.raises(DataError, match="no non-empty training text"):
        SentencePieceTokenizer.train(["", "  "], SentencePieceTokenizer.Config(), tmp_path)


def test_config_is_strict():
    with pytest.raises(ValidationError):
        SentencePieceTokenizer.Config(model_type="wordpiece")
    with pytest.raises(ValidationError):
        SentencePieceTokenizer.Config(vocabsize=100)


def test_save_load_equal(tmp_path):
    tok = small(tmp_path)
    tok.save(tmp_path / "spm")
    assert sorted(p.name for p in (tmp_path / "spm").iterdir()) == ["spm.model", "tokenizer.json"]
    loaded = SentencePieceTokenizer.load(tmp_path / "spm")
    assert loaded == tok
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.encode("the cat sat") == tok.encode("the cat sat")
    (tmp_path / "spm" / "spm.model").unlink()
    with pytest.raises(ModelError, match="model file not found: .*spm.model"):
        SentencePieceTokenizer.load(tmp_path / "spm")


def test_multi30k_val_round_trips_exactly(tmp_path):
    """Trained on Multi30k train (de+en, 8000 pieces), every val line decodes back to itself (~3 s)."""
    train = read_lines("train.de.gz") + read_lines("train.en.gz")
    assert len(train) == 58000
    tok = SentencePieceTokenizer.train(train, SentencePieceTokenizer.Config(vocab_size=8000), tmp_path)
    assert tok.vocab_size == 8000
    val = read_lines("val.de.gz") + read_lines("val.en.gz")
    assert len(val) == 2028
    mismatches = [line for line in val if tok.decode(tok.encode(line)) != tok.normalize(line)]
    assert mismatches == []
    # identity normalization: Multi30k lines are already normalized, so the round trip is exact
    assert all(tok.normalize(line) == line for line in val)
