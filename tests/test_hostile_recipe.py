"""Issue 22, items 1, 7, 10 and 12 for recipes: hostile YAML and values at the edges of every
numeric field are refused at load time with one ``error:`` line, within a memory and time bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TRANSLATE = ROOT / "recipes" / "translate.yaml"


def billion_laughs() -> str:
    """Nine levels of nine aliases: 1 KB of YAML, 9^9 (387 million) strings once expanded."""
    lines = ["task: translation", "a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("description: *a9")
    return "\n".join(lines) + "\n"


# Run in a fresh interpreter so that the peak RSS is the loader's own (after the imports and one
# ordinary load, which pull in torch), not whatever this pytest process did before.
_MEASURE = r"""
import json, resource, sys, time, tracemalloc
from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe
load_recipe(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
try:
    load_recipe(sys.argv[2])
    message = None
except RecipeError as exc:
    message = str(exc)
seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "traced_peak": peak, "rss_growth_kb": after - before, "message": message}))
"""


@pytest.mark.parametrize("name,text", [
    ("alias-bomb", billion_laughs()),
    ("deep-flow", "task: translation\nmodel: " + "[" * 50_000 + "]" * 50_000 + "\n"),
    ("deep-mixed", "task: translation\nmodel: " + "[a, {b: " * 25_000 + "}]" * 25_000 + "\n"),
    ("deep-block", "task: translation\n" + "".join(" " * i + f"k{i}:\n" for i in range(1000)) + "\n"),
])
def test_adversarial_yaml_is_refused_within_bounds(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(TRANSLATE), str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["message"] is not None and got["message"].startswith(f"{path}: YAML refused")
    assert "\n" not in got["message"] and len(got["message"]) < 300
    assert got["seconds"] < 2.0, got
    assert got["traced_peak"] < 200 * 2**20, got
    assert got["rss_growth_kb"] < 200 * 1024, got


def test_alias_bomb_cli_one_error_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "seqkit.cli", "recipe", "check", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "expands to more than" in proc.stderr


def test_long_value_is_not_echoed_whole():
    # Before: "(got 'xxxx...')" echoed the whole megabyte back.
    with pytest.raises(RecipeError) as info:
        load_recipe(TRANSLATE, ["train.batch_tokens=" + "x" * 1_000_000])
    assert len(str(info.value)) < 400 and "1000000 characters" in str(info.value)


def test_long_plugin_name_is_not_echoed_whole():
    with pytest.raises(RecipeError) as info:
        load_recipe(TRANSLATE, ["model.encoder.type=" + "q" * 100_000])
    assert len(str(info.value)) < 600


def test_duplicate_key_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(TRANSLATE.read_text(encoding="utf-8") + "\nseed: 7\nseed: 8\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"YAML refused at line \d+: duplicate key 'seed'"):
        load_recipe(path)


def test_override_alias_bomb_is_refused():
    # Six levels (9^6 = 531,441 strings): small enough to be harmless on the old code, which
    # accepted it and echoed the whole expansion back in its error message.
    levels = ["&a0 [" + ",".join(["x"] * 9) + "]"]
    levels += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 6)]
    with pytest.raises(RecipeError, match="override .*expands to more than 100000 values"):
        load_recipe(TRANSLATE, ["description=[" + ", ".join(levels) + "]"])


def test_huge_file_is_not_read_whole(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"task: translation\n" + b"#" * (2 << 20) + b"\n")
    with pytest.raises(RecipeError, match="larger than 1024 KB"):
        load_recipe(path)


def test_yaml_tags_still_refused(tmp_path):
    path = tmp_path / "tag.yaml"
    path.write_text("task: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(RecipeError):
        load_recipe(path)


def test_plain_recipe_still_loads():
    assert load_recipe(TRANSLATE).task == "translation"
    assert yaml.safe_load(TRANSLATE.read_text())["task"] == "translation"
