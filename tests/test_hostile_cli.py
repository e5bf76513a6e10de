"""Issue 22, items 7, 9, 10 and 11 at the command line: one output line per input line, errors
located by line and absolute byte, and one `error:` line (never a traceback) for hostile values."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file
from test_export import export_tiny, make_run  # tests/ is on sys.path (no __init__.py)
from test_hostile_runtime import reseal

from seqkit import checkpoint as ckpt
from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe
from seqkit.rundir import sha256_file

ROOT = Path(__file__).resolve().parents[1]
TRANSLATE = ROOT / "recipes" / "translate.yaml"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    return export_tiny(tmp_path_factory.mktemp("cli"), enc="gru", dec="gru")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("lm"), task="lm", dec="gru")


def seqkit(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *map(str, args)], input=stdin, capture_output=True,
                          timeout=300)


def one_error_line(proc: subprocess.CompletedProcess, status: tuple[int, ...] = (1,)) -> str:
    """The one ``error:`` line (status 1; usage errors found by click keep status 2)."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode in status, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    return lines[0]


@functools.lru_cache(maxsize=None)
def flag(command: str, *spellings: str) -> str:
    """The spelling `seqkit COMMAND --help` shows (flags are being renamed on main)."""
    from click.testing import CliRunner

    from seqkit.cli import cli

    text = CliRunner().invoke(cli, [command, "--help"]).output
    return next(s for s in spellings if s in text)


# -- item 9: one output line per input line ------------------------------------------------------
@pytest.mark.parametrize("which", ["exported", "run"])
def test_carriage_return_does_not_split_a_line(exported, which):
    model = exported[1] if which == "exported" else exported[0]
    proc = seqkit("translate", model, stdin="Ein Mann\rEine Frau\nZwei Hunde\n".encode())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.decode().split("\n")) == 3  # two lines, each ending in \n
    weird = "a\u2028b\x0cc\x1cd\x85e\nf\n"  # str.splitlines() would split every one of these
    proc = seqkit("translate", model, stdin=weird.encode())
    assert proc.returncode == 0 and proc.stdout.decode().count("\n") == 2


# -- item 11: invalid UTF-8 is located by line and absolute byte ----------------------------------
def test_invalid_utf8_on_stdin_names_line_and_absolute_byte(exported):
    good = b"a b c d e f g h i j k l m n o p q r s t u v w x y z\n" * 12_535  # 651,820 bytes
    data = good + b"a b\xff\n"
    line = one_error_line(seqkit("translate", exported[1], stdin=data))
    assert line == "error: stdin: line 12536 is not UTF-8 text (invalid start byte at byte 4 of the line)"


# -- item 10: one error line ---------------------------------------------------------------------
def test_translate_output_is_a_directory(exported, tmp_path):
    out = tmp_path / "outdir"
    out.mkdir()
    line = one_error_line(seqkit("translate", exported[1], flag("translate", "--output", "-O"), out, stdin=b"a b\n"), (1, 2))
    assert str(out) in line and "is a directory" in line.lower()
    assert not list(tmp_path.glob(".outdir.tmp-*"))


def test_translate_output_is_written_whole_or_not_at_all(exported, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("previous\n")
    proc = seqkit("translate", exported[1], flag("translate", "--output", "-O"), out, stdin=b"a b\n\xff\n")
    one_error_line(proc)
    assert out.read_text() == "previous\n"  # a failed run leaves the old output untouched


def test_export_under_a_file(exported, tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_error_line(seqkit("export", exported[0], "-o", tmp_path / "file" / "model"))
    assert str(tmp_path / "file" / "model") in line


def test_bogus_device(exported):
    line = one_error_line(seqkit("translate", exported[0], "--device", "bogus", stdin=b"a b\n"))
    assert line == "error: --device: unknown device 'bogus'; expected auto, cpu, cuda, cuda:N or mps"


def test_nan_weights_are_named(tmp_path):
    run_dir = make_run(tmp_path, enc="gru", dec="gru")
    path = ckpt.resolve_checkpoint(run_dir, "best")
    tensors = load_file(str(path / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, str(path / "model.safetensors"))
    meta = json.loads((path / "state.json").read_text())
    meta["sha256"]["model.safetensors"] = sha256_file(path / "model.safetensors")
    (path / "state.json").write_text(json.dumps(meta))
    line = one_error_line(seqkit("translate", run_dir, stdin=b"a b\n"))
    assert "NaN or infinite" in line and name in line


def test_generate_seed_and_max_tokens(lm_run):
    for args in (["--seed", "-1"], [flag("generate", "--max-tokens", "--max-chars"), str(10**12)]):
        one_error_line(seqkit("generate", lm_run, *args), (1, 2))


def test_train_without_torch_names_the_extra(tmp_path):
    script = ("import sys\nsys.modules['torch'] = None\nfrom seqkit.cli import main\n"
              f"sys.argv = ['seqkit', 'train', {str(TRANSLATE)!r}]\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert "seqkit[train]" in one_error_line(proc)


@pytest.mark.parametrize("override,where", [
    ("train.optimizer.betas=[2,5]", "train.optimizer.betas"),
    ("train.optimizer.weight_decay=1.0e308", "train.optimizer.weight_decay"),
    ("seed=-1", "seed"),
    (f"seed={2**70}", "seed"),
    ("search.max_len_ratio=.inf", "search.max_len_ratio"),
    ("search.length_penalty=.nan", "search.length_penalty"),
    ("search.length_penalty=.inf", "search.length_penalty"),
    ("search.length_penalty=-1.0e308", "search.length_penalty"),
    ("train.num_threads=1000000", "train.num_threads"),
    ("model.encoder.hidden_size=1000000000", "model.encoder.hidden_size"),
    ("model.decoder.num_layers=100000", "model.decoder.num_layers"),
    ("model.decoder.hidden_size=60000", "model: "),
    ("train.device=bogus", "train.device"),
    ("data.valid=null", "data.valid"),  # train refused it only after loading the data
])
def test_recipe_check_refuses_what_train_would(override, where):
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(TRANSLATE, [override])
    assert time.perf_counter() - start < 30  # num_layers=100000 took minutes before
    assert f"translate.yaml: {where}" in str(info.value) and "\n" not in str(info.value)


def test_recipe_check_cli_one_line():
    one_error_line(seqkit("recipe", "check", TRANSLATE, flag("train", "--set", "-o"), "train.optimizer.betas=[2,5]"))


# -- item 7: a catastrophic tokenizer pattern -----------------------------------------------------
def test_backtracking_pattern_is_refused(tmp_path):
    tree = yaml.safe_load(TRANSLATE.read_text())
    tree["tokenizer"] = {"source": {"type": "word", "pattern": "(a|aa)+b"}}
    tree["data"] = {k: ({kk: str(ROOT / "recipes" / vv) for kk, vv in v.items()} if isinstance(v, dict) else v)
                    for k, v in tree["data"].items()}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(RecipeError, match=r"tokenizer.source.pattern: .*exponential time"):
        load_recipe(path)


def test_backtracking_pattern_in_an_exported_model_is_refused(exported, tmp_path):
    root = tmp_path / "model"
    shutil.copytree(exported[1], root)
    for side in ("src", "tgt"):
        tok = root / "tokenizer" / side / "tokenizer.json"
        payload = json.loads(tok.read_text())
        payload["config"]["pattern"] = "(a|aa)+b"
        tok.write_text(json.dumps(payload))
    reseal(root)
    start = time.perf_counter()
    line = one_error_line(seqkit("translate", root, stdin=b"a" * 5000 + b"\n"))
    assert "exponential time" in line and time.perf_counter() - start < 60
