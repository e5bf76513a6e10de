"""The torch-free runtime: no torch imported (proved in a subprocess where importing it fails),
manifest checks, the numpy step function, search options, and the CLI on exported models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_export import LM_TEXT, SRC_LINES, export_tiny  # tests/ is on sys.path (no __init__.py)
from test_export_classifier import LINES as CLS_LINES
from test_export_classifier import export_classifier_tiny

from seqkit.errors import InputError, ModelError
from seqkit.models import TorchStepper
from seqkit.runs import load_run
from seqkit.runtime import RuntimeModel, load_model
from seqkit.runtime import format as fmt

# The training extras: none of them may be needed to translate with an exported model.
TRAINING_ONLY = ("torch", "onnx", "datasets", "safetensors", "sacrebleu", "rouge_score", "tensorboard", "tqdm")


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory) -> tuple[Path, Path]:
    return export_tiny(tmp_path_factory.mktemp("s2s"), enc="lstm", dec="lstm", attention="luong-general",
                       search={"max_len_offset": 5, "beam_size": 4})


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> tuple[Path, Path]:
    return export_tiny(tmp_path_factory.mktemp("lm"), task="lm", dec="gru")


def run_without_training_stack(script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter where importing torch (or any training extra) fails."""
    block = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in TRAINING_ONLY)
    return subprocess.run([sys.executable, "-c", block + textwrap.dedent(script)], input=stdin,
                          capture_output=True, timeout=120)


def test_runtime_translates_without_torch(seq2seq):
    _, model_dir = seq2seq
    want = load_model(model_dir, threads=1).translate(SRC_LINES[:3], strategy="beam", beam_size=3)
    result = run_without_training_stack(f"""
        import json
        from seqkit.runtime import load_model
        model = load_model({str(model_dir)!r}, threads=1)
        print(json.dumps(model.translate({SRC_LINES[:3]!r}, strategy="beam", beam_size=3)))
        assert sys.modules["torch"] is None
        print(sorted(m for m in sys.modules if m.split(".")[0] in {TRAINING_ONLY!r} and sys.modules[m] is not None))
    """)
    assert result.returncode == 0, result.stderr.decode()
    out, loaded = result.stdout.decode().splitlines()
    assert json.loads(out) == want and len(want) == 3
    assert loaded == "[]"


