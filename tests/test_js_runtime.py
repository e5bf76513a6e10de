"""The JavaScript runtime on onnxruntime-node (js/) against seqkit.runtime: the same token ids
for greedy and beam search over every decoder shape, the same tokenizers, and the manifest check
refusing a tampered model with one `error:` line naming the file."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from js_support import node_eval, node_results, node_translate, require_node
from test_export import CASES as EXPORT_CASES
from test_export import SRC_LINES, export_tiny

from seqkit.runtime import load_model
from seqkit.tokenizers import load_tokenizer
from seqkit.tokenizers.word import PUNCT_PATTERN, WordTokenizer

require_node()

ROOT = Path(__file__).resolve().parent.parent
MULTI30K = ROOT / "recipes" / "data" / "multi30k"
# Unknown words, an empty line, stray control characters and spaces, and a line over max_input_len.
LINES = [*SRC_LINES, "ein unbekanntes wort .", "", "  zwei\thunde \x01 spielen  ", " ".join(SRC_LINES) * 3]
# Every decoder shape export is tested with (tests/test_export.py), and a sentencepiece model.
CASES = {**EXPORT_CASES, "sentencepiece": {"enc": "gru", "dec": "gru", "attention": "luong-general",
                                           "tokenizer": "sentencepiece"}}
# (Python translator overrides, the same as seqkit-js options)
SEARCHES = [
    ({"strategy": "greedy"}, ["--strategy", "greedy"]),
    ({"strategy": "greedy", "min_len": 4, "batch_size": 3}, ["--strategy", "greedy", "--min-len", "4", "--batch-size", "3"]),
    ({"strategy": "beam", "beam_size": 5}, ["--strategy", "beam", "--beam-size", "5"]),
    ({"strategy": "beam", "beam_size": 4, "n_best": 3, "length_penalty": 0.6, "min_len": 3, "batch_size": 4},
     ["--strategy", "beam", "--beam-size", "4", "--n-best", "3", "--length-penalty", "0.6", "--min-len", "3",
      "--batch-size", "4"]),
    # n-gram blocking needs whole log-prob rows: the full-row path instead of the graph's top-k
    ({"strategy": "beam", "beam_size": 3, "no_repeat_ngram_size": 2}, ["--strategy", "beam", "--beam-size", "3",
                                                                      "--no-repeat-ngram-size", "2"]),
]


@pytest.fixture(scope="module", params=list(CASES))
def model_dir(request, tmp_path_factory) -> Path:
    search = {"max_len_offset": 5, "max_input_len": 40}
    return export_tiny(tmp_path_factory.mktemp(request.param), search=search, **CASES[request.param])[1]


@pytest.mark.parametrize("search", range(len(SEARCHES)), ids=[" ".join(s[1]) for s in SEARCHES])
def test_node_decodes_the_same_ids_as_the_python_runtime(model_dir, search):
    overrides, options = SEARCHES[search]
    want = load_model(model_dir, threads=1).translator(**overrides).translate(LINES)
    got = node_results(model_dir, LINES, *options)
    assert [g["tokens"] for g in got] == [w.tokens for w in want]
    assert [g["text"] for g in got] == [w.text for w in want]
    for g, w in zip(got, want):
        assert g["log_prob"] == pytest.approx(w.log_prob, abs=1e-4)
        assert g["score"] == pytest.approx(w.score, abs=1e-4)
        assert [c["text"] for c in g["n_best"]] == [c.text for c in w.n_best]
        assert g["warnings"] == w.warnings
    assert got[-1]["warnings"] == [f"line {len(LINES)}: source longer than 40 tokens (eos included); truncated"]
    assert got[len(SRC_LINES) + 1] == {"text": "", "tokens": [], "score": 0, "log_prob": 0,
                                       "n_best": [{"text": "", "score": 0, "log_prob": 0}], "warnings": []}


@pytest.fixture(scope="module")
def one_model(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("tamper"), enc="gru", dec="gru", attention="luong-general")[1]


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def _one_error(proc) -> str:
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 1 and proc.stdout == b""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


def test_a_modified_file_is_refused_naming_it(one_model, tmp_path):
    model = _copy(one_model, tmp_path)
    data = bytearray((model / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (model / "encoder.onnx").write_bytes(bytes(data))
    assert _one_error(node_translate(model, ["ein hund ."])) == (
        f"error: {model}/encoder.onnx: sha256 mismatch with manifest.json; the file is corrupt or was modified")


@pytest.mark.parametrize("change", ["missing", "extra", "no-manifest", "bad-config", "copy-oov"])
def test_other_damage_is_refused_naming_the_file(one_model, tmp_path, change):
    model = _copy(one_model, tmp_path)
    if change == "missing":
        (model / "tokenizer" / "tgt" / "tokenizer.json").unlink()
        want = f"{model}/tokenizer/tgt/tokenizer.json: listed in manifest.json but missing"
    elif change == "extra":
        (model / "tokenizer" / "notes.txt").write_text("added later")
        want = f"{model}/tokenizer/notes.txt: not listed in manifest.json (added after export?)"
    elif change == "no-manifest":
        (model / "manifest.json").unlink()
        want = f"{model}/manifest.json: missing; {model} is not an exported seqkit model (see `seqkit export`)"
    elif change == "copy-oov":  # model.decoder.copy_oov: an extended vocabulary the JS runtime does not implement
        config = json.loads((model / "config.json").read_text())
        config["copy_oov"] = True
        _rewrite(model, "config.json", json.dumps(config).encode())
        want = f"{model}/config.json: copy_oov: the model copies source words outside its vocabulary"
    else:  # a config whose sha256 is updated, but which names a language model
        config = json.loads((model / "config.json").read_text())
        config["model_kind"] = "lm"
        _rewrite(model, "config.json", json.dumps(config).encode())
        want = f"{model}/config.json: model_kind is \"lm\"; the JavaScript runtime translates seq2seq models"
    assert _one_error(node_translate(model, ["ein hund ."])).startswith(f"error: {want}")


def _rewrite(model: Path, name: str, data: bytes) -> None:
    """Replace a file and its sha256 in the manifest (a consistent, but wrong, model)."""
    from seqkit.runtime.format import sha256_file

    (model / name).write_bytes(data)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(model / name)
    (model / "manifest.json").write_text(json.dumps(manifest))


def test_bad_input_is_one_error_line(one_model, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ein hund .\n\xff\xfe\n")
    assert _one_error(node_translate(one_model, [], "-i", str(bad))) == f"error: {bad}: line 2 is not UTF-8 text"
    assert _one_error(node_translate(tmp_path / "nowhere", ["x"])) == f"error: {tmp_path / 'nowhere'}: no such model directory"
    assert _one_error(node_translate(one_model, ["x"], "--beam-size", "0")) == (
        "error: search option beam_size: must be an integer in 1..256")
    assert _one_error(node_translate(one_model, ["x"], "--strategy", "sample")) == (
        "error: search option strategy: must be 'greedy' or 'beam' (sampling is Python-only)")


def _multi30k(name: str, n: int) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as fh:
        return [line.rstrip("\n") for _, line in zip(range(n), fh)]


def _js_tokenize(tok_dir: Path, lines: list[str]) -> list[list[int]]:
    script = f"""
