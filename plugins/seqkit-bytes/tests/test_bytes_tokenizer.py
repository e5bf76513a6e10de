"""The bytes tokenizer: seqkit's contract check, exact round trips, merges, files, discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqkit.errors import ModelError
from seqkit.registry import default_registry
from seqkit.testing import check_tokenizer
from seqkit.tokenizers import load_tokenizer
from seqkit_bytes.bpe import FIRST_MERGE_ID, learn_merges, split_chunks
from seqkit_bytes.tokenizer import ByteTokenizer, ByteTokenizerConfig

TEXTS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "Grüße aus Köln, 12.5 Grad!",
    "日本語のテキスト and emoji 🙂",
    "tabs\tand  double  spaces \n",
    "",
]
CORPUS = TEXTS * 3  # every pair of bytes in it occurs at least 3 times


def train(merges: int = 0, min_frequency: int = 2, texts=CORPUS) -> ByteTokenizer:
    return ByteTokenizer.train(texts, ByteTokenizerConfig(merges=merges, min_frequency=min_frequency), Path("."))


@pytest.mark.parametrize("merges", [0, 40])
def test_contract_checks_pass(merges):
    tok = check_tokenizer(ByteTokenizer, CORPUS, {"merges": merges})
    assert tok.vocab_size == FIRST_MERGE_ID + len(tok._merges)


def test_plain_bytes_layout():
    tok = train()
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 260
    assert tok.encode("A") == [ord("A") + 4]
    assert tok.encode("é") == [0xC3 + 4, 0xA9 + 4]  # two UTF-8 bytes
    assert tok.encode("") == []


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_is_exact_for_any_text(text):
    tok = _merged()
    assert tok.decode(tok.encode(text)) == text.encode("utf-8", errors="replace").decode("utf-8")
    assert "".join(split_chunks(text)) == text


_MERGED: list[ByteTokenizer] = []


def _merged() -> ByteTokenizer:
    if not _MERGED:
        _MERGED.append(train(merges=60))
    return _MERGED[0]


def test_merges_shorten_frequent_words_and_follow_frequency():
    tok = train(merges=60)
    plain = train()
    assert len(tok.encode("the cat sat on the mat")) < len(plain.encode("the cat sat on the mat")) / 2
    # " the"/"the" and "at" are the most frequent pieces of the training text.
    first = tok.id_to_token(FIRST_MERGE_ID)
    assert first in ("th", "at", " t", "he")
    assert tok.encode(" the") == [tok.encode(" the")[0]] and tok.id_to_token(tok.encode(" the")[0]) == " the"


def test_merges_never_cross_chunk_boundaries():
    tok = train(merges=80)
    chunks = {chunk.encode("utf-8") for text in CORPUS for chunk in split_chunks(text)}
    assert tok.vocab_size == FIRST_MERGE_ID + 80
    for i in range(FIRST_MERGE_ID, tok.vocab_size):
        piece = tok._bytes[i]
        assert any(piece in chunk for chunk in chunks), piece


def test_min_frequency_stops_merging_and_warns():
    with pytest.warns(UserWarning, match="only .* of merges=500"):
        tok = train(merges=500, min_frequency=3)
    assert FIRST_MERGE_ID < tok.vocab_size < FIRST_MERGE_ID + 500


def test_learning_is_deterministic_and_ties_go_to_the_smaller_pair():
    assert learn_merges(["ab ab ba"], 5, 1) == learn_merges(["ab ab ba"], 5, 1)
    # "ab" twice vs "ba" once; then the chunks "ab", " ab", " ba".
    merges = learn_merges(["ab ab ba"], 1, 1)
    assert merges == [(ord("a") + 4, ord("b") + 4)]


def test_decode_skips_specials_and_marks_unknown_and_broken_bytes():
    tok = train()
    ids = tok.encode("hé")
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == "hé"
    assert tok.decode([tok.unk_id, 10_000]) == "\u2047\u2047"
    assert tok.decode(ids[:-1]) == "h\ufffd"  # half of é


def test_save_load_round_trip_and_registry_loading(tmp_path):
    tok = train(merges=30)
    tok.save(tmp_path)
    payload = json.loads((tmp_path / "tokenizer.json").read_text())
    assert payload["type"] == "bytes" and payload["config"] == {"merges": 30, "min_frequency": 2}
    assert ByteTokenizer.load(tmp_path) == tok
    assert load_tokenizer(tmp_path) == tok  # resolved through the entry point


@pytest.mark.parametrize("merges,needle", [
    ("nope", "'merges' must be a list"),
    ([[4, 5], [260, 262]], r"merges\[1\] = \[260, 262\]: expected two ids in 4..260"),
    ([[1, 5]], r"merges\[0\]"),
])
def test_load_rejects_bad_merges_naming_the_file(tmp_path, merges, needle):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"type": "bytes", "config": {}, "merges": merges}))
    with pytest.raises(ModelError, match=needle) as err:
        ByteTokenizer.load(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(err.value)


def test_registered_under_bytes_in_its_own_distribution():
    info = default_registry().available("tokenizer")["bytes"]
    assert info.distribution == "seqkit-bytes" and info.value == "seqkit_bytes.tokenizer:ByteTokenizer"
