"""The fuzz part of issue 22: every numeric recipe field at its edges, plus the long profile.

The default run keeps each hypothesis test to a few dozen examples (``SEQKIT_FUZZ_EXAMPLES``,
default 25-40; the whole fuzz part of the default run takes well under a minute); ``pytest -m
slow`` reruns every fuzz test of the hostile-input suite with 400 examples each."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from seqkit.data import DataConfig
from seqkit.errors import RecipeError
from seqkit.nn.decoders import RNNDecoder
from seqkit.nn.encoders import RNNEncoder
from seqkit.train_config import OptimizerConfig, ScheduleConfig
from seqkit.recipe import load_recipe
from seqkit.search import SearchConfig
from seqkit.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TRANSLATE = ROOT / "recipes" / "translate.yaml"
EXAMPLES = int(os.environ.get("SEQKIT_FUZZ_EXAMPLES", "40"))


def numeric_fields(model: type[BaseModel], prefix: str) -> list[str]:
    """Dotted recipe keys of every int/float field of ``model`` (optional ones included)."""
    out = []
    for name, field in model.model_fields.items():
        text = str(field.annotation)
        if any(t in text for t in ("int", "float")) and "dict" not in text and "tuple" not in text:
            out.append(f"{prefix}.{name}")
    return out


FIELDS = (["seed"] + numeric_fields(SearchConfig, "search") + numeric_fields(TrainConfig, "train")
          + numeric_fields(OptimizerConfig, "train.optimizer") + numeric_fields(ScheduleConfig, "train.schedule")
          + [f for f in numeric_fields(DataConfig, "data") if "len" in f]
          + numeric_fields(RNNEncoder.Config, "model.encoder") + numeric_fields(RNNDecoder.Config, "model.decoder")
          + ["train.optimizer.betas"])
EDGES = [0, -1, 1, 2, 2**31, 2**63, 2**70, -(2**63), 1e308, -1e308, 1e-308, float("nan"), float("inf"), float("-inf"),
         0.5, 10**6, 10**9]


def yaml_value(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, float):
        return repr(value) if "e" not in repr(value) or "." in repr(value) else repr(value).replace("e", ".0e")
    return str(value)


def test_field_list_covers_the_sections():
    assert {"search.beam_size", "search.length_penalty", "train.num_threads", "train.optimizer.weight_decay",
            "model.encoder.hidden_size", "model.decoder.num_layers", "seed"} <= set(FIELDS)


@settings(max_examples=EXAMPLES, deadline=None)
@given(field=st.sampled_from(FIELDS), value=st.one_of(st.sampled_from(EDGES), st.floats(), st.integers(-2**80, 2**80)))
def test_every_numeric_field_at_its_edges(field, value):
    override = f"{field}={yaml_value(value) if field != 'train.optimizer.betas' else f'[{yaml_value(value)}, 0.9]'}"
    start = time.perf_counter()
    try:
        recipe = load_recipe(TRANSLATE, [override])
    except RecipeError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 800
    else:
        # Accepted: finite, and the resolved recipe dumps (what train writes into the run).
        resolved = recipe.resolved()
        node: Any = resolved
        for part in field.split("."):
            node = node[part]
        for v in node if isinstance(node, list) else [node]:
            assert v is None or math.isfinite(v), override
    assert time.perf_counter() - start < 20, override  # generous: the CPU is shared


@pytest.mark.slow
def test_long_fuzz_profile():
    files = sorted(str(p) for p in (ROOT / "tests").glob("test_hostile_*.py"))
    env = {**os.environ, "SEQKIT_FUZZ_EXAMPLES": "400"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-k", "fuzz", "-m", "not slow", *files],
                          env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:]