import fs from "node:fs";
import {{ loadTokenizer }} from "./src/tokenizers.js";
const dir = {json.dumps(str(tok_dir))};
const files = new Map(fs.readdirSync(dir).map((n) => [`tok/${{n}}`, new Uint8Array(fs.readFileSync(`${{dir}}/${{n}}`))]));
const tok = await loadTokenizer(dir, files, "tok");
const lines = {json.dumps(lines)};
process.stdout.write(JSON.stringify({{ids: lines.map((l) => tok.encode(l)), size: tok.vocabSize,
  decoded: lines.map((l) => tok.decode(tok.encode(l)))}}));
"""
    return json.loads(node_eval(script))


TRICKY = ["  leading and   inner spaces  ", "Straße, Ærøskøbing — naïve café №5 ½", "emoji 🐕🐕 and 日本語の文",
          "tab\there", "unter_strich x²", ""]


def test_sentencepiece_in_js_tokenizes_as_python_on_real_sentences(tmp_path):
    """A sentencepiece model trained on Multi30k: ids and round trips of 1000 German and English
    test sentences (and odd text) equal the Python sentencepiece's."""
    from seqkit.tokenizers.spm import SentencePieceTokenizer

    de, en = _multi30k("test_2016_flickr.de.gz", 500), _multi30k("test_2016_flickr.en.gz", 500)
    train = _multi30k("train.de.gz", 3000) + _multi30k("train.en.gz", 3000)
    tok = SentencePieceTokenizer.train(train, SentencePieceTokenizer.Config(vocab_size=2000), tmp_path)
    tok.save(tmp_path / "spm")
    lines = de + en + TRICKY
    got = _js_tokenize(tmp_path / "spm", lines)
    assert got["size"] == tok.vocab_size == 2000
    assert got["ids"] == [tok.encode(line) for line in lines]
    assert got["decoded"] == [tok.decode(tok.encode(line)) for line in lines]


@pytest.mark.parametrize("kind", ["char", "word", "word-punct"])
def test_char_and_word_tokenizers_in_js_tokenize_as_python(tmp_path, kind):
    from seqkit.tokenizers.char import CharTokenizer

    train = _multi30k("train.de.gz", 500)
    if kind == "char":
        tok = CharTokenizer.train(train, CharTokenizer.Config(min_freq=2), tmp_path)
    else:
        pattern = PUNCT_PATTERN if kind == "word-punct" else r"\S+"
        tok = WordTokenizer.train(train, WordTokenizer.Config(pattern=pattern, lowercase=True, min_freq=2), tmp_path)
    tok.save(tmp_path / "tok")
    lines = _multi30k("test_2016_flickr.de.gz", 300) + TRICKY + ["a\u00a0b\u2003c\ufeffd \x1ce"]
    got = _js_tokenize(tmp_path / "tok", lines)
    assert got["size"] == load_tokenizer(tmp_path / "tok").vocab_size
    assert got["ids"] == [tok.encode(line) for line in lines]
    assert got["decoded"] == [tok.decode(tok.encode(line)) for line in lines]


