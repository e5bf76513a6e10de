"""docs/errors.md, proven: every row is one of CASES below, run here, and the message the doc
shows is the message the code gives. Regenerate the doc with ``python tools/write_errors_doc.py``.

Each case builds its bad input under a temporary directory and returns the exception (or, for
documented non-errors, the observed behaviour as text). Paths are shown as ``<tmp>/...``.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Callable

import pytest
import yaml

from seqkit.errors import SeqkitError

ROOT = Path(__file__).resolve().parents[1]
TRANSLATE = ROOT / "recipes" / "translate.yaml"
DOC = ROOT / "docs" / "errors.md"


def _recipe(tmp: Path, text: str) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _load(path: Path, overrides: list[str] | None = None) -> None:
    from seqkit.recipe import load_recipe

    load_recipe(path, overrides or [])


def _data_cfg(tmp: Path, src: bytes, tgt: bytes, gz: bool = False):
    from seqkit.data import DataConfig

    suffix = ".gz" if gz else ""
    (tmp / f"a.src{suffix}").write_bytes(gzip.compress(src) if gz else src)
    (tmp / f"a.tgt{suffix}").write_bytes(gzip.compress(tgt) if gz else tgt)
    return DataConfig(train={"src": f"a.src{suffix}", "tgt": f"a.tgt{suffix}"})


def _load_data(tmp: Path, src: bytes, tgt: bytes) -> None:
    from seqkit.data import load_split

    load_split(_data_cfg(tmp, src, tgt), "train", tmp, cache_dir=tmp / "cache")


def _translate_tree() -> dict:
    tree = yaml.safe_load(TRANSLATE.read_text())
    tree["data"] = {k: ({kk: str(ROOT / "recipes" / vv) for kk, vv in v.items()} if isinstance(v, dict) else v)
                    for k, v in tree["data"].items()}
    return tree


def case_yaml_syntax(tmp: Path) -> None:
    _load(_recipe(tmp, "task: translation\nmodel:\n  encoder: {type: lstm\n"))


def case_empty_recipe(tmp: Path) -> None:
    _load(_recipe(tmp, "# nothing here\n"))


def case_unknown_key(tmp: Path) -> None:
    _load(TRANSLATE, ["train.optimiser.lr=0.1"])


def case_wrong_type(tmp: Path) -> None:
    _load(TRANSLATE, ["train.batch_tokens=lots"])


def case_negative_size(tmp: Path) -> None:
    _load(TRANSLATE, ["model.encoder.hidden_size=-4"])


def case_misspelled_plugin(tmp: Path) -> None:
    tree = _translate_tree()
    tree["model"]["decoder"]["attention"] = {"type": "luong-genral"}
    _load(_recipe(tmp, yaml.safe_dump(tree)))


def case_unknown_plugin_option(tmp: Path) -> None:
    _load(TRANSLATE, ["model.encoder.hiden_size=4"])


def case_bad_choice(tmp: Path) -> None:
    _load(TRANSLATE, ["search.strategy=beem"])


def case_missing_recipe(tmp: Path) -> None:
    _load(tmp / "nope.yaml")


def case_bad_override(tmp: Path) -> None:
    _load(TRANSLATE, ["train.max_steps"])


def case_missing_data_file(tmp: Path) -> None:
    from seqkit.data import DataConfig, load_split

    load_split(DataConfig(train={"src": "missing.de", "tgt": "missing.en"}), "train", tmp)


def case_misaligned_pairs(tmp: Path) -> None:
    _load_data(tmp, b"a\nb\nc\n", b"x\ny\n")


def case_empty_line(tmp: Path) -> None:
    _load_data(tmp, b"a\n\nc\n", b"x\ny\nz\n")


def case_invalid_utf8(tmp: Path) -> None:
    _load_data(tmp, b"a\nb\xff\xfe\nc\n", b"x\ny\nz\n")


def case_empty_corpus(tmp: Path) -> None:
    _load_data(tmp, b"", b"")


def case_huge_line(tmp: Path) -> str:
    """A 100k-character line loads; training drops it (longer than data.max_src_len)."""
    from seqkit.data import load_split

    corpus = load_split(_data_cfg(tmp, b"a\n" + b"w " * 50_000 + b"\n", b"x\ny\n"), "train", tmp, cache_dir=tmp / "c")
    return f"loaded {len(corpus.src)} pairs; line 2 has {len(corpus.src[1])} characters (dropped at training time: longer than data.max_src_len)"


def case_plugin_import_error(tmp: Path) -> None:
    from seqkit.registry import Registry
    from tests_support import FakeEntryPoint

    Registry(lambda g: [FakeEntryPoint("fancy", "fancy_attn:Fancy", "seqkit-fancy",
                                       error=ModuleNotFoundError("No module named 'fancy_attn'"))]
             if g == "seqkit.attention" else []).get("attention", "fancy")


def case_plugin_contract(tmp: Path) -> None:
    from seqkit.registry import Registry
    from tests_support import FakeEntryPoint, HalfAttention

    Registry(lambda g: [FakeEntryPoint("half", "half:Half", "seqkit-half", HalfAttention)]
             if g == "seqkit.attention" else []).get("attention", "half")


def case_missing_run_dir(tmp: Path) -> None:
    from seqkit.evaluate import open_translator

    open_translator(tmp / "runs" / "nope", {})


def case_not_a_run_dir(tmp: Path) -> None:
    from seqkit.runs import load_run

    (tmp / "somedir").mkdir()
    load_run(tmp / "somedir")


def case_existing_run(tmp: Path) -> None:
    from seqkit.runs import open_recipe_for_training

    (tmp / "run" / "checkpoints" / "step-00000010").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "last.json").write_text('{"checkpoint": "step-00000010"}')
    open_recipe_for_training(TRANSLATE, [f"run_dir={tmp / 'run'}"], resume=False)


def case_resume_without_run(tmp: Path) -> None:
    from seqkit.runs import open_recipe_for_training

    open_recipe_for_training(TRANSLATE, [f"run_dir={tmp / 'fresh'}"], resume=True)


def case_unwritable_run_dir(tmp: Path) -> None:
    from seqkit.train import check_run_dir_writable

    (tmp / "file").write_text("x")
    check_run_dir_writable(tmp / "file" / "run")


def case_tampered_model(tmp: Path) -> None:
    from seqkit.runtime.format import verify_manifest
    from tests_support import write_fake_export

    root = write_fake_export(tmp / "model")
    (root / "decoder_step.onnx").write_bytes(b"tampered")
    verify_manifest(root)


def case_runtime_control_chars(tmp: Path) -> str:
    from seqkit.inference import clean_text

    cleaned = clean_text("a\x00b\x1bc", "line 1")
    return f"'a\\x00b\\x1bc' becomes {cleaned!r} (control characters other than tab become spaces)"


def case_runtime_invalid_unicode(tmp: Path) -> None:
    from seqkit.inference import clean_text

    clean_text("bad \udcff surrogate", "line 3")


def case_stream_carriage_return(tmp: Path) -> None:
    from seqkit.streaming import read_pairs

    cfg = _data_cfg(tmp, b"eins\nzw\rei\n", b"one\ntwo\n")
    list(read_pairs(cfg, tmp))


def case_one_label(tmp: Path) -> None:
    from seqkit.tasks.classification import build_labels

    build_labels(["1", "1", "1"])


def case_unseen_label(tmp: Path) -> None:
    from seqkit.tasks.classification import label_ids

    label_ids(["0", "1", "2"], ["0", "1"], "valid")


def case_serve_run_dir(tmp: Path) -> None:
    from seqkit.serve import serve

    (tmp / "runs" / "translate").mkdir(parents=True)
    serve(tmp / "runs" / "translate")


def case_no_such_gpu(tmp: Path) -> None:
    from unittest import mock

    import torch

    from seqkit.train import pick_device

    # What torch reports on a machine with one GPU, so that the row reads the same everywhere.
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
            mock.patch.object(torch.cuda, "device_count", return_value=1):
        pick_device("cuda:7")


def case_torchrun_device(tmp: Path) -> None:
    from seqkit.distributed import resolve_device

    resolve_device("cuda:1", 0)


def case_torchrun_env(tmp: Path) -> None:
    from seqkit.distributed import torchrun_env

    torchrun_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})


def case_n_best_over_beam(tmp: Path) -> None:
    from seqkit.cli import search_overrides

    search_overrides(n_best=3, beam_size=1)


def case_bad_option_value(tmp: Path) -> None:
    from seqkit.cli import search_overrides

    search_overrides(temperature=0)


def case_cuda_without_cuda(tmp: Path) -> None:
    from seqkit.devices import torch_device

    torch_device("cuda")


def case_unknown_device(tmp: Path) -> None:
    from seqkit.devices import ort_providers

    ort_providers("cudaa")


def case_cuda_without_provider(tmp: Path) -> None:
    from seqkit.devices import ort_providers

    ort_providers("cuda")
# -- issue 22: hostile input and faults ---------------------------------------------------------
def case_alias_bomb(tmp: Path) -> None:
    lines = ["task: translation", "a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    _load(_recipe(tmp, "\n".join(lines + ["description: *a9"]) + "\n"))


def case_deep_yaml(tmp: Path) -> None:
    _load(_recipe(tmp, "task: translation\nmodel: " + "[" * 50_000 + "]" * 50_000 + "\n"))


def case_duplicate_key(tmp: Path) -> None:
    _load(_recipe(tmp, "task: translation\nseed: 1\nseed: 2\n"))


def case_huge_recipe(tmp: Path) -> None:
    _load(_recipe(tmp, "task: translation\n" + "#" * (2 << 20) + "\n"))


def case_nan_search(tmp: Path) -> None:
    _load(TRANSLATE, ["search.length_penalty=.nan"])


def case_too_many_parameters(tmp: Path) -> None:
    _load(TRANSLATE, ["model.decoder.hidden_size=60000"])


def case_backtracking_pattern(tmp: Path) -> None:
    from seqkit.tokenizers.word import WordTokenizer
    from pydantic import ValidationError
    from seqkit.registry import format_validation_error

    try:
        WordTokenizer.Config(pattern="(a|aa)+b")
    except ValidationError as exc:
        raise SeqkitError(format_validation_error(exc, "tokenizer.source")) from None


def case_run_locked(tmp: Path) -> None:
    from seqkit.runlock import lock_run_dir

    (tmp / "run").mkdir()
    held = lock_run_dir(tmp / "run")
    try:
        (tmp / "run" / ".lock").write_text("4242\n")  # the PID a second trainer reads
        lock_run_dir(tmp / "run")
    finally:
        held.release()


def case_checkpoint_write_fails(tmp: Path) -> None:
    import torch

    from seqkit.checkpoint import save_checkpoint

    (tmp / "file").write_text("x")
    save_checkpoint(tmp / "file" / "checkpoints", 1, torch.nn.Linear(2, 2), None, {"metrics": {}})


def case_pointer_outside(tmp: Path) -> None:
    from seqkit.checkpoint import resolve_checkpoint

    (tmp / "run" / "checkpoints").mkdir(parents=True)
    (tmp / "run" / "checkpoints" / "last.json").write_text('{"checkpoint": "/etc"}')
    resolve_checkpoint(tmp / "run", "last")


def case_state_names_outside(tmp: Path) -> None:
    from seqkit.checkpoint import load_checkpoint_state

    (tmp / "step-00000001").mkdir()
    (tmp / "step-00000001" / "state.json").write_text('{"sha256": {"/dev/zero": "00"}}')
    load_checkpoint_state(tmp / "step-00000001")


def case_nan_weights(tmp: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from seqkit.checkpoint import load_model_tensors

    save_file({"weight": torch.full((2, 2), float("nan")), "bias": torch.zeros(2)}, str(tmp / "model.safetensors"))
    load_model_tensors(torch.nn.Linear(2, 2), tmp / "model.safetensors")


def case_stdin_bad_utf8(tmp: Path) -> None:
    import io
    import sys

    from seqkit.textio import read_lines

    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(b"ok\n" * 1000 + b"bad \xff\n"))
    try:
        read_lines(None)
    finally:
        sys.stdin = stdin


def case_output_is_directory(tmp: Path) -> None:
    from seqkit.textio import open_output

    (tmp / "out").mkdir()
    with open_output(tmp / "out") as out:
        out.write("text\n")


def case_export_under_file(tmp: Path) -> None:
    from seqkit.export import staging_dir

    (tmp / "file").write_text("x")
    with staging_dir(tmp / "file" / "model"):
        pass


def case_manifest_outside(tmp: Path) -> None:
    from seqkit.runtime.format import Manifest, verify_manifest, write_manifest
    from tests_support import write_fake_export

    root = write_fake_export(tmp / "model")
    write_manifest(root, Manifest(seqkit_version="0.1.0", opset=17, created="2026-01-01T00:00:00Z",
                                  files={"../../etc/passwd": "0" * 64}))
    verify_manifest(root)


def case_symlink_outside(tmp: Path) -> None:
    from seqkit.runtime.format import verify_manifest
    from tests_support import write_fake_export

    root = write_fake_export(tmp / "model")
    (tmp / "secret").write_text("x")
    os.symlink(tmp / "secret", root / "notes.txt")
    verify_manifest(root)


def case_spm_model_file_outside(tmp: Path) -> None:
    from seqkit.tokenizers import load_tokenizer

    (tmp / "tok").mkdir()
    (tmp / "tok" / "tokenizer.json").write_text('{"type": "sentencepiece", "config": {}, "model_file": "/etc/passwd"}')
    load_tokenizer(tmp / "tok")


def case_format_version(tmp: Path) -> None:
    import json

    from seqkit.runtime.format import read_config

    (tmp / "config.json").write_text(json.dumps({"format_version": 2}))
    read_config(tmp)


def case_generate_bound(tmp: Path) -> None:
    from seqkit.inference import Generator
    from seqkit.search import SearchConfig
    from seqkit.tokenizers.char import CharTokenizer

    tok = CharTokenizer(CharTokenizer.Config(), ["<pad>", "<unk>", "<s>", "</s>", "a"])
    Generator(None, tok, SearchConfig()).generate("a", max_tokens=10**12)


def case_corrupt_gz(tmp: Path) -> None:
    body = bytearray(gzip.compress(b"".join(b"line %d\n" % i for i in range(500))))
    for i in range(12, len(body) - 8):
        body[i] ^= 0x5A
    (tmp / "a.src.gz").write_bytes(bytes(body))
    (tmp / "a.tgt.gz").write_bytes(gzip.compress(b"x\n"))
    from seqkit.data import DataConfig, load_split

    load_split(DataConfig(train={"src": "a.src.gz", "tgt": "a.tgt.gz"}), "train", tmp, cache_dir=tmp / "c")


def case_jsonl_deep(tmp: Path) -> None:
    from seqkit.data import DataConfig, load_split

    (tmp / "a.jsonl").write_text('{"src": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    load_split(DataConfig(format="jsonl", train={"path": "a.jsonl"}), "train", tmp, cache_dir=tmp / "c")


def case_bad_ema(tmp: Path) -> None:
    _load(TRANSLATE, ["train.ema=1.5"])


def case_validate_ema_without_ema(tmp: Path) -> None:
    _load(TRANSLATE, ["train.validate_ema=true"])


def case_negative_coverage_beta(tmp: Path) -> None:
    _load(TRANSLATE, ["search.coverage_penalty=wu", "search.coverage_beta=-0.2"])


def case_coverage_without_beta(tmp: Path) -> None:
    _load(TRANSLATE, ["search.coverage_penalty=summary"])


def case_noam_without_model_size(tmp: Path) -> None:
    _load(TRANSLATE, ["train.schedule.type=noam", "train.schedule.warmup_steps=4000"])


def case_early_stopping_metric_typo(tmp: Path) -> None:
    _load(TRANSLATE, ["train.early_stopping=5", "train.early_stopping_metric=chrF"])


def case_negative_subword_alpha(tmp: Path) -> None:
    _load(TRANSLATE, ["train.subword_sampling.alpha=-0.1"])


SUMMARIZE = ROOT / "recipes" / "summarize.yaml"


def case_coverage_loss_without_coverage(tmp: Path) -> None:
    _load(SUMMARIZE, ["model.decoder.coverage=false"])  # the recipe keeps train.coverage_loss: 1.0


def case_copy_oov_without_copy(tmp: Path) -> None:
    _load(TRANSLATE, ["model.decoder.copy_oov=true"])


def case_copy_oov_with_sentencepiece(tmp: Path) -> None:
    import yaml

    tree = yaml.safe_load(SUMMARIZE.read_text(encoding="utf-8"))
    tree["tokenizer"]["source"] = {"type": "sentencepiece", "vocab_size": 8000}
    _load(_recipe(tmp, yaml.safe_dump(tree)))


def case_word_dropout_one(tmp: Path) -> None:
    _load(SUMMARIZE, ["train.word_dropout=1"])


def case_oov_dropout_without_copy_oov(tmp: Path) -> None:
    _load(SUMMARIZE, ["model.decoder.copy_oov=false", "train.oov_dropout=0.1"])


def _read_embeddings(path: Path) -> None:
    from seqkit.embeddings import read_vectors

    list(read_vectors(path, 256, "model.pretrained_embeddings.source"))


def case_embedding_dimension(tmp: Path) -> None:
    (tmp / "vectors.txt").write_text("2 300\nthe " + " ".join(["0.1"] * 300) + "\n", encoding="utf-8")
    _read_embeddings(tmp / "vectors.txt")


def case_embedding_file_missing(tmp: Path) -> None:
    _read_embeddings(tmp / "glove.6B.300d.txt")


def case_ensemble_member_path(tmp: Path) -> None:
    import json

    from seqkit.runtime.format import read_ensemble

    (tmp / "ensemble.json").write_text(json.dumps({"task": "translation", "members": ["member-1", "../other"]}))
    read_ensemble(tmp)


def case_bad_shortlist_mode(tmp: Path) -> None:
    _load(TRANSLATE, ["export.shortlist.mode=always"])


def case_shortlist_zero_per_source(tmp: Path) -> None:
    _load(TRANSLATE, ["export.shortlist.per_source=0"])


def case_shortlist_negative_bleu_loss(tmp: Path) -> None:
    _load(TRANSLATE, ["export.shortlist.max_bleu_loss=-1"])


CASES: list[tuple[str, str, Callable[[Path], object]]] = [
    ("recipe", "YAML syntax error", case_yaml_syntax),
    ("recipe", "empty recipe file", case_empty_recipe),
    ("recipe", "missing recipe file", case_missing_recipe),
    ("recipe", "unknown key (override `train.optimiser.lr=0.1`)", case_unknown_key),
    ("recipe", "wrong type (`train.batch_tokens=lots`)", case_wrong_type),
    ("recipe", "negative size (`model.encoder.hidden_size=-4`)", case_negative_size),
    ("recipe", "misspelled plugin name (`luong-genral`)", case_misspelled_plugin),
    ("recipe", "unknown plugin option (`model.encoder.hiden_size`)", case_unknown_plugin_option),
    ("recipe", "invalid choice (`search.strategy=beem`)", case_bad_choice),
    ("recipe", "override without `=`", case_bad_override),
    ("data", "missing data file", case_missing_data_file),
    ("data", "misaligned pair files", case_misaligned_pairs),
    ("data", "empty line in a pair corpus", case_empty_line),
    ("data", "invalid UTF-8", case_invalid_utf8),
    ("data", "empty corpus", case_empty_corpus),
    ("data", "100k-character line (documented behaviour)", case_huge_line),
    ("data", "carriage return inside a line (`data.streaming: true`)", case_stream_carriage_return),
    ("classify", "one label in the training data", case_one_label),
    ("classify", "validation label never seen in training", case_unseen_label),
    ("plugins", "plugin fails to import", case_plugin_import_error),
    ("plugins", "plugin violates its contract", case_plugin_contract),
    ("cli", "missing run directory", case_missing_run_dir),
    ("cli", "directory that is not a run", case_not_a_run_dir),
    ("train", "run directory already trained", case_existing_run),
    ("train", "--resume with no run", case_resume_without_run),
    ("train", "unwritable run directory", case_unwritable_run_dir),
    ("train", "`train.device: cuda:7` on a machine with one GPU", case_no_such_gpu),
    ("runtime", "tampered exported model file", case_tampered_model),
    ("runtime", "invalid Unicode in input", case_runtime_invalid_unicode),
    ("serve", "`seqkit serve` given a run directory, not an export", case_serve_run_dir),
    ("torchrun", "`train.device: cuda:1` under torchrun", case_torchrun_device),
    ("torchrun", "RANK outside WORLD_SIZE", case_torchrun_env),
    ("runtime", "control characters in input (documented behaviour)", case_runtime_control_chars),
    ("cli", "`--n-best 3 --beam-size 1`", case_n_best_over_beam),
    ("cli", "`--temperature 0`", case_bad_option_value),
    ("cli", "`--device cuda` with a CPU-only torch (run directory)", case_cuda_without_cuda),
    ("cli", "`--device cudaa`", case_unknown_device),
    ("cli", "`--device cuda` without onnxruntime's CUDA provider (exported model)", case_cuda_without_provider),
    ("recipe", "YAML alias bomb (billion laughs)", case_alias_bomb),
    ("recipe", "YAML nested 50k deep", case_deep_yaml),
    ("recipe", "duplicate key", case_duplicate_key),
    ("recipe", "recipe file over 1 MB", case_huge_recipe),
    ("recipe", "NaN search value (`search.length_penalty=.nan`)", case_nan_search),
    ("recipe", "model past the parameter limit (`model.decoder.hidden_size=60000`)", case_too_many_parameters),
    ("recipe", "word pattern with catastrophic backtracking (`(a|aa)+b`)", case_backtracking_pattern),
    ("train", "second trainer on one run directory", case_run_locked),
    ("train", "checkpoint write fails (disk full, not a directory)", case_checkpoint_write_fails),
    ("train", "checkpoint pointer naming a path outside the run", case_pointer_outside),
    ("train", "state.json hashing a file outside the checkpoint", case_state_names_outside),
    ("train", "NaN weights in a checkpoint", case_nan_weights),
    ("cli", "invalid UTF-8 on stdin", case_stdin_bad_utf8),
    ("cli", "output path is a directory", case_output_is_directory),
    ("cli", "export output under a file", case_export_under_file),
    ("runtime", "manifest entry outside the model", case_manifest_outside),
    ("runtime", "symlink out of the model", case_symlink_outside),
    ("runtime", "sentencepiece model_file outside the model", case_spm_model_file_outside),
    ("runtime", "config.json of a newer format", case_format_version),
    ("runtime", "generate past the length bound", case_generate_bound),
    ("data", "gz file with a corrupt body", case_corrupt_gz),
    ("data", "JSONL line nested 100k deep", case_jsonl_deep),
    ("recipe", "moving-average decay of 1 or more (`train.ema=1.5`)", case_bad_ema),
    ("recipe", "validating the moving average without one (`train.validate_ema=true`, no `train.ema`)",
     case_validate_ema_without_ema),
    ("runtime", "ensemble.json naming a directory outside the ensemble", case_ensemble_member_path),
    ("recipe", "negative coverage penalty weight (`search.coverage_beta=-0.2`)", case_negative_coverage_beta),
    ("recipe", "coverage penalty without a weight (`search.coverage_penalty=summary`)", case_coverage_without_beta),
    ("recipe", "noam schedule without `train.schedule.model_size`", case_noam_without_model_size),
    ("recipe", "early stopping on a metric the task does not report (`chrF`)", case_early_stopping_metric_typo),
    ("recipe", "negative subword sampling alpha (`train.subword_sampling.alpha=-0.1`)", case_negative_subword_alpha),
    ("recipe", "coverage loss without the decoder's coverage (`model.decoder.coverage=false`)",
     case_coverage_loss_without_coverage),
    ("recipe", "extended vocabulary without copying (`model.decoder.copy_oov=true`)", case_copy_oov_without_copy),
    ("recipe", "extended vocabulary over sentencepiece pieces", case_copy_oov_with_sentencepiece),
    ("recipe", "word dropout of 1 (`train.word_dropout=1`)", case_word_dropout_one),
    ("recipe", "unknown-word dropout without the extended vocabulary (`model.decoder.copy_oov=false`)",
     case_oov_dropout_without_copy_oov),
    ("train", "embedding file whose dimension differs from embedding_dim", case_embedding_dimension),
    ("train", "embedding file that cannot be read", case_embedding_file_missing),
    ("recipe", "unknown shortlist mode (`export.shortlist.mode=always`)", case_bad_shortlist_mode),
    ("recipe", "shortlist of 0 pieces per source piece (`export.shortlist.per_source=0`)", case_shortlist_zero_per_source),
    ("recipe", "negative allowed BLEU loss (`export.shortlist.max_bleu_loss=-1`)", case_shortlist_negative_bleu_loss),
]


def observe(fn: Callable[[Path], object], tmp: Path) -> str:
    """The text a user sees: ``error: <message>`` for a seqkit error, else the behaviour."""
    try:
        result = fn(tmp)
    except SeqkitError as exc:
        text = f"error: {exc}"
    else:
        assert isinstance(result, str), f"{fn.__name__} raised nothing"
        text = result
    text = text.replace(str(tmp.resolve()), "<tmp>").replace(str(tmp), "<tmp>").replace(str(ROOT), "<repo>")
    return re.sub(r"\s+\n", "\n", text)


def doc_rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| (\w+) \| (.+?) \| `(.+)` \|$", line)
        if m:
            rows[m.group(2)] = m.group(3).replace("<br>", "\n").replace("\\|", "|")
    return rows


@pytest.mark.parametrize("area,title,fn", CASES, ids=[c[1] for c in CASES])
def test_catalogue_row(area, title, fn, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    seen = observe(fn, tmp_path)
    assert "Traceback" not in seen
    assert doc_rows().get(title) == seen, f"docs/errors.md row '{title}' is stale: run tools/write_errors_doc.py"


def test_every_doc_row_is_a_case():
    assert set(doc_rows()) == {c[1] for c in CASES}
    assert os.path.getsize(DOC) > 0
