"""Streaming training corpora (data.streaming): Arrow cache, bounded shuffle buffer, exact resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from seqkit import streaming
from seqkit.batching import collate
from seqkit.data import STREAMING_KEYS, DataConfig, SplitFiles
from seqkit.errors import DataError, RecipeError
from seqkit.recipe import load_recipe
from seqkit.runs import train_run

STREAM = ["data.streaming=true"]


def losses(run_dir: Path) -> dict[int, float]:
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in events if e.get("split") == "train"}


def only_cache(run_dir: Path) -> Path:
    (cache,) = [p for p in (run_dir / "cache" / "streaming").iterdir() if not p.name.startswith(".")]
    return cache


def test_one_buffer_trains_exactly_like_in_memory(tiny_recipe, tmp_path):
    """A corpus within one shuffle buffer gives the in-memory batches, hence the same losses."""
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={tmp_path / 'mem'}"], resume=False)
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={tmp_path / 'stream'}", *STREAM], resume=False)
    assert losses(tmp_path / "stream") == losses(tmp_path / "mem")
    resolved = yaml.safe_load((tmp_path / "stream" / "recipe.yaml").read_text())
    assert resolved["data"]["streaming"] is True
    in_memory = yaml.safe_load((tmp_path / "mem" / "recipe.yaml").read_text())
    assert not set(in_memory["data"]) & set(STREAMING_KEYS)  # in-memory recipe.yaml is unchanged


def test_hub_format_streams_like_the_same_pairs_in_memory(tiny_recipe, tmp_path):
    """format: hub reads the split through datasets' streaming loader (a local dataset directory
    here: nothing is downloaded) and trains exactly as the same rows loaded in memory."""
    tree = yaml.safe_load(tiny_recipe.read_text())
    folder = tmp_path / "hubdata"
    folder.mkdir()
    for split, files in (("train", tree["data"]["train"]), ("validation", tree["data"]["valid"])):
        pairs = zip(*(Path(files[side]).read_text(encoding="utf-8").splitlines() for side in ("src", "tgt")))
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"document": s, "summary": t}) + "\n" for s, t in pairs))
    hub = ["data.format=hub", f"data.hub_name={folder}", "data.src_field=document", "data.tgt_field=summary",
           "data.train={hub_split: train}", "data.valid={hub_split: validation}", "data.test=null"]
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={tmp_path / 'mem'}", *hub], resume=False)
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={tmp_path / 'stream'}", *hub, *STREAM], resume=False)
    assert losses(tmp_path / "stream") == losses(tmp_path / "mem")
    meta = json.loads((only_cache(tmp_path / "stream") / streaming.META_FILE).read_text())
    assert meta["pairs"] == 400


def test_batches_respect_batch_tokens_and_cover_the_corpus(tiny_recipe, tmp_path):
    run = tmp_path / "run"
    train_run(tiny_recipe, ["train.max_steps=1", *STREAM], resume=False)
    stream = streaming.ArrowStream(only_cache(run), shuffle_buffer=37, batch_tokens=64)
    assert stream.size == 400 and len(stream.counts) == 11  # ceil(400 / 37) buffers
    epochs = [streaming.StreamBatches(stream, epoch, seed=3) for epoch in (0, 1)]
    for batches in epochs:
        seen = np.concatenate(list(batches))
        np.testing.assert_array_equal(np.sort(seen), np.arange(400))  # every example once per epoch
        for index in batches:
            assert len(set((index // 37).tolist())) == 1  # a batch never spans two buffers
            src, tgt = stream.rows(index)
            batch = collate(src, tgt, 0, 2, 3)
            assert len(batch) * max(batch.src.shape[1], batch.tgt_in.shape[1]) <= 64 or len(batch) == 1
    assert [b.tolist() for b in epochs[0]] != [b.tolist() for b in epochs[1]]
    again = streaming.StreamBatches(stream, 1, seed=3)  # a fresh object (a resumed run) replays the order
    assert [b.tolist() for b in again[5:9]] == [b.tolist() for b in epochs[1][5:9]]


def test_cache_is_reused_across_runs_and_on_resume(tiny_recipe, tmp_path, caplog):
    shared = tmp_path / "shared-cache"
    args = ["train.max_steps=3", f"data.stream_cache={shared}", *STREAM]
    before = streaming.TOKENIZE_PASSES[0]
    train_run(tiny_recipe, [*args, f"run_dir={tmp_path / 'a'}"], resume=False)
    assert streaming.TOKENIZE_PASSES[0] == before + 1
    with caplog.at_level(logging.INFO, logger="seqkit"):
        train_run(tiny_recipe, [*args, f"run_dir={tmp_path / 'b'}"], resume=False)
        train_run(tiny_recipe, ["train.max_steps=5", f"run_dir={tmp_path / 'b'}"], resume=True)
    assert streaming.TOKENIZE_PASSES[0] == before + 1  # neither the second run nor the resume tokenized
    assert caplog.text.count("reusing the tokenized training data") == 2
    assert len([p for p in shared.iterdir()]) == 1


def test_resume_across_buffers_and_an_epoch_end_continues_exactly(tiny_recipe, tmp_path):
    args = ["data.shuffle_buffer=50", *STREAM]  # 8 buffers; an epoch is 16 steps, so 20 crosses it
    train_run(tiny_recipe, ["train.max_steps=20", f"run_dir={tmp_path / 'straight'}", *args], resume=False)
    split = tmp_path / "split"
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={split}", *args], resume=False)
    train_run(tiny_recipe, ["train.max_steps=20", f"run_dir={split}"], resume=True)
    a, b = losses(tmp_path / "straight"), losses(split)
    assert set(a) == set(b) == {5, 10, 15, 20}
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5), step
    state = json.loads((split / "checkpoints" / "last.json").read_text())
    assert state["step"] == 20


def test_tokenizer_learns_from_the_bounded_sample(tiny_recipe, tmp_path):
    tiny = tmp_path / "data" / "few.src"
    tiny.write_text("a b\n" * 3 + "c d e f g h i j\n" * 397, encoding="utf-8")
    tgt = tmp_path / "data" / "few.tgt"
    tgt.write_text("b a\n" * 400, encoding="utf-8")
    over = [f"data.train.src={tiny}", f"data.train.tgt={tgt}", "data.tokenizer_sample=3", "train.max_steps=1",
            "tokenizer.source.type=word", *STREAM]
    train_run(tiny_recipe, over, resume=False)
    vocab = json.loads((tmp_path / "run" / "tokenizer" / "tgt" / "tokenizer.json").read_text())
    assert set(vocab["vocab"][4:]) == {"a", "b"}  # only the first 3 pairs were seen, not c..j


# -- bad input: the key, the file and the line ---------------------------------------------------------
def _pairs(tmp_path: Path, src: bytes, tgt: bytes, **extra) -> list[tuple[str, str]]:
    (tmp_path / "s").write_bytes(src)
    (tmp_path / "t").write_bytes(tgt)
    return list(streaming.read_pairs(DataConfig(train=SplitFiles(src="s", tgt="t"), streaming=True, **extra), tmp_path))


def test_reader_matches_the_in_memory_line_rules(tmp_path):
    assert _pairs(tmp_path, b"Ein Hund .  \nZwei\r\n", b"A dog .\nTwo") == [("Ein Hund .  ", "A dog ."), ("Zwei", "Two")]
    assert _pairs(tmp_path, b"Ein\n", b"A\n", lowercase=True) == [("ein", "a")]
    import gzip

    (tmp_path / "s.gz").write_bytes(gzip.compress(b"Zwei Katzen\n"))
    (tmp_path / "d.jsonl").write_text('{"x": {"de": "Hallo"}, "label": 1}\n', encoding="utf-8")
    (tmp_path / "t").write_bytes(b"Two cats\n")
    gz = DataConfig(train=SplitFiles(src="s.gz", tgt="t"), streaming=True)
    assert list(streaming.read_pairs(gz, tmp_path)) == [("Zwei Katzen", "Two cats")]
    jsonl = DataConfig(format="jsonl", train=SplitFiles(path="d.jsonl"), src_field="x.de", tgt_field="label", streaming=True)
    assert list(streaming.read_pairs(jsonl, tmp_path)) == [("Hallo", "1")]


@pytest.mark.parametrize("src, tgt, message", [
    (b"a\nb\n\xff\n", b"x\ny\nz\n", r"data\.train\.src: .*/s:3: not valid UTF-8 \(byte 0xff"),
    (b"a\nb\nc\n", b"x\ny\n", r"data\.train: parallel files are misaligned: .*/s has 3 lines, .*/t has 2 lines"),
    (b"a\nb\n", b"x\ny\nz\nw\n", r"misaligned: .*/s has 2 lines, .*/t has 4 lines"),
    (b"a\n \nc\n", b"x\ny\nz\n", r"data\.train\.src: .*/s:2: empty line"),
    (b"a\nb\nc\n", b"x\ny\rq\nz\n", r"data\.train\.tgt: .*/t:2: carriage return inside a line"),
    (b"", b"", r"data\.train\.src: corpus is empty"),
])
def test_bad_parallel_input_names_file_and_line(tmp_path, src, tgt, message):
    with pytest.raises(DataError, match=message):
        _pairs(tmp_path, src, tgt)


def test_bad_tsv_and_jsonl_name_file_and_line(tmp_path):
    (tmp_path / "d.tsv").write_text("a\tb\nonly one\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.train\.path: .*/d\.tsv:2: expected 2 tab-separated columns"):
        list(streaming.read_pairs(DataConfig(format="tsv", train=SplitFiles(path="d.tsv"), streaming=True), tmp_path))
    (tmp_path / "d.jsonl").write_text('{"src": "a", "tgt": "b"}\n{"src": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.train\.path: .*/d\.jsonl:2: no field 'tgt'"):
        list(streaming.read_pairs(DataConfig(format="jsonl", train=SplitFiles(path="d.jsonl"), streaming=True), tmp_path))


def test_bad_line_past_the_tokenizer_sample_fails_the_run_with_file_and_line(tiny_recipe, tmp_path):
    src = tmp_path / "data" / "split1.src"
    lines = src.read_bytes().split(b"\n")
    lines[299] = b"a \xc3( b"
    src.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"data\.train\.src: .*split1\.src:300: not valid UTF-8"):
        train_run(tiny_recipe, ["data.tokenizer_sample=100", *STREAM], resume=False)
    assert not [p for p in (tmp_path / "run" / "cache" / "streaming").iterdir()]  # no half-written cache


def test_streaming_refuses_what_it_does_not_implement(tiny_recipe, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"streaming reads formats parallel, tsv, jsonl, hub, not 'text'"):
        load_recipe(tiny_recipe, ["data.format=text", f"data.train={{path: {text}}}", "data.valid=null",
                                  "data.test=null", *STREAM])


def test_streaming_is_refused_under_torchrun(tiny_recipe, monkeypatch):
    import torch

    from seqkit import distributed
    from seqkit.errors import SeqkitError

    fake = distributed.DistContext(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
    monkeypatch.setattr(distributed, "setup", lambda device: fake)
    with pytest.raises(SeqkitError, match="data.streaming is not supported under torchrun"):
        train_run(tiny_recipe, STREAM, resume=False)
    assert not (tiny_recipe.parent / "run" / "checkpoints").exists()


def test_full_gigaword_recipe_trains_from_a_local_copy_of_the_hub_dataset(tmp_path):
    """recipes/summarize-full.yaml as shipped (hub columns, split slicing, streaming, copy_oov,
    coverage), its hub_name pointed at a local directory in the Hub dataset's layout and its
    model shrunk: the data path a user with the full corpus runs, without a download."""
    import gzip

    root = Path(__file__).resolve().parents[1] / "recipes"
    data = root / "data" / "gigaword"
    folder = tmp_path / "gigaword"
    folder.mkdir()
    for split, name, n in (("train", "train", 300), ("validation", "valid", 40), ("test", "test", 20)):
        src, tgt = (gzip.open(data / f"{name}.{side}.gz", "rt", encoding="utf-8").read().splitlines()[:n]
                    for side in ("src", "tgt"))
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"document": s, "summary": t}) + "\n"
                                                       for s, t in zip(src, tgt)), encoding="utf-8")
    small = ["model.encoder.hidden_size=8", "model.encoder.embedding_dim=16", "model.decoder.hidden_size=16",
             "model.decoder.embedding_dim=16", "train.amp=none", "train.device=cpu", "train.num_threads=1",
             "train.max_steps=3", "train.valid_every=3", "train.valid_metric_max_sentences=4", "train.progress=false",
             "data.tokenizer_sample=100", "tokenizer.source.min_freq=1", f"data.hub_name={folder}",
             f"run_dir={tmp_path / 'run'}"]
    train_run(root / "summarize-full.yaml", small, resume=False)
    meta = json.loads((only_cache(tmp_path / "run") / streaming.META_FILE).read_text())
    assert meta["pairs"] == 300
    assert (tmp_path / "run" / "checkpoints" / "best.json").is_file()