def test_sha256_without_webcrypto_matches_hashlib():
    import hashlib

    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 1000, 70001]
    script = f"""
import {{ sha256Fallback }} from "./src/sha256.js";
const out = {json.dumps(sizes)}.map((n) => sha256Fallback(Uint8Array.from({{length: n}}, (_, i) => (i * 7 + 3) % 256)));
process.stdout.write(JSON.stringify(out));
"""
    want = [hashlib.sha256(bytes((i * 7 + 3) % 256 for i in range(n))).hexdigest() for n in sizes]
    assert json.loads(node_eval(script)) == want


def _with_extra_step_input(model_dir: Path, tmp_path: Path) -> Path:
    """A copy whose step graph also declares an (unused) int64 input "shortlist" (N,): the shape
    of the per-batch input the vocabulary shortlist will add (docs/export.md)."""
    import onnx

    model = _copy(model_dir, tmp_path)
    graph = onnx.load(model / "decoder_step.onnx")
    graph.graph.input.append(onnx.helper.make_tensor_value_info("shortlist", onnx.TensorProto.INT64, ["n"]))
    _rewrite(model, "decoder_step.onnx", graph.SerializeToString())
    return model


def test_a_step_input_the_runtime_cannot_feed_is_refused_naming_it(one_model, tmp_path):
    model = _with_extra_step_input(one_model, tmp_path)
    err = _one_error(node_translate(model, ["ein hund ."]))
    assert err.startswith(f"error: {model}/decoder_step.onnx: graph inputs ") and \
        err.endswith('this runtime cannot feed "shortlist")'), err


def test_extra_step_inputs_are_fed_through_the_hook(one_model, tmp_path):
    """Registering the input in EXTRA_STEP_INPUTS (built once per batch from the source rows)
    is all a new per-batch step input needs: the model then decodes as before."""
    model = _with_extra_step_input(one_model, tmp_path)
    script = f"""
import {{ EXTRA_STEP_INPUTS }} from "./src/stepper.js";
import {{ loadModelDir }} from "./src/node.js";
EXTRA_STEP_INPUTS.shortlist = (ort, config, src) =>
  new ort.Tensor("int64", BigInt64Array.from([...new Set(src.flat())], BigInt), [new Set(src.flat()).size]);
const m = await loadModelDir({json.dumps(str(model))}, {{ threads: 1 }});
const r = await m.translate({json.dumps(SRC_LINES)}, {{ strategy: "beam", beam_size: 3 }});
process.stdout.write(JSON.stringify(r.map((x) => x.tokens)));
"""
    want = load_model(one_model, threads=1).translator(strategy="beam", beam_size=3).translate(SRC_LINES)
    assert json.loads(node_eval(script)) == [w.tokens for w in want]



def test_replace_unk_as_python(one_model):
    """search.replace_unk: each unk becomes the source word its step attended to most (an unk
    whose strongest attention is on the source eos stays unk), as seqkit.inference does."""
    import numpy as np

    from seqkit.inference import replace_unknowns

    tok = load_tokenizer(one_model / "tokenizer" / "tgt")
    words = ["zwei", "unbekannte", "wörter", "."]
    tokens = [5, 1, 7, 1, 1, 3]
    attention = np.random.default_rng(0).random((len(tokens) + 1, len(words) + 1))
    attention[4, -1] = 2.0  # the third unk looks at eos
    script = f"""
import {{ loadModelDir }} from "./src/node.js";
const m = await loadModelDir({json.dumps(str(one_model))}, {{ threads: 1 }});
process.stdout.write(JSON.stringify(m.replaceUnknowns({tokens}, {json.dumps(attention.tolist())}, {json.dumps(words)})));
"""
    want = replace_unknowns(tokens, attention, words, tok)
    assert "\u2047" in want and want != tok.decode(tokens)  # one unk stays, others are replaced
    assert json.loads(node_eval(script)) == want


@pytest.mark.parametrize("overrides", [{"strategy": "greedy", "min_len": 3}, {"strategy": "beam", "beam_size": 4, "min_len": 2}])
def test_whole_rows_decode_as_the_graph_top_k(one_model, overrides):
    """A step function without top-k outputs (exports before step_top_k) reads whole log-prob
    rows: the same ids as the Python runtime's top-k path."""
    script = f"""
import {{ loadModelDir }} from "./src/node.js";
const m = await loadModelDir({json.dumps(str(one_model))}, {{ threads: 1 }});
m.stepper.hasTopK = false;
const r = await m.translate({json.dumps(LINES)}, {json.dumps(overrides)});
process.stdout.write(JSON.stringify(r.map((x) => x.tokens)));
"""
    want = load_model(one_model, threads=1).translator(**overrides).translate(LINES)
    assert json.loads(node_eval(script)) == [w.tokens for w in want]
