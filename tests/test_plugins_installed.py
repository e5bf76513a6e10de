"""Third-party plugins as a user meets them.

With the example distributions installed (CI runs ``pip install plugins/*/``): ``seqkit plugins``
lists them with distribution and version, and a recipe naming encoder ``conv`` and tokenizer
``bytes`` trains, exports, and decodes the same greedy output in the torch-free runtime as in
torch. Without them (``SEQKIT_DISABLE_PLUGIN_AUTOLOAD=1`` limits discovery to seqkit's own
plugins, as if they were uninstalled): a recipe naming them fails with the unknown-name error
listing what is available. A broken third-party plugin is listed as broken and breaks nothing
else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from seqkit import registry
from seqkit.cli import cli
from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe

CONV = "model.encoder={type: conv, embedding_dim: 16, hidden_size: 32, num_layers: 2, dropout: 0.1}"
BYTES = "tokenizer.source={type: bytes, merges: 8}"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Discovery is cached per process; each test sees the environment it sets up."""
    monkeypatch.delenv(registry.AUTOLOAD_ENV, raising=False)
    cached = registry.default_registry  # a test may monkeypatch the name itself
    cached.cache_clear()
    yield
    cached.cache_clear()


@pytest.fixture
def example_plugins():
    for module in ("seqkit_convenc", "seqkit_bytes"):
        pytest.importorskip(module, reason="example plugins not installed (CI installs them: pip install plugins/*/)")


def plugin_rows(output: str) -> dict[tuple[str, str], list[str]]:
    """`seqkit plugins` output -> {(kind, name): [distribution, version, status...]}."""
    rows = [line.split(maxsplit=4) for line in output.splitlines()[1:]]
    return {(r[0], r[1]): r[2:] for r in rows}


# -- installed ------------------------------------------------------------------------------------
def test_seqkit_plugins_lists_the_examples_with_distribution_and_version(example_plugins):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = plugin_rows(result.output)
    assert rows[("encoder", "conv")] == ["seqkit-convenc", metadata.version("seqkit-convenc"), "ok"]
    assert rows[("tokenizer", "bytes")] == ["seqkit-bytes", metadata.version("seqkit-bytes"), "ok"]
    assert rows[("encoder", "lstm")][0] == "seqkit"


def test_recipe_naming_plugins_trains_exports_and_runtime_matches_torch(example_plugins, tiny_recipe, tmp_path):
    from seqkit.runs import load_run, train_run
    from seqkit.tasks.seq2seq import translate_lines

    run_dir = tmp_path / "run-plugins"
    overrides = [CONV, BYTES, f"run_dir={run_dir}", "train.max_steps=12", "train.valid_every=6",
                 "train.progress=false", "search.strategy=greedy", "search.max_len_ratio=1.2"]
    previous = torch.get_num_threads()
    try:
        metrics = train_run(tiny_recipe, overrides, resume=False)
    finally:
        torch.set_num_threads(previous)
    assert metrics["step"] == 12 and "bleu" in metrics
    run = load_run(run_dir, "last")
    assert type(run.model.encoder).__module__ == "seqkit_convenc.encoder"
    assert type(run.tgt_tok).__module__ == "seqkit_bytes.tokenizer" and run.tgt_tok.vocab_size > 260
    lines = _valid_sources(tiny_recipe)
    want = translate_lines(run.model, run.src_tok, run.tgt_tok, run.recipe, lines, strategy="greedy",
                           device=torch.device("cpu"))
    assert any(want), "the torch model decodes only empty strings; the comparison would prove little"
    from seqkit.export import export_run
    from seqkit.runtime import load_model

    out = export_run(run_dir, tmp_path / "exported", which="last")
    assert load_model(out).translate(lines, strategy="greedy") == want


def _valid_sources(recipe: Path) -> list[str]:
    tree = load_recipe(recipe)
    return Path(tree.data.valid.src).read_text(encoding="utf-8").splitlines()[:12]


# -- broken and missing plugins ---------------------------------------------------------------------
@dataclass
class FakeDist:
    name: str
    version: str = "0.3.1"

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


class BrokenEntryPoint:
    """An installed encoder whose module fails to import (a missing dependency)."""

    name, value, dist = "wavenet", "seqkit_wavenet.encoder:WaveNetEncoder", FakeDist("seqkit-wavenet")

    def load(self):
        raise ImportError("No module named 'torchaudio'")


@pytest.fixture
def with_broken_plugin(monkeypatch):
    def entry_points(group):
        found = list(metadata.entry_points(group=group))
        return found + [BrokenEntryPoint()] if group == "seqkit.encoders" else found

    broken = registry.Registry(entry_points)
    monkeypatch.setattr(registry, "default_registry", lambda: broken)


def test_broken_plugin_is_listed_as_broken_and_others_still_work(with_broken_plugin, tiny_recipe):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = plugin_rows(result.output)
    dist, version, status = rows[("encoder", "wavenet")]
    assert (dist, version) == ("seqkit-wavenet", "0.3.1")
    assert status.startswith("broken: ") and "ImportError: No module named 'torchaudio'" in status
    assert all(rows[key][-1] == "ok" for key in rows if key != ("encoder", "wavenet"))
    assert load_recipe(tiny_recipe).model.encoder["type"] == "gru"  # recipes not naming it load
    with pytest.raises(RecipeError) as err:
        load_recipe(tiny_recipe, ["model.encoder={type: wavenet}"])
    message = str(err.value)
    assert "model.encoder.type" in message and "'seqkit-wavenet'" in message and "torchaudio" in message


def test_uninstalled_plugins_give_the_unknown_name_error_with_available_names(monkeypatch, tiny_recipe):
    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    with pytest.raises(RecipeError) as err:
        load_recipe(tiny_recipe, [CONV])
    assert "model.encoder.type: unknown encoder 'conv'" in str(err.value)
    assert "available: gru (seqkit), lstm (seqkit), rnn (seqkit)" in str(err.value)
    with pytest.raises(RecipeError) as err:
        load_recipe(tiny_recipe, [BYTES])
    assert "tokenizer.source.type: unknown tokenizer 'bytes'" in str(err.value)
    assert "available: char (seqkit), sentencepiece (seqkit), word (seqkit)" in str(err.value)


def test_uninstalled_plugin_fails_seqkit_train_with_one_line(tiny_recipe):
    env = {**os.environ, registry.AUTOLOAD_ENV: "1"}
    out = subprocess.run([sys.executable, "-m", "seqkit.cli", "train", str(tiny_recipe), "--set", CONV],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and "unknown encoder 'conv'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tiny_recipe.parent / "run").exists()