def test_cli_translate_and_generate_without_torch(seq2seq, lm):
    cli = "from seqkit.cli import main\nsys.argv = ['seqkit', *sys.argv[1:]]\nmain()\n"

    def seqkit(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return run_without_training_stack(f"sys.argv = ['seqkit', *{list(args)!r}]\n" + cli, stdin)

    lines = ("\n".join(SRC_LINES[:2]) + "\n\n").encode()
    done = seqkit("translate", str(seq2seq[1]), "--beam-size", "2", stdin=lines)
    assert done.returncode == 0, done.stderr.decode()
    want = load_model(seq2seq[1], threads=1).translate(SRC_LINES[:2] + [""], strategy="beam", beam_size=2)
    assert done.stdout.decode().splitlines() == want
    bad = seqkit("translate", str(seq2seq[1]), stdin=b"ein hund \xff\n")
    assert bad.returncode == 1 and "not UTF-8 text" in bad.stderr.decode()
    # Longer than the training filter (data.max_src_len): a recurrent encoder reads it whole.
    long_line = " ".join(["hund"] * 40)
    long = seqkit("translate", str(seq2seq[1]), "--beam-size", "1", stdin=(long_line + "\n").encode())
    assert long.returncode == 0 and "truncated" not in long.stderr.decode()
    cut = load_model(seq2seq[1], threads=1).translator(max_input_len=8).translate([long_line])[0]
    assert cut.warnings == ["line 1: source longer than 8 tokens (eos included); truncated"]
    gen = seqkit("generate", str(lm[1]), "--prompt", "speak", "--max-tokens", "20", "--seed", "5", "--top-k", "3")
    assert gen.returncode == 0, gen.stderr.decode()
    assert gen.stdout.decode() == load_model(lm[1]).generate("speak", max_tokens=20, seed=5, top_k=3) + "\n"
    wrong = seqkit("generate", str(lm[1]), "--temperature", "0")
    assert wrong.returncode == 1 and wrong.stderr.decode() == "error: --temperature: Input should be greater than 0\n"


def test_classifier_and_cli_translate_without_torch(tmp_path):
    _, model_dir = export_classifier_tiny(tmp_path)
    want = load_model(model_dir, threads=1).classify(CLS_LINES)
    result = run_without_training_stack(f"""
        import json
        from seqkit.runtime import load_model
        print(json.dumps(load_model({str(model_dir)!r}, threads=1).classify({CLS_LINES!r})))
        print(sorted(m for m in sys.modules if m.split(".")[0] in {TRAINING_ONLY!r} and sys.modules[m] is not None))
    """)
    assert result.returncode == 0, result.stderr.decode()
    out, loaded = result.stdout.decode().splitlines()
    assert [tuple(x) for x in json.loads(out)] == want and {label for label, _ in want} == {"neg", "pos"}
    assert loaded == "[]"
    cli = f"sys.argv = ['seqkit', 'translate', {str(model_dir)!r}, '--scores']\nfrom seqkit.cli import main\nmain()\n"
    done = run_without_training_stack(cli, ("\n".join(CLS_LINES) + "\n").encode())
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [f"{p:.4f}\t{label}" for label, p in want]


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / fmt.DECODER_STEP_FILE).write_bytes((d / fmt.DECODER_STEP_FILE).read_bytes() + b"\0"),
     r"decoder_step\.onnx: sha256 mismatch with manifest\.json"),
    (lambda d: (d / "tokenizer" / "tgt" / "tokenizer.json").unlink(), r"tokenizer/tgt/tokenizer\.json: listed in manifest\.json but missing"),
    (lambda d: (d / "tokenizer" / "extra.onnx").write_bytes(b"x"), r"tokenizer/extra\.onnx: not listed in manifest\.json"),
    (lambda d: (d / fmt.MANIFEST_FILE).unlink(), r"manifest\.json: missing; .* is not an exported seqkit model"),
    (lambda d: (d / fmt.MANIFEST_FILE).write_text("{"), r"manifest\.json: unreadable manifest"),
])
def test_tampered_model_is_refused(seq2seq, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(seq2seq[1], copy)
    load_model(copy, threads=1)  # intact copy loads
    damage(copy)
    with pytest.raises(ModelError, match=message):
        load_model(copy, threads=1)


def test_config_errors_name_the_file(seq2seq, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(seq2seq[1], copy)
    config = json.loads((copy / fmt.CONFIG_FILE).read_text())
    config["max_src_len"] = "long"
    (copy / fmt.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"config\.json: max_src_len: Input should be a valid integer"):
        fmt.read_config(copy)
    with pytest.raises(ModelError, match="no such model directory"):
        load_model(tmp_path / "nowhere")


def test_ort_stepper_matches_torch_stepper_and_reorders_rows(seq2seq):
    run_dir, model_dir = seq2seq
    run = load_run(run_dir)
    ort_fn, torch_fn = load_model(model_dir, threads=1).stepper, TorchStepper(run.model)
    src = np.array([[5, 6, 7, 3], [8, 3, 0, 0], [9, 10, 3, 0]], dtype=np.int64)
    lengths = np.array([4, 2, 3], dtype=np.int64)
    (mem_o, st_o), (mem_t, st_t) = ort_fn.start(src, lengths), torch_fn.start(src, lengths)
    index = np.array([2, 2, 0], dtype=np.int64)
    mem_o, st_o = ort_fn.select_memory(mem_o, index), ort_fn.select_state(st_o, index)
    mem_t, st_t = torch_fn.select_memory(mem_t, index), torch_fn.select_state(st_t, index)
    y = np.array([2, 5, 6], dtype=np.int64)
    lp_o, at_o, st_o = ort_fn.step(y, mem_o, st_o)
    lp_t, at_t, st_t = torch_fn.step(y, mem_t, st_t)
    np.testing.assert_allclose(lp_o, lp_t, atol=1e-5)
    np.testing.assert_allclose(at_o, at_t, atol=1e-6)
    assert at_o.shape == (3, 4) and lp_o.dtype == np.float32
    for got, want in zip(st_o, st_t):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.exp(lp_o).sum(axis=1), 1.0, atol=1e-5)  # log_softmax is in the graph


def test_search_overrides_are_validated(seq2seq):
    model = load_model(seq2seq[1], threads=1)
    assert isinstance(model, RuntimeModel)
    assert model.search_config().beam_size == 4  # the recipe's search section travels in config.json
    with pytest.raises(InputError, match="search option beam_size"):
        model.translator(beam_size=0)
    with pytest.raises(InputError, match="n_best"):
        model.translator(beam_size=2, n_best=3)
    with pytest.raises(ModelError, match="does not generate"):
        model.generator()
    results = model.translator(strategy="greedy").translate(["", "  "], return_attention=True)
    assert [r.text for r in results] == ["", ""]


def test_language_model_generates_reproducibly(lm):
    model = load_model(lm[1], threads=1)
    first = model.generate("all:", max_tokens=25, seed=11)
    assert first == model.generate("all:", max_tokens=25, seed=11)
    assert first.startswith("all:") and len("all:") < len(first) <= len("all:") + 25  # eos may stop it early
    assert set(first[len("all:"):]) <= set(LM_TEXT) | {"⁇"}
    with pytest.raises(ModelError, match="cannot translate"):
        model.translate(["x"])


THIRD_PARTY = {
    "seqkit_shout.py": (
        "from seqkit.tokenizers.word import WordTokenizer\n\n"
        "class ShoutTokenizer(WordTokenizer):\n"
        "    type_name = 'shout'\n\n"
        "    def detokenize(self, tokens):\n"
        "        return ' '.join(tokens).upper()\n"
    ),
    "seqkit_shout-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: seqkit-shout\nVersion: 0.1\n",
    "seqkit_shout-0.1.dist-info/entry_points.txt": "[seqkit.tokenizers]\nshout = seqkit_shout:ShoutTokenizer\n",
}


def test_third_party_tokenizer_loads_through_its_entry_point(tmp_path, monkeypatch):
    """A model trained with a tokenizer from another distribution exports, and the runtime (no
    torch) loads that tokenizer through the seqkit.tokenizers entry point."""
    from seqkit.registry import default_registry

    site = tmp_path / "site"
    for name, text in THIRD_PARTY.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    monkeypatch.syspath_prepend(str(site))
    default_registry.cache_clear()
    try:
        _, model_dir = export_tiny(tmp_path, tokenizer="shout", enc="gru", dec="gru", attention="luong-dot")
    finally:
        default_registry.cache_clear()
    assert json.loads((model_dir / "tokenizer" / "tgt" / "tokenizer.json").read_text())["type"] == "shout"
    script = f"""
        sys.path.insert(0, {str(site)!r})
        from seqkit.runtime import load_model
        print(load_model({str(model_dir)!r}, threads=1).translate({SRC_LINES[:2]!r}, strategy="greedy")[0])
    """
    result = run_without_training_stack(script)
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode().strip()
    assert text and text == text.upper()


@pytest.mark.parametrize("which,args,message", [
    ("model", ["--n-best", "3", "--beam-size", "1"], "error: --n-best 3 is more than --beam-size 1"),
    ("run", ["--n-best", "3", "--beam-size", "1"], "error: --n-best 3 is more than --beam-size 1"),
    ("model", ["--n-best", "9"], "error: search options: n_best (9) must be <= beam_size (4)"),
    ("run", ["--device", "cuda"], "error: --device cuda: this torch is a CPU-only build"),
    ("model", ["--device", "cudaa"], "error: --device: unknown device 'cudaa'"),
    ("model", ["--device", "cuda"], "error: --device cuda: this onnxruntime has no CUDA provider"),
    ("model", ["-o", "."], "error: Invalid value for '-o' / '--output': File '.' is a directory."),
])
def test_cli_mistakes_end_in_one_error_line(seq2seq, which, args, message):
    import torch
    import onnxruntime

    if "cuda" in args and (torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers()):
        pytest.skip("this machine has CUDA: --device cuda is not a mistake here")
    model_dir = seq2seq[0] if which == "run" else seq2seq[1]
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", str(model_dir), *args], input=b"ein hund\n",
                          capture_output=True, timeout=300)
    err = done.stderr.decode()
    usage = "Invalid value" in message  # click's own checks: status 2, as for any usage error
    assert done.returncode == (2 if usage else 1) and err.startswith(message) and err.count("\n") == 1, err
    assert done.stdout == b""


