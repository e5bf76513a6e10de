"""Issue 22, items 5 and 6: an exported model reads nothing outside its directory, and one that
does not fit its own config.json is refused at load time, naming the file and field."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_export import export_tiny  # tests/ is on sys.path (no __init__.py)

from seqkit.errors import ModelError, SeqkitError
from seqkit.runtime import format as fmt
from seqkit.runtime import load_model
from seqkit.tokenizers import load_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def s2s(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("s2s"), enc="gru", dec="gru", attention="luong-general")[1]


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("lm"), task="lm", dec="gru")[1]


def copy_model(src: Path, tmp_path: Path, name: str = "model") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst, symlinks=True)
    return dst


def reseal(root: Path, files: dict[str, str] | None = None) -> None:
    """Rewrite manifest.json so that it vouches for the directory as it now is (plus ``files``)."""
    manifest = fmt.Manifest.model_validate_json((root / fmt.MANIFEST_FILE).read_bytes())
    hashes = {n: fmt.sha256_file(root / n) for n in fmt.model_files(root)} if files is None else files
    fmt.write_manifest(root, manifest.model_copy(update={"files": hashes}))


def edit_config(root: Path, **changes) -> None:
    config = json.loads((root / fmt.CONFIG_FILE).read_text())
    config.update(changes)
    (root / fmt.CONFIG_FILE).write_text(json.dumps(config))
    reseal(root)


def message(fn) -> str:
    with pytest.raises(ModelError) as info:
        fn()
    text = str(info.value)
    assert "\n" not in text and len(text) < 600
    return text


# -- item 5: no reads outside the model ---------------------------------------------------------
@pytest.mark.parametrize("entry", ["../outside.txt", "tokenizer/../../outside.txt", "ABS"])
def test_manifest_entry_outside_is_refused_whether_or_not_it_exists(s2s, tmp_path, entry):
    root = copy_model(s2s, tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    name = str(outside) if entry == "ABS" else entry
    files = {**fmt.hash_files(root), name: fmt.sha256_file(outside)}  # the right hash, even
    reseal(root, files)
    seen_existing = message(lambda: load_model(root))
    outside.unlink()
    seen_missing = message(lambda: load_model(root))
    assert "outside" in seen_existing and seen_existing == seen_missing


@pytest.mark.parametrize("what", ["file", "directory"])
def test_symlink_out_of_the_model_is_refused(s2s, tmp_path, what):
    root = copy_model(s2s, tmp_path)
    target = tmp_path / "elsewhere"
    shutil.copytree(root / "tokenizer" / "tgt", target)
    if what == "file":
        (root / "tokenizer" / "tgt" / "tokenizer.json").unlink()
        os.symlink(target / "tokenizer.json", root / "tokenizer" / "tgt" / "tokenizer.json")
    else:
        shutil.rmtree(root / "tokenizer" / "tgt")
        os.symlink(target, root / "tokenizer" / "tgt")
    with pytest.raises(ModelError, match="outside"):
        reseal(root)  # hashing the tree refuses it already
    reseal(root, fmt.hash_files(s2s))
    assert "outside" in message(lambda: load_model(root))


def test_symlink_inside_the_model_is_fine(s2s, tmp_path):
    root = copy_model(s2s, tmp_path)
    (root / "README.txt").write_text("notes")
    os.symlink("../README.txt", root / "tokenizer" / "README.txt")
    reseal(root)
    assert load_model(root).translate(["a b"])


def test_fifo_in_the_manifest_does_not_hang(s2s, tmp_path):
    root = copy_model(s2s, tmp_path)
    os.mkfifo(root / "pipe")
    files = {**fmt.hash_files(s2s), "pipe": "0" * 64}
    reseal(root, files)
    assert "pipe" in message(lambda: fmt.verify_manifest(root))


@pytest.mark.parametrize("model_file", ["ABS", "../../outside.model", "/dev/zero"])
def test_sentencepiece_model_file_outside_is_refused(tmp_path, model_file):
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tmp_path / "outside.model").write_bytes(b"x")
    name = str(tmp_path / "outside.model") if model_file == "ABS" else model_file
    (tok_dir / "tokenizer.json").write_text(json.dumps({"type": "sentencepiece", "config": {}, "model_file": name}))
    seen = message(lambda: load_tokenizer(tok_dir))
    assert seen.startswith(f"{tok_dir / 'tokenizer.json'}: model_file: ") and "only paths inside it are read" in seen


# -- item 6: a model that does not fit its own config --------------------------------------------
def test_swapped_graphs_are_refused(s2s, tmp_path):
    root = copy_model(s2s, tmp_path)
    os.replace(root / fmt.ENCODER_FILE, tmp_path / "enc")
    os.replace(root / fmt.DECODER_STEP_FILE, root / fmt.ENCODER_FILE)
    os.replace(tmp_path / "enc", root / fmt.DECODER_STEP_FILE)
    reseal(root)
    assert f"{root / fmt.ENCODER_FILE}: graph inputs" in message(lambda: load_model(root))


def test_valid_onnx_of_another_model_is_refused(s2s, lm, tmp_path):
    root = copy_model(s2s, tmp_path)
    shutil.copy(lm / fmt.LM_STEP_FILE, root / fmt.DECODER_STEP_FILE)
    reseal(root)
    assert fmt.DECODER_STEP_FILE in message(lambda: load_model(root))


@pytest.mark.parametrize("field,value,expect", [
    ("format_version", 2, "format_version"),
    ("tgt_vocab_size", 7, "tgt_vocab_size"),
    ("src_vocab_size", 999, "src_vocab_size"),
    ("special_ids", {"pad": 0, "unk": 1, "bos": 2, "eos": 5}, "special_ids.eos"),
    ("max_src_len", 10**15, "max_src_len"),
    ("search", {"beam_size": 100000}, "search.beam_size"),
    ("search", {"max_len": 10**15}, "search.max_len"),
    ("search", {"length_penalty": float("nan")}, "search.length_penalty"),
    ("has_attention", False, "attention"),
])
def test_config_that_disagrees_with_the_graphs_is_refused(s2s, tmp_path, field, value, expect):
    root = copy_model(s2s, tmp_path)
    edit_config(root, **{field: value})
    assert expect in message(lambda: load_model(root))


def test_memory_shape_that_disagrees_is_refused(s2s, tmp_path):
    root = copy_model(s2s, tmp_path)
    config = json.loads((root / fmt.CONFIG_FILE).read_text())
    spec = config["state"][0]
    spec["shape"] = [d + 1 if isinstance(d, int) else d for d in spec["shape"]]
    edit_config(root, state=config["state"])
    assert "state_0" in message(lambda: load_model(root))


def test_lm_vocabulary_that_disagrees_is_refused(lm, tmp_path):
    root = copy_model(lm, tmp_path)
    config = json.loads((root / fmt.CONFIG_FILE).read_text())
    edit_config(root, tgt_vocab_size=config["tgt_vocab_size"] + 1)
    assert "tgt_vocab_size" in message(lambda: load_model(root))


# -- fuzz: config.json fields at their edges -------------------------------------------------------
edge_values = st.one_of(st.none(), st.booleans(), st.sampled_from([0, -1, 1, 2, 10**15, 2**63, -(2**63)]),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                        st.lists(st.integers(-2, 10), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
CONFIG_FIELDS = ["format_version", "task", "model_kind", "special_ids", "src_pad_id", "src_vocab_size", "tgt_vocab_size",
                 "max_src_len", "has_attention", "memory", "state", "search", "opset", "step_top_k", "labels"]
SEARCH_FIELDS = ["strategy", "beam_size", "length_penalty", "n_best", "max_len_ratio", "max_len_offset", "max_len",
                 "min_len", "temperature", "top_k", "top_p", "seed", "batch_size"]


@settings(max_examples=int(os.environ.get("SEQKIT_FUZZ_EXAMPLES", "30")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(CONFIG_FIELDS + [f"search.{f}" for f in SEARCH_FIELDS]), value=edge_values)
def test_fuzz_config_fields(s2s, tmp_path_factory, field, value):
    root = copy_model(s2s, tmp_path_factory.mktemp("fuzz"))
    config = json.loads((root / fmt.CONFIG_FILE).read_text())
    if field.startswith("search."):
        config["search"][field.split(".", 1)[1]] = value
    else:
        config[field] = value
    (root / fmt.CONFIG_FILE).write_text(json.dumps(config))
    reseal(root)
    try:
        model = load_model(root)
        model.translate(["a b c", ""])
    except SeqkitError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600


@settings(max_examples=int(os.environ.get("SEQKIT_FUZZ_EXAMPLES", "30")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=20), st.lists(st.sampled_from(["..", ".", "tokenizer", "/", "etc", "x"]),
                                                     min_size=1, max_size=5).map("/".join)))
def test_fuzz_manifest_paths(s2s, tmp_path_factory, name):
    root = copy_model(s2s, tmp_path_factory.mktemp("fuzz"))
    reseal(root, {**fmt.hash_files(root), name: "0" * 64})
    with pytest.raises(ModelError) as info:
        fmt.verify_manifest(root)
    assert "\n" not in str(info.value)
