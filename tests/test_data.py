import gzip
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from seqkit.data import Corpus, DataConfig, SplitFiles, load_split
from seqkit.errors import DataError

RECIPE_DATA = Path(__file__).resolve().parents[1] / "recipes" / "data"


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf-cache"


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def parallel(src: str, tgt: str, **extra) -> DataConfig:
    return DataConfig(train=SplitFiles(src=src, tgt=tgt), **extra)


# -- formats -------------------------------------------------------------------------------
def test_parallel_plain_and_gz_relative_to_base_dir(tmp_path, cache):
    write(tmp_path / "a.de", "Ein Hund .  \nZwei Katzen\r\n")
    write(tmp_path / "a.en.gz", "A dog .\nTwo cats")
    corpus = load_split(parallel("a.de", "a.en.gz"), "train", tmp_path, cache_dir=cache)
    assert corpus == Corpus(["Ein Hund .  ", "Zwei Katzen"], ["A dog .", "Two cats"], None, "train")
    assert not cache.exists()  # local files are read once, by seqkit.corpus; datasets (and its cache) only for hub corpora


def test_lowercase(tmp_path, cache):
    write(tmp_path / "s", "Ein Hund\n")
    write(tmp_path / "t", "A Dog\n")
    corpus = load_split(parallel("s", "t", lowercase=True), "train", tmp_path, cache_dir=cache)
    assert (corpus.src, corpus.tgt) == (["ein hund"], ["a dog"])


def test_tsv_keeps_quotes_na_and_label_strings(tmp_path, cache):
    write(tmp_path / "d.tsv.gz", 'He said "hi\t1\nNA\t0\textra column\nnull  \t1\n')
    cfg = DataConfig(format="tsv", train=SplitFiles(path="d.tsv.gz"))
    corpus = load_split(cfg, "train", tmp_path, cache_dir=cache)
    assert corpus.src == ['He said "hi', "NA", "null  "]
    assert corpus.tgt == ["1", "0", "1"]


