"""ONNX export: parity with torch for every cell/attention style and a language model, greedy /
beam / sampling identical through the runtime, atomic failure, int8, the CLI front ends.
Classifiers: tests/test_export_classifier.py.

Run directories are built without training: a tiny word-level corpus, a randomly initialized
model (fixed seed) saved as the run's checkpoint. ``make_run`` and ``export_tiny`` are shared
with tests/test_runtime.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seqkit.errors import ModelError
from seqkit.export import export_run
from seqkit.inference import Generator, Translator
from seqkit.models import TorchStepper
from seqkit.runs import load_run
from seqkit.runtime import load_model
from seqkit.runtime import format as fmt
from seqkit.tasks import entry

SRC_LINES = [
    "ein mann fährt fahrrad .", "zwei hunde spielen im schnee .", "eine frau liest ein buch .",
    "kinder spielen im park .", "ein hund läuft über die wiese .", "der mann trinkt kaffee .",
    "eine katze schläft auf dem sofa .", "zwei männer spielen fußball .",
]
TGT_LINES = [
    "a man rides a bike .", "two dogs play in the snow .", "a woman reads a book .",
    "children play in the park .", "a dog runs across the meadow .", "the man drinks coffee .",
    "a cat sleeps on the sofa .", "two men play soccer .",
]
LM_TEXT = "first citizen:\nbefore we proceed any further, hear me speak.\n\nall:\nspeak, speak.\n" * 3


def _decoder(cell: str, attention: str, input_feeding: bool) -> dict:
    spec = {"type": attention}
    if attention in ("bahdanau", "luong-concat"):
        spec["attention_size"] = 12
    return {"type": cell, "embedding_dim": 8, "hidden_size": 16, "num_layers": 2, "attention": spec,
            "input_feeding": input_feeding, "dropout": 0.1}


def make_run(root: Path, *, enc: str = "lstm", dec: str = "lstm", attention: str = "luong-general",
             input_feeding: bool = False, task: str = "translation", seed: int = 0,
             search: dict | None = None, tokenizer: str = "word", copy_source: bool = False,
             decoder_options: dict | None = None) -> Path:
    """A run directory holding a randomly initialized tiny model as its best checkpoint
    (``copy_source``: a pointer-generator decoder over one shared vocabulary; ``decoder_options``:
    more model.decoder keys)."""
    from seqkit.checkpoint import save_checkpoint
    from seqkit.models import build_model
    from seqkit.recipe import load_recipe
    from seqkit.runs import write_recipe
    from seqkit.tokenizers import build_tokenizers, save_tokenizers

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    run_dir = root / "run"
    recipe: dict = {"task": task, "run_dir": str(run_dir), "search": search or {"max_len_offset": 5}}
    if task == "lm":
        (data / "text.txt").write_text(LM_TEXT, encoding="utf-8")
        recipe["data"] = {"format": "text", "train": {"path": str(data / "text.txt")}, "valid_fraction": 0.3}
        recipe["tokenizer"] = {"source": {"type": "char"}}
        recipe["model"] = {"decoder": {"type": dec, "embedding_dim": 8, "hidden_size": 16, "num_layers": 2}}
        recipe["search"] = search or {"strategy": "sample", "max_len": 40}
    else:
        for side, lines in (("src", SRC_LINES), ("tgt", TGT_LINES)):
            for split in ("train", "valid"):
                (data / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        recipe["data"] = {"format": "parallel", "max_src_len": 12,
                          **{s: {"src": str(data / f"{s}.src"), "tgt": str(data / f"{s}.tgt")} for s in ("train", "valid")}}
        recipe["tokenizer"] = {"shared": copy_source, "source": {"type": tokenizer}}
        recipe["model"] = {"encoder": {"type": enc, "embedding_dim": 8, "hidden_size": 8, "num_layers": 2,
                                       "bidirectional": True},
                           "decoder": {**_decoder(dec, attention, input_feeding), "copy_source": copy_source,
                                       **(decoder_options or {})}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    loaded = load_recipe(root / "recipe.yaml")
    run_dir.mkdir()
    write_recipe(loaded, run_dir)
    src_texts, tgt_texts = (None, [LM_TEXT]) if task == "lm" else (SRC_LINES, TGT_LINES)
    src, tgt = build_tokenizers(loaded.tokenizer, src_texts, tgt_texts, root / "tok.work")
    save_tokenizers(run_dir / "tokenizer", src, tgt)
    torch.manual_seed(seed)
    model = build_model(loaded.model, entry(task).model, src.vocab_size if src else None, tgt.vocab_size, tgt.pad_id)
    save_checkpoint(run_dir / "checkpoints", 1, model, None, {"metrics": {}}, pointers=("last", "best"))
    return run_dir


def export_tiny(root: Path, **kwargs) -> tuple[Path, Path]:
    """(run dir, exported dir) for make_run(**kwargs); export options via ``export_options``."""
    options = kwargs.pop("export_options", {})
    run_dir = make_run(root, **kwargs)
    return run_dir, export_run(run_dir, root / "model", **options)


CASES = {
    "lstm-luong-general": {"enc": "lstm", "dec": "lstm", "attention": "luong-general"},
    "gru-bahdanau": {"enc": "gru", "dec": "gru", "attention": "bahdanau"},
    "rnn-none": {"enc": "rnn", "dec": "rnn", "attention": "none"},
    "lstm-input-feeding": {"enc": "gru", "dec": "lstm", "attention": "luong-concat", "input_feeding": True},
    # Source ids ride along as an extra memory tensor; the step graph scatter-adds attention.
    "lstm-copy": {"enc": "lstm", "dec": "lstm", "attention": "luong-general", "copy_source": True},
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    run_dir, model_dir = export_tiny(root, **CASES[request.param])
    return request.param, run_dir, model_dir


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _translators(run_dir: Path, model_dir: Path, **search) -> tuple[Translator, Translator]:
    run = load_run(run_dir)
    cfg = run.recipe.search.model_copy(update=search)
    torch_tr = Translator(TorchStepper(run.model), run.src_tok, run.tgt_tok, cfg, max_src_len=run.recipe.data.max_src_len)
    return torch_tr, load_model(model_dir, threads=1).translator(**search)


def test_export_writes_the_documented_directory(exported):
    name, _, model_dir = exported
    files = fmt.model_files(model_dir)
    assert {fmt.ENCODER_FILE, fmt.DECODER_STEP_FILE, fmt.CONFIG_FILE} <= set(files)
    assert "tokenizer/src/tokenizer.json" in files and "tokenizer/tgt/tokenizer.json" in files
    manifest = fmt.verify_manifest(model_dir)
    assert sorted(manifest.files) == files and manifest.opset == 17
    report = manifest.verification["fp32"]
    n = report["greedy_identical"].split("/")[1]
    assert report["greedy_identical"] == f"{n}/{n}" and int(n) == len(SRC_LINES)  # the valid split
    assert max(report["max_abs_diff"].values()) < 1e-4
    config = fmt.read_config(model_dir)
    assert config.has_attention == (CASES[name]["attention"] != "none")
    assert [t.name for t in config.state][:1] == ["state_0"]
    assert all(t.shape[t.batch_dim] == fmt.BATCH for t in config.state)
    assert not list(model_dir.parent.glob(".model.tmp-*"))


@pytest.mark.parametrize("search", [{"strategy": "greedy"}, {"strategy": "beam", "beam_size": 5, "n_best": 3}])
def test_runtime_decodes_like_torch(exported, search):
    _, run_dir, model_dir = exported
    torch_tr, ort_tr = _translators(run_dir, model_dir, **search)
    lines = SRC_LINES[:4] + ["ein unbekanntes wort .", ""]
    want, got = torch_tr.translate(lines), ort_tr.translate(lines)
    assert [r.tokens for r in got] == [r.tokens for r in want]
    assert [[c.text for c in r.n_best] for r in got] == [[c.text for c in r.n_best] for r in want]
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-4)
    assert len(want[0].n_best) == search.get("n_best", 1)


def test_top_k_outputs_are_the_top_of_the_full_rows(exported):
    """Both steppers' step_top_k is exactly the stable top-k of their own step(); beam search and
    greedy through it equal the whole-row path. An export without the top-k outputs (the format
    before step_top_k) loads as a plain OrtStepper and decodes the same."""
    from seqkit.beam import beam_search
    from seqkit.export_seq2seq import open_stepper, trace_graphs
    from seqkit.batching import pad_batch
    from seqkit.search import TopKStepFunction, greedy, top_k_rows

    _, run_dir, model_dir = exported
    config, run = fmt.read_config(model_dir), load_run(run_dir)
    assert config.step_top_k
    ort_fn, torch_fn = load_model(model_dir, threads=1).stepper, TorchStepper(run.model)
    old_dir = model_dir.parent / "without-top-k"
    old_dir.mkdir(exist_ok=True)
    old_config = config.model_copy(update={"step_top_k": False})
    trace_graphs(run.model.float().eval(), old_config, old_dir)
    old_fn = open_stepper(old_config, old_dir)
    assert isinstance(ort_fn, TopKStepFunction) and isinstance(torch_fn, TopKStepFunction)
    assert not isinstance(old_fn, TopKStepFunction)
    src, lengths = pad_batch([run.src_tok.encode(line) + [run.src_tok.eos_id] for line in SRC_LINES[:5]], run.src_tok.pad_id)
    eos = config.special_ids.eos
    for fn in (ort_fn, torch_fn):
        memory, state = fn.start(src, lengths)
        y = np.full(len(src), config.special_ids.bos, dtype=np.int64)
        for _ in range(3):
            top, _, _ = fn.step_top_k(y, memory, state, 7, eos)
            logp, _, state = fn.step(y, memory, state)
            want = top_k_rows(logp, 7, eos)
            np.testing.assert_array_equal(top.ids, want.ids)
            np.testing.assert_array_equal(top.log_probs, want.log_probs)
            np.testing.assert_array_equal(top.eos, want.eos)
            y = want.ids[:, 1]
    common = {"bos_id": config.special_ids.bos, "eos_id": eos, "max_len": 9}
    for search in (greedy, lambda *a, **kw: beam_search(*a, beam_size=4, n_best=2, min_len=2, **kw)):
        full, top_k = search(old_fn, src, lengths, **common), search(ort_fn, src, lengths, **common)
        numbers = [(h.tokens, h.score, h.log_prob) for hyps in top_k for h in (hyps if isinstance(hyps, list) else [hyps])]
        assert numbers == [(h.tokens, h.score, h.log_prob) for hyps in full for h in (hyps if isinstance(hyps, list) else [hyps])]
        assert any(tokens for tokens, _, _ in numbers)


def test_sampling_with_a_seed_is_identical(exported):
    _, run_dir, model_dir = exported
    torch_tr, ort_tr = _translators(run_dir, model_dir, strategy="sample", seed=7, top_k=5)
    want, got = torch_tr.translate(SRC_LINES[:3]), ort_tr.translate(SRC_LINES[:3])
    assert [r.tokens for r in got] == [r.tokens for r in want]
    assert any(r.tokens for r in got)


def test_language_model_export_and_generate(tmp_path):
    run_dir, model_dir = export_tiny(tmp_path, task="lm", dec="lstm")
    assert fmt.model_files(model_dir) == [fmt.CONFIG_FILE, fmt.LM_STEP_FILE, "tokenizer/tgt/tokenizer.json"]
    config = fmt.read_config(model_dir)
    assert config.model_kind == "lm" and config.memory == [] and not config.has_attention
    report = fmt.verify_manifest(model_dir).verification["fp32"]
    assert report["greedy_identical"].split("/")[0] == report["greedy_identical"].split("/")[1]
    run = load_run(run_dir)
    want = Generator(TorchStepper(run.model), run.tgt_tok, run.recipe.search).generate("speak", max_tokens=30, seed=3)
    model = load_model(model_dir, threads=1)
    assert model.generate("speak", max_tokens=30, seed=3) == want
    assert want.startswith("speak") and len(want) > len("speak")
    with pytest.raises(ModelError, match="cannot translate"):
        model.translator()
    from click.testing import CliRunner

    from seqkit.cli import cli

    args = ["--prompt", "hear", "--max-tokens", "15", "--seed", "4", "--temperature", "0.7"]
    by_run, by_model = (CliRunner().invoke(cli, ["generate", str(d), *args]) for d in (run_dir, model_dir))
    assert by_run.exit_code == 0 and by_model.exit_code == 0, by_model.output
    assert by_run.stdout == by_model.stdout and by_run.stdout.startswith("hear")


def test_failed_parity_leaves_nothing(tmp_path, monkeypatch):
    import seqkit.export_verify as verify

    run_dir = make_run(tmp_path, attention="bahdanau", dec="gru", enc="gru")
    monkeypatch.setattr(verify, "ATOL", -1.0)  # every difference, even 0, is now beyond tolerance
    with pytest.raises(ModelError, match=r"parity: output 'memory_0' \(encoder\) differs from torch by max \|diff\| ="):
        export_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "recipe.yaml", "run", "tok.work"]


def test_greedy_mismatch_fails_export(tmp_path, monkeypatch):
    import seqkit.export_verify as verify

    run_dir = make_run(tmp_path)
    real = verify.greedy_ids
    monkeypatch.setattr(verify, "greedy_ids", lambda fn, c, s: real(fn, c, s) if isinstance(fn, TorchStepper)
                        else [[7] for _ in s.ids])
    with pytest.raises(ModelError, match=r"greedy decoding of sample 0 differs: torch \[.*\] vs onnxruntime \[7\]"):
        export_run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_non_empty_output_and_bad_options(tmp_path):
    run_dir = make_run(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ModelError, match="already exists"):
        export_run(run_dir, tmp_path / "out")
    with pytest.raises(ModelError, match="unknown 'int4'"):
        export_run(run_dir, tmp_path / "out2", quantize="int4")
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"


def test_copy_exports_at_the_minimum_opset(tmp_path):
    run_dir = make_run(tmp_path, copy_source=True)
    config = fmt.read_config(export_run(run_dir, tmp_path / "ok", opset=13))  # parity checked inside
    # memory_3 is the float32 source ids: batch and source length vary, like the mask's.
    assert [t.shape for t in config.memory][3] == [fmt.BATCH, fmt.SRC_LEN]


def test_check_sentences_and_random_fallback(tmp_path):
    run_dir = make_run(tmp_path, attention="luong-dot", enc="gru", dec="gru")
    model_dir = export_run(run_dir, tmp_path / "a", check_sentences=["ein hund .", "zwei katzen ."])
    assert fmt.verify_manifest(model_dir).verification["samples"] == "2 sentences from check_sentences"
    (tmp_path / "data" / "valid.src").unlink()  # the run's valid data is gone: random ids
    model_dir = export_run(run_dir, tmp_path / "b")
    assert fmt.verify_manifest(model_dir).verification["samples"] == "8 rows of random ids"


@pytest.mark.parametrize("copy_source", [False, True], ids=["plain", "copy"])
def test_int8_export_runs_and_reports(tmp_path, copy_source):
    # copy: the source ids ride in a float32 memory tensor that quantization must leave exact
    run_dir, model_dir = export_tiny(tmp_path, export_options={"quantize": "int8"}, copy_source=copy_source,
                                     **({"enc": "lstm", "dec": "lstm", "attention": "luong-general"} if copy_source else {}))
    manifest = fmt.verify_manifest(model_dir)
    assert manifest.quantized == "int8" and fmt.read_config(model_dir).quantized == "int8"
    assert set(manifest.verification) == {"checkpoint", "samples", "fp32", "int8"}
    assert "log_probs" in manifest.verification["int8"]["max_abs_diff"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(model_dir / fmt.DECODER_STEP_FILE)).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM"}
    if copy_source:  # the copy distribution is still scattered onto the float32 source ids
        assert "ScatterElements" in ops and fmt.read_config(model_dir).memory[3].dtype == "float32"
    out = load_model(model_dir, threads=1).translate(SRC_LINES[:2], strategy="beam", beam_size=3)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_cli_export_translate_generate(tmp_path):
    from click.testing import CliRunner

    from seqkit.cli import cli

    run_dir = make_run(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(run_dir), "-o", str(tmp_path / "m"), "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_dir"] == str(tmp_path / "m")
    lines = "\n".join(SRC_LINES[:3]) + "\n"
    by_run = runner.invoke(cli, ["translate", str(run_dir), "--beam-size", "3"], input=lines)
    by_model = runner.invoke(cli, ["translate", str(tmp_path / "m"), "--beam-size", "3"], input=lines)
    assert by_run.exit_code == 0 and by_model.exit_code == 0, by_model.output
    assert by_model.stdout == by_run.stdout and len(by_model.stdout.splitlines()) == 3
    # --workers 2 with batches of one line: three batches, two at a time; the same lines, in order
    threads = torch.get_num_threads()  # --workers shares the cores: this process's torch threads change
    try:
        for model in (run_dir, tmp_path / "m"):
            two = runner.invoke(cli, ["translate", str(model), "--beam-size", "3", "--batch-size", "1", "--workers", "2"],
                                input=lines)
            assert two.exit_code == 0 and two.stdout == by_run.stdout, two.output
    finally:
        torch.set_num_threads(threads)
    wrong = runner.invoke(cli, ["generate", str(tmp_path / "m")])
    assert wrong.exit_code != 0 and "use `seqkit translate`" in str(wrong.exception)


def test_bench_decode_tool_runs(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).parent.parent / "tools" / "bench_decode.py"
    spec = importlib.util.spec_from_file_location("bench_decode", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run_dir = make_run(tmp_path)
    report = bench.main([str(run_dir), "--split", "valid", "--limit", "4", "--latency-sentences", "2", "--repeats", "1",
                         "--threads", "2", "--workers", "2", "--batch-size", "2", "--json", str(tmp_path / "bench.json")])
    rows = {(r["backend"], r["strategy"]): r for r in report["results"]}
    backends = ("torch", "ort-fp32", "ort-int8", "torch-w2", "ort-fp32-w2", "ort-int8-w2")
    assert set(rows) == {(b, s) for b in backends for s in ("greedy", "beam")}
    assert rows[("torch-w2", "beam")]["same_as_torch"] == 100.0  # torch on 1 thread per batch: the same ids
    assert rows[("ort-fp32", "beam")]["same_as_torch"] == 100.0 and rows[("ort-fp32", "greedy")]["bleu_delta"] == 0.0
    # two batches at once, one onnxruntime thread each: the same hypotheses as one batch at a time
    assert rows[("ort-fp32-w2", "beam")]["same_as_torch"] == 100.0 == rows[("ort-fp32-w2", "greedy")]["same_as_torch"]
    assert json.loads((tmp_path / "bench.json").read_text())["sentences"] == 4
    assert "| ort-int8 | beam 5 |" in capsys.readouterr().out
