from pathlib import Path

import pytest
from pydantic import ValidationError

from seqkit.contracts import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from seqkit.errors import ModelError
from seqkit.tokenizers.char import CharTokenizer

TEXTS = ["hello world", "Hallo Welt!\nzweite Zeile", "aaa"]


def train(tmp_path: Path, **options) -> CharTokenizer:
    return CharTokenizer.train(TEXTS, CharTokenizer.Config(**options), tmp_path)


def test_contract_and_special_ids(tmp_path):
    tok = train(tmp_path)
    assert isinstance(tok, Tokenizer)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    # vocabulary: 4 specials + every distinct character
    assert tok.vocab_size == 4 + len(set("".join(TEXTS)))


def test_round_trip_including_newlines(tmp_path):
    tok = train(tmp_path)
    for text in TEXTS + ["world hello\n", " "]:
        ids = tok.encode(text)
        assert len(ids) == len(text)
        assert UNK_ID not in ids
        assert tok.decode(ids) == text


def test_most_frequent_first_and_ties_by_char(tmp_path):
    tok = train(tmp_path)
    assert tok.id_to_token(4) == "l"  # "l" occurs 7 times, more than any other char
    assert tok.token_to_id("a") < tok.token_to_id("z")


def test_unknown_chars_map_to_unk_and_decode_as_mark(tmp_path):
    tok = train(tmp_path)
    ids = tok.encode("hé")
    assert ids == [tok.token_to_id("h"), UNK_ID]
    assert tok.decode(ids) == "h\u2047"
    assert tok.token_to_id("é") == UNK_ID


def test_decode_skips_pad_bos_eos(tmp_path):
    tok = train(tmp_path)
    ids = tok.encode("hello")
    assert tok.decode([BOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]) == "hello"


def test_min_freq_max_vocab_lowercase(tmp_path):
    tok = train(tmp_path, min_freq=3)
    assert {tok.id_to_token(i) for i in range(4, tok.vocab_size)} == {"l", "e", "a", "o", " "}  # seen >= 3 times
    assert train(tmp_path, max_vocab=6).vocab_size == 6
    tok = train(tmp_path, lowercase=True)
    assert tok.token_to_id("H") == UNK_ID
    assert tok.decode(tok.encode("HALLO")) == "hallo"


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        CharTokenizer.Config(min_frq=2)
    with pytest.raises(ValidationError):
        CharTokenizer.Config(min_freq=0)
    with pytest.raises(ValidationError):
        CharTokenizer.Config(max_vocab=4)  # no room beyond the specials


def test_save_load_equal(tmp_path):
    tok = train(tmp_path, lowercase=True)
    tok.save(tmp_path / "tok")
    loaded = CharTokenizer.load(tmp_path / "tok")
    assert loaded == tok
    assert loaded.config.lowercase is True
    assert loaded.encode("Hallo Welt") == tok.encode("Hallo Welt")
    assert (tmp_path / "tok" / "tokenizer.json").read_text(encoding="utf-8").count('"type": "char"') == 1


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ModelError, match="tokenizer file not found: .*missing"):
        CharTokenizer.load(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="bad.*tokenizer.json"):
        CharTokenizer.load(bad)
    (bad / "tokenizer.json").write_text('{"type": "word", "config": {}, "vocab": []}', encoding="utf-8")
    with pytest.raises(ModelError, match="type is 'word', expected 'char'"):
        CharTokenizer.load(bad)
