"""Hypothesis fuzzing of the recipe loader: arbitrary YAML trees and overrides either load or
raise seqkit's own RecipeError, never anything else."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqkit.errors import RecipeError
from seqkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TRANSLATE = ROOT / "recipes" / "translate.yaml"

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
keys = st.one_of(st.sampled_from(["task", "data", "model", "train", "search", "tokenizer", "encoder",
                                  "decoder", "type", "attention", "lr", "run_dir", "src", "tgt"]),
                 st.text(max_size=8))
trees = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=3),
                                                         st.dictionaries(keys, children, max_size=4)),
                     max_leaves=12)
dotted = st.lists(st.sampled_from(["train", "model", "decoder", "encoder", "attention", "type", "lr",
                                   "optimizer", "search", "beam_size", "data", "x"]), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_arbitrary_yaml_trees(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    try:
        load_recipe(path)
    except RecipeError as exc:
        assert str(exc).startswith(str(path))


@settings(max_examples=60, deadline=None)
@given(parts=dotted, value=st.text(max_size=10))
def test_arbitrary_overrides(parts, value):
    try:
        recipe = load_recipe(TRANSLATE, [".".join(parts) + "=" + value])
    except RecipeError:
        return
    assert recipe.task == "translation"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_recipe(path)
    except RecipeError:
        pass