def test_jsonl_fields_nested_and_integer_labels(tmp_path, cache):
    rows = [{"translation": {"de": "Hallo", "en": "Hello"}, "label": 1}, {"translation": {"de": "Tschüss", "en": "Bye"}, "label": 0}]
    write(tmp_path / "d.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = DataConfig(format="jsonl", train=SplitFiles(path="d.jsonl"), src_field="translation.de", tgt_field="translation.en")
    corpus = load_split(cfg, "train", tmp_path, cache_dir=cache)
    assert (corpus.src, corpus.tgt) == (["Hallo", "Tschüss"], ["Hello", "Bye"])
    labels = load_split(cfg.model_copy(update={"tgt_field": "label"}), "train", tmp_path, cache_dir=cache)
    assert labels.tgt == ["1", "0"]


def test_text_split_by_valid_fraction(tmp_path, cache):
    text = "".join(f"line {i}\n" for i in range(100))
    write(tmp_path / "input.txt.gz", text)
    cfg = DataConfig(format="text", train=SplitFiles(path="input.txt.gz"), valid_fraction=0.25)
    train = load_split(cfg, "train", tmp_path, cache_dir=cache)
    valid = load_split(cfg, "valid", tmp_path, cache_dir=cache)
    cut = int(len(text) * 0.75)
    assert (train.src, train.tgt, train.text) == (None, None, text[:cut])
    assert valid.text == text[cut:]
    with pytest.raises(DataError, match="data.test: no test split is configured"):
        load_split(cfg, "test", tmp_path, cache_dir=cache)


def test_text_with_explicit_valid_file(tmp_path, cache):
    write(tmp_path / "train.txt", "to be\n\nor not\n")
    write(tmp_path / "valid.txt", "that is")
    cfg = DataConfig(format="text", train=SplitFiles(path="train.txt"), valid=SplitFiles(path="valid.txt"))
    assert load_split(cfg, "train", tmp_path, cache_dir=cache).text == "to be\n\nor not\n"
    assert load_split(cfg, "valid", tmp_path, cache_dir=cache).text == "that is"


def test_hub_format_with_local_dataset_directory(tmp_path, cache):
    folder = tmp_path / "mydata"
    folder.mkdir()
    write(folder / "train.jsonl", '{"de": "Hallo", "en": "Hello"}\n{"de": "Ja", "en": "Yes"}\n')
    write(folder / "validation.jsonl", '{"de": "Nein", "en": "No"}\n')
    cfg = DataConfig(
        format="hub", hub_name="mydata", src_field="de", tgt_field="en",
        train=SplitFiles(hub_split="train"), valid=SplitFiles(hub_split="validation"),
    )
    assert load_split(cfg, "train", tmp_path, cache_dir=cache).src == ["Hallo", "Ja"]
    assert load_split(cfg, "valid", tmp_path, cache_dir=cache).tgt == ["No"]
    with pytest.raises(DataError, match=r"data.src_field: dataset 'mydata' split 'train': no field 'fr' \(columns: de, en\)"):
        load_split(cfg.model_copy(update={"src_field": "fr"}), "train", tmp_path, cache_dir=cache)
    with pytest.raises(DataError, match=r"data.train.hub_split: could not load dataset 'mydata'.*split 'test'"):
        load_split(cfg.model_copy(update={"train": SplitFiles(hub_split="test")}), "train", tmp_path, cache_dir=cache)


def test_shipped_multi30k_loads(cache):
    cfg = DataConfig(
        train=SplitFiles(src="multi30k/train.de.gz", tgt="multi30k/train.en.gz"),
        valid=SplitFiles(src="multi30k/val.de.gz", tgt="multi30k/val.en.gz"),
        test=SplitFiles(src="multi30k/test_2016_flickr.de.gz", tgt="multi30k/test_2016_flickr.en.gz"),
    )
    sizes = {split: len(load_split(cfg, split, RECIPE_DATA, cache_dir=cache).src) for split in ("train", "valid", "test")}
    assert sizes == {"train": 29000, "valid": 1014, "test": 1000}


def test_shipped_gigaword_sentiment_and_tinyshakespeare_load(cache):
    giga = DataConfig(**{s: SplitFiles(src=f"gigaword/{s}.src.gz", tgt=f"gigaword/{s}.tgt.gz") for s in ("train", "valid", "test")})
    assert [len(load_split(giga, s, RECIPE_DATA, cache_dir=cache).tgt) for s in ("train", "valid", "test")] == [10000, 500, 500]
    senti = DataConfig(format="tsv", **{s: SplitFiles(path=f"sentiment/{s}.tsv.gz") for s in ("train", "valid", "test")})
    corpora = [load_split(senti, s, RECIPE_DATA, cache_dir=cache) for s in ("train", "valid", "test")]
    assert [len(c.src) for c in corpora] == [2400, 300, 300]
    assert all(set(c.tgt) == {"0", "1"} for c in corpora)
    shakespeare = DataConfig(format="text", train=SplitFiles(path="tinyshakespeare/input.txt.gz"))
    train = load_split(shakespeare, "train", RECIPE_DATA, cache_dir=cache).text
    valid = load_split(shakespeare, "valid", RECIPE_DATA, cache_dir=cache).text
    assert (len(train), len(valid)) == (1003854, 111540)  # nanoGPT's 90/10 cut of 1,115,394 chars
    assert train.startswith("First Citizen:\n")


# -- config validation -----------------------------------------------------------------------
def test_config_checks_keys_against_format():
    with pytest.raises(ValidationError, match="train.tgt is required with format 'parallel'"):
        DataConfig(train=SplitFiles(src="a"))
    with pytest.raises(ValidationError, match=r"train.path is required with format 'tsv'; train.src is not used"):
        DataConfig(format="tsv", train=SplitFiles(src="a"))
    with pytest.raises(ValidationError, match="hub_name is required"):
        DataConfig(format="hub", train=SplitFiles(hub_split="train"))
    with pytest.raises(ValidationError, match="only used with format 'hub'"):
        DataConfig(train=SplitFiles(src="a", tgt="b"), hub_name="wmt16")
    for bad in ({"valid_fraction": 1.0}, {"valid_fraction": 0}, {"max_src_len": 0}, {"formt": "tsv"}, {"format": "csv"}):
        with pytest.raises(ValidationError):
            DataConfig(train=SplitFiles(src="a", tgt="b"), **bad)


# -- errors name the key, the file and the line --------------------------------------------
def test_missing_file(tmp_path, cache):
    write(tmp_path / "s", "a\n")
    with pytest.raises(DataError, match=rf"^data.train.tgt: file not found: {tmp_path}/nope.en$"):
        load_split(parallel("s", "nope.en"), "train", tmp_path, cache_dir=cache)


def test_invalid_utf8_names_file_and_line(tmp_path, cache):
    write(tmp_path / "s.gz", b"fine\nalso fine\nbad \xff byte\n")
    write(tmp_path / "t", "a\nb\nc\n")
    with pytest.raises(DataError, match=rf"data.train.src: {tmp_path}/s.gz:3: not valid UTF-8 \(byte 0xff"):
        load_split(parallel("s.gz", "t"), "train", tmp_path, cache_dir=cache)


def test_empty_line_names_file_and_line(tmp_path, cache):
    write(tmp_path / "s", "a\nb\nc\n")
    write(tmp_path / "t", "a\n  \nc\n")
    with pytest.raises(DataError, match=rf"data.train.tgt: {tmp_path}/t:2: empty line"):
        load_split(parallel("s", "t"), "train", tmp_path, cache_dir=cache)


def test_misaligned_files_name_both_counts(tmp_path, cache):
    write(tmp_path / "s", "a\nb\nc\n")
    write(tmp_path / "t", "a\nb\n")
    with pytest.raises(DataError, match=rf"{tmp_path}/s has 3 lines, {tmp_path}/t has 2 lines"):
        load_split(parallel("s", "t"), "train", tmp_path, cache_dir=cache)


def test_empty_corpus(tmp_path, cache):
    write(tmp_path / "s", "")
    write(tmp_path / "t", "")
    with pytest.raises(DataError, match=rf"data.train.src: corpus is empty: {tmp_path}/s"):
        load_split(parallel("s", "t"), "train", tmp_path, cache_dir=cache)
    cfg = DataConfig(format="text", train=SplitFiles(path="s"))
    with pytest.raises(DataError, match="data.train.path: corpus is empty"):
        load_split(cfg, "train", tmp_path, cache_dir=cache)


def test_carriage_return_inside_a_line(tmp_path, cache):
    write(tmp_path / "s", "a\rb\nc\n")
    write(tmp_path / "t", "x\ny\n")
    with pytest.raises(DataError, match=rf"{tmp_path}/s:1: carriage return inside a line"):
        load_split(parallel("s", "t"), "train", tmp_path, cache_dir=cache)


def test_tsv_errors(tmp_path, cache):
    cfg = DataConfig(format="tsv", train=SplitFiles(path="d.tsv"))
    write(tmp_path / "d.tsv", "a\t1\nno tab here\n")
    with pytest.raises(DataError, match=rf"data.train.path: {tmp_path}/d.tsv:2: expected 2 tab-separated columns"):
        load_split(cfg, "train", tmp_path, cache_dir=cache)
    write(tmp_path / "d.tsv", "a\t1\n\t0\n")
    with pytest.raises(DataError, match=rf"{tmp_path}/d.tsv:2: empty column 0"):
        load_split(cfg, "train", tmp_path, cache_dir=cache)


def test_jsonl_errors(tmp_path, cache):
    cfg = DataConfig(format="jsonl", train=SplitFiles(path="d.jsonl"))
    cases = [
        ('{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": \n', r":2: invalid JSON"),
        ('{"src": "a", "tgt": "b"}\n{"src": "a", "tag": "b"}\n', r":2: no field 'tgt' \(keys: src, tag\)"),
        ('{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": 1}\n', r":2: 'tgt' is int here but str on earlier lines"),
        ('{"src": "a", "tgt": [1]}\n', r":1: 'tgt' must be a string or an integer, got list"),
        ('{"src": "", "tgt": "b"}\n', r":1: empty 'src'"),
    ]
    for content, message in cases:
        write(tmp_path / "d.jsonl", content)
        with pytest.raises(DataError, match=rf"data.train.path: {tmp_path}/d.jsonl{message}"):
            load_split(cfg, "train", tmp_path, cache_dir=cache)


def test_unknown_or_unconfigured_split(tmp_path, cache):
    cfg = parallel("s", "t")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_split(cfg, "dev", tmp_path, cache_dir=cache)
    with pytest.raises(DataError, match="data.valid: no valid split is configured"):
        load_split(cfg, "valid", tmp_path, cache_dir=cache)


def test_local_files_are_read_without_datasets(tmp_path, monkeypatch):
    """Local corpora are read once by seqkit.corpus (the reader streaming uses too); datasets
    serves hub corpora only."""
    import seqkit.data as data

    monkeypatch.setattr(data, "_datasets", lambda: pytest.fail("datasets used for a local file"))
    write(tmp_path / "a.tsv", "ein hund\ta dog\nzwei\ttwo\n")
    write(tmp_path / "a.jsonl", '{"src": "ein", "tgt": 1}\n{"src": "zwei", "tgt": 2}\n')
    write(tmp_path / "a.txt", "to be\r\nor not\n")
    tsv = load_split(DataConfig(format="tsv", train={"path": "a.tsv"}), "train", tmp_path)
    jsonl = load_split(DataConfig(format="jsonl", train={"path": "a.jsonl"}), "train", tmp_path)
    text = load_split(DataConfig(format="text", train={"path": "a.txt"}, valid={"path": "a.txt"}), "train", tmp_path)
    assert (tsv.src, tsv.tgt) == (["ein hund", "zwei"], ["a dog", "two"])
    assert (jsonl.src, jsonl.tgt) == (["ein", "zwei"], ["1", "2"])
    assert text.text == "to be\nor not\n"  # universal newlines, as datasets' text loader read it
