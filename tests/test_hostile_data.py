"""Issue 22, items 10 and 12 for corpora: corrupt gz bodies, hostile JSONL lines and byte-order
marks give one DataError naming file and line (or are read as text), never a traceback; plus a
fuzz of corpus files, in memory and streamed."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqkit.data import DataConfig, load_split
from seqkit.errors import DataError
from seqkit.streaming import read_pairs

EXAMPLES = int(os.environ.get("SEQKIT_FUZZ_EXAMPLES", "25"))


def corrupt_gz(text: bytes) -> bytes:
    """A gzip file with a valid header and a damaged deflate body."""
    data = bytearray(gzip.compress(text))
    for i in range(12, len(data) - 8):
        data[i] ^= 0x5A
    return bytes(data)


def _pair(tmp: Path, src: bytes, tgt: bytes, suffix: str = "") -> DataConfig:
    (tmp / f"a.src{suffix}").write_bytes(src)
    (tmp / f"a.tgt{suffix}").write_bytes(tgt)
    return DataConfig(train={"src": f"a.src{suffix}", "tgt": f"a.tgt{suffix}"})


def _jsonl(tmp: Path, line: str) -> DataConfig:
    (tmp / "a.jsonl").write_text('{"src": "a", "tgt": "b"}\n' + line + "\n", encoding="utf-8")
    return DataConfig(format="jsonl", train={"path": "a.jsonl"})


@pytest.mark.parametrize("streaming", [False, True])
def test_corrupt_gz_body(tmp_path, streaming):
    body = b"".join(b"line %d with words\n" % i for i in range(2000))
    cfg = _pair(tmp_path, corrupt_gz(body), gzip.compress(body), ".gz")
    with pytest.raises(DataError) as info:
        list(read_pairs(cfg, tmp_path)) if streaming else load_split(cfg, "train", tmp_path, cache_dir=tmp_path / "c")
    assert "a.src.gz" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("line,expect", [
    ('{"src": ' + "[" * 100_000 + "]" * 100_000 + ', "tgt": "b"}', "nested too deeply"),
    ('{"src": "a", "tgt": "b", "n": ' + "9" * 5000 + "}", "invalid JSON"),
])
@pytest.mark.parametrize("streaming", [False, True])
def test_hostile_jsonl_line(tmp_path, line, expect, streaming):
    cfg = _jsonl(tmp_path, line)
    with pytest.raises(DataError, match=expect) as info:
        list(read_pairs(cfg, tmp_path)) if streaming else load_split(cfg, "train", tmp_path, cache_dir=tmp_path / "c")
    assert "a.jsonl:2" in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize("streaming", [False, True])
def test_byte_order_mark_is_not_text(tmp_path, streaming):
    cfg = _pair(tmp_path, "\ufeffTwo dogs\nA cat\n".encode(), "\ufeffZwei Hunde\nEine Katze\n".encode())
    if streaming:
        pairs = list(read_pairs(cfg, tmp_path))
        src, tgt = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        corpus = load_split(cfg, "train", tmp_path, cache_dir=tmp_path / "c")
        src, tgt = corpus.src, corpus.tgt
    assert src[0] == "Two dogs" and tgt[0] == "Zwei Hunde"


def test_byte_order_mark_never_reaches_the_vocabulary(tmp_path):
    from seqkit.tokenizers import TokenizerSection, build_tokenizers

    cfg = _pair(tmp_path, "\ufeffTwo dogs\nA cat\n".encode(), "\ufeffZwei Hunde\nEine Katze\n".encode())
    corpus = load_split(cfg, "train", tmp_path, cache_dir=tmp_path / "c")
    src, _ = build_tokenizers(TokenizerSection(source={"type": "word"}), corpus.src, corpus.tgt, tmp_path / "w")
    assert src.token_to_id("Two") != src.unk_id and src.token_to_id("\ufeffTwo") == src.unk_id


# -- fuzz: arbitrary bytes as corpus files -------------------------------------------------------
line_bytes = st.one_of(st.binary(max_size=30), st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
                       st.sampled_from([b"", b"\r", b"\xef\xbb\xbf", b"\x00", b"\xff\xfe", b"a\rb", b"\t\t"]))
corpus_bytes = st.lists(line_bytes, min_size=0, max_size=6).map(lambda ls: b"\n".join(ls))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(src=corpus_bytes, tgt=corpus_bytes, gz=st.booleans(), streaming=st.booleans())
def test_fuzz_parallel_files(tmp_path_factory, src, tgt, gz, streaming):
    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = _pair(tmp, gzip.compress(src) if gz else src, gzip.compress(tgt) if gz else tgt, ".gz" if gz else "")
    try:
        if streaming:
            pairs = list(read_pairs(cfg, tmp))
        else:
            corpus = load_split(cfg, "train", tmp, cache_dir=tmp / "c")
            pairs = list(zip(corpus.src, corpus.tgt))
    except DataError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    # Only a mark at the very start of a file is a byte-order mark; U+FEFF later is text.
    assert pairs and all(isinstance(s, str) for s, _ in pairs) and not pairs[0][0].startswith("\ufeff")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(st.text(max_size=20), st.dictionaries(st.sampled_from(["src", "tgt", "x"]),
                                                                          st.one_of(st.text(max_size=6), st.integers(),
                                                                                    st.none(), st.lists(st.integers(), max_size=2)),
                                                                          max_size=3).map(json.dumps)),
                        min_size=1, max_size=5))
def test_fuzz_jsonl(tmp_path_factory, records):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "a.jsonl").write_text("\n".join(records) + "\n", encoding="utf-8", errors="surrogatepass")
    cfg = DataConfig(format="jsonl", train={"path": "a.jsonl"})
    try:
        load_split(cfg, "train", tmp, cache_dir=tmp / "c")
    except DataError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600
