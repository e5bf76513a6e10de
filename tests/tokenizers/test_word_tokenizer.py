import pytest
from pydantic import ValidationError

from seqkit.contracts import BOS_ID, EOS_ID, UNK_ID, Tokenizer
from seqkit.tokenizers.word import PUNCT_PATTERN, WordTokenizer

TEXTS = ["the cat sat on the mat", "The dog, the cat!", "a  dog   barks"]


def train(tmp_path, **options) -> WordTokenizer:
    return WordTokenizer.train(TEXTS, WordTokenizer.Config(**options), tmp_path)


def test_whitespace_round_trip(tmp_path):
    tok = train(tmp_path)
    assert isinstance(tok, Tokenizer)
    for text in TEXTS:
        ids = tok.encode(text)
        assert UNK_ID not in ids
        assert tok.decode(ids) == " ".join(text.split())
    assert tok.encode("  the\tcat \n") == tok.encode("the cat")


def test_vocab_order_and_specials(tmp_path):
    tok = train(tmp_path)
    assert [tok.id_to_token(i) for i in range(5)] == ["<pad>", "<unk>", "<s>", "</s>", "the"]
    assert tok.vocab_size == 4 + len({w for t in TEXTS for w in t.split()})


def test_unknown_words_are_unk(tmp_path):
    tok = train(tmp_path)
    ids = tok.encode("the zebra")
    assert ids == [tok.token_to_id("the"), UNK_ID]
    assert tok.decode([BOS_ID] + ids + [EOS_ID]) == "the \u2047"


def test_punctuation_pattern_and_lowercase(tmp_path):
    tok = train(tmp_path, pattern=PUNCT_PATTERN, lowercase=True)
    assert tok.decode(tok.encode("The dog, the cat!")) == "the dog , the cat !"
    assert tok.token_to_id("The") == UNK_ID  # lowercased at training time
    grouped = train(tmp_path, pattern=r"(\w)\w*")  # groups must not change what a token is
    assert grouped.decode(grouped.encode("the cat")) == "the cat"


def test_min_freq_and_max_vocab(tmp_path):
    tok = train(tmp_path, min_freq=2)
    assert {tok.id_to_token(i) for i in range(4, tok.vocab_size)} == {"the"}  # "cat!" != "cat"
    tok = train(tmp_path, min_freq=2, pattern=PUNCT_PATTERN)
    assert {tok.id_to_token(i) for i in range(4, tok.vocab_size)} == {"the", "cat", "dog"}
    assert train(tmp_path, max_vocab=5).vocab_size == 5


def test_config_validates_pattern():
    with pytest.raises(ValidationError, match="invalid regular expression"):
        WordTokenizer.Config(pattern="(")
    with pytest.raises(ValidationError, match="matches the empty string"):
        WordTokenizer.Config(pattern=r"\w*")
    with pytest.raises(ValidationError):
        WordTokenizer.Config(lower=True)


def test_save_load_equal(tmp_path):
    tok = train(tmp_path, pattern=PUNCT_PATTERN)
    tok.save(tmp_path / "w")
    loaded = WordTokenizer.load(tmp_path / "w")
    assert loaded == tok
    assert loaded.config.pattern == PUNCT_PATTERN
    assert loaded.encode("the dog, a cat") == tok.encode("the dog, a cat")
