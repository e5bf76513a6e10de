"""Recipe loading: path-qualified errors, overrides, YAML syntax errors, the shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seqkit.errors import RecipeError
from seqkit.recipe import apply_overrides, load_recipe, parse_override

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    recipe = load_recipe(path)
    assert recipe.task in ("translation", "summarization", "lm", "classification")
    resolved = recipe.resolved()
    for split in ("train", "valid", "test"):
        files = resolved["data"].get(split) or {}
        for key in ("src", "tgt", "path"):
            if files.get(key):
                assert Path(files[key]).is_file(), f"{path.name}: data.{split}.{key} -> {files[key]} missing"


def base_tree() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "translate.yaml").read_text())


def test_misspelled_attention_gives_path_and_suggestion(tmp_path):
    tree = base_tree()
    tree["model"]["decoder"]["attention"] = {"type": "luong-genral"}
    tree["data"] = {k: v if not isinstance(v, dict) else {kk: str(ROOT / "recipes" / vv) for kk, vv in v.items()}
                    for k, v in tree["data"].items()}
    path = write(tmp_path, yaml.safe_dump(tree))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert msg.count("\n") == 0
    assert "model.decoder.attention.type" in msg and "did you mean 'luong-general'?" in msg
    assert str(path) in msg


def test_wrong_type_names_path_and_expected_type():
    with pytest.raises(RecipeError) as err:
        load_recipe(ROOT / "recipes" / "translate.yaml", ["train.batch_tokens=lots"])
    msg = str(err.value)
    assert "train.batch_tokens" in msg and "integer" in msg


def test_unknown_key_in_override_is_an_error():
    with pytest.raises(RecipeError) as err:
        load_recipe(ROOT / "recipes" / "translate.yaml", ["train.optimiser.lr=0.1"])
    assert "train.optimiser: unknown key; did you mean 'optimizer'?" in str(err.value)


def test_override_values_are_yaml():
    recipe = load_recipe(ROOT / "recipes" / "translate.yaml",
                         ["train.max_time=90s", "model.decoder.input_feeding=true", "search.beam_size=3"])
    assert recipe.train.max_time == 90.0
    assert recipe.model.decoder["input_feeding"] is True
    assert recipe.search.beam_size == 3


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "task: translation\ndata: {train: [\n")
    with pytest.raises(RecipeError, match=r"line \d+, column \d+"):
        load_recipe(path)


@pytest.mark.parametrize("text,needle", [
    ("", "recipe is empty"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_degenerate_files(tmp_path, text, needle):
    with pytest.raises(RecipeError, match=needle):
        load_recipe(write(tmp_path, text))


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_negative_size_rejected():
    with pytest.raises(RecipeError, match="model.encoder.hidden_size"):
        load_recipe(ROOT / "recipes" / "translate.yaml", ["model.encoder.hidden_size=-4"])


def test_override_parsing():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(RecipeError):
        parse_override("novalue")
    with pytest.raises(RecipeError, match="not a mapping"):
        apply_overrides({"a": 3}, ["a.b=1"])


class _CountingValidator:
    """Stands in for a pydantic model's ``__pydantic_validator__``: counts the validations that
    start at this model (a section validated inside its parent counts as the parent's)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def validate_python(self, *args, **kwargs):
        self.calls += 1
        return self.inner.validate_python(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_one_train_validates_each_section_once(tiny_recipe, monkeypatch):
    """`seqkit train` reads the recipe once into typed sections; nothing downstream re-validates
    ``model:`` or ``train:`` (it was 5 and 4 times when they were dicts behind properties)."""
    from click.testing import CliRunner

    from seqkit.cli import cli
    from seqkit.model_config import ModelConfig
    from seqkit.recipe import Recipe
    from seqkit.train_config import TrainConfig

    counters = {}
    for cls in (Recipe, ModelConfig, TrainConfig):
        counters[cls.__name__] = _CountingValidator(cls.__pydantic_validator__)
        monkeypatch.setattr(cls, "__pydantic_validator__", counters[cls.__name__])
    result = CliRunner().invoke(cli, ["train", str(tiny_recipe), "--set", "train.max_steps=2",
                                      "--set", "train.valid_every=2"])
    assert result.exit_code == 0, result.output
    assert Path(yaml.safe_load((tiny_recipe.parent / "run" / "recipe.yaml").read_text())["run_dir"]).name == "run"
    # The recipe is validated once; its model and train sections inside it, never on their own.
    assert {name: c.calls for name, c in counters.items()} == {"Recipe": 1, "ModelConfig": 0, "TrainConfig": 0}