def test_translate_answers_an_open_pipe_line_by_line(seq2seq):
    """Like fairseq-interactive: each line is answered before the next is written."""
    proc = subprocess.Popen([sys.executable, "-m", "seqkit.cli", "translate", str(seq2seq[1]), "--beam-size", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    want = load_model(seq2seq[1], threads=1).translate(SRC_LINES[:2], strategy="greedy")
    try:
        for line, expected in zip(SRC_LINES[:2], want):
            proc.stdin.write((line + "\n").encode())
            proc.stdin.flush()
            assert proc.stdout.readline().decode() == expected + "\n"  # stdin still open
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0 and proc.stdout.read() == b""
    finally:
        proc.kill()


def test_translate_keeps_one_output_line_per_input_line(seq2seq, tmp_path):
    model = load_model(seq2seq[1], threads=1)
    raw = b"ein hund\reine katze\nzwei hunde\r\n\n"  # \r inside a line, a CRLF ending, an empty line
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", str(seq2seq[1])], input=raw,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split("\n") == model.translate(["ein hund\reine katze", "zwei hunde", ""]) + [""]
    bad = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", str(seq2seq[1])],
                         input=b"ein hund\nzwei\nkatze \xff\n", capture_output=True, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.decode() == "error: stdin: line 3 is not UTF-8 text (invalid start byte at byte 7 of the line)\n"
    out = tmp_path / "out.txt"
    out.write_text("earlier\n")
    failed = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", str(seq2seq[1]), "-o", str(out)],
                            input=b"ein hund\n\xff\n", capture_output=True, timeout=300)
    assert failed.returncode == 1 and out.read_text() == "earlier\n"  # nothing half-written
    assert list(tmp_path.iterdir()) == [out]


def test_python_api_takes_one_string_or_a_list(seq2seq, tmp_path):
    model = load_model(seq2seq[1], threads=1)
    assert model.translate(SRC_LINES[0]) == model.translate([SRC_LINES[0]])[0]
    assert isinstance(model.translate(SRC_LINES[0]), str)
    assert model.translator().translate(SRC_LINES[0]).text == model.translate(SRC_LINES[0])
    with pytest.raises(TypeError, match="got bytes"):
        model.translate(SRC_LINES[0].encode())
    _, cls_dir = export_classifier_tiny(tmp_path)
    classifier = load_model(cls_dir, threads=1)
    assert classifier.classify(CLS_LINES[0]) == classifier.classify([CLS_LINES[0]])[0]


def test_scores_and_n_best_rows_a_script_can_parse(seq2seq):
    lines = SRC_LINES[:2] + ["", SRC_LINES[2]]
    stdin = "".join(line + "\n" for line in lines).encode()

    def translate(*args: str) -> list[list[str]]:
        done = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", str(seq2seq[1]), *args], input=stdin,
                              capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        return [row.split("\t") for row in done.stdout.decode().splitlines()]

    rows = translate("--n-best", "2", "--beam-size", "3")
    assert [(int(r[0]), int(r[1])) for r in rows] == [(i, k) for i in (1, 2, 3, 4) for k in (1, 2)]
    assert rows[4] == ["3", "1", "0.0000", "0.0000", ""] and rows[5] == ["3", "2", "0.0000", "0.0000", ""]
    want = load_model(seq2seq[1], threads=1).translator(beam_size=3, n_best=2).translate(lines)
    for row, (i, k) in zip(rows, [(i, k) for i in range(4) for k in range(2)]):
        if want[i].n_best[k:]:
            c = want[i].n_best[k]
            assert row[2:] == [f"{c.log_prob:.4f}", f"{c.score:.4f}", c.text]
    beam = translate("--scores", "--beam-size", "3")
    greedy = translate("--scores", "--beam-size", "1")
    assert len(beam) == len(greedy) == 4 and beam[2] == ["0.0000", "0.0000", ""]
    assert all(float(lp) == float(score) for lp, score, _ in greedy)  # no length penalty in greedy
    assert any(float(lp) < float(score) for lp, score, _ in beam)  # beam ranks by log_prob / ((5+L)/6)



@pytest.mark.parametrize(("policy", "spins"), [(None, False), ("PASSIVE", False), ("active", True)])
def test_onnxruntime_threads_spin_only_with_omp_wait_policy_active(monkeypatch, policy, spins):
    from seqkit.runtime.stepper import session_options

    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    entries = session_options(2).get_session_config_entry
    if spins:  # not set: onnxruntime's default, spinning
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
            entries("session.intra_op.allow_spinning")
    else:
        assert entries("session.intra_op.allow_spinning") == entries("session.inter_op.allow_spinning") == "0"
