"""Recipes: YAML files loaded with ``safe_load`` into typed, validated models.

Every error names the recipe file and the dotted key path (``model.decoder.attention.type``);
``key.sub=value`` overrides (values parsed as YAML) are applied before validation, so a
misspelled override key fails exactly like a misspelled key in the file.

Each section's model and defaults live with the component that uses it: ``DataConfig`` in
:mod:`seqkit.data`, ``TokenizerSection`` in :mod:`seqkit.tokenizers`, ``ModelConfig`` in
:mod:`seqkit.model_config`, ``TrainConfig`` in :mod:`seqkit.train_config`, ``SearchConfig`` in
:mod:`seqkit.search`, ``ExportSection`` in :mod:`seqkit.shortlist`. All of them are torch-free, and a recipe is validated once, into typed
sections: ``Recipe.model`` is a ``ModelConfig``, ``Recipe.train`` a ``TrainConfig``.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from seqkit.data import STREAMING_KEYS, DataConfig
from seqkit import yamlsafe
from seqkit.errors import PluginError, RecipeError, shorten
from seqkit.model_config import ModelConfig
from seqkit.registry import format_validation_error, validate_spec
from seqkit.search import SearchConfig
from seqkit.shortlist import ExportSection
from seqkit.tasks import check_task_name, entry
from seqkit.tokenizers import TokenizerSection
from seqkit.train_config import TrainConfig

class Recipe(BaseModel):
    """A whole run: task, data, tokenizer, model, training and search settings."""

    model_config = ConfigDict(extra="forbid")

    task: str  # a name in seqkit.tasks.TASKS
    description: str = ""
    # Where the run writes; relative paths resolve against the current directory.
    run_dir: str
    seed: int = Field(1, ge=0, lt=2**32)  # numpy's global seed takes 32 bits
    data: DataConfig
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    export: ExportSection = Field(default_factory=ExportSection)  # what `seqkit export` builds

    # Set by load_recipe: the directory relative data paths resolve against.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> str:
        return check_task_name(value)

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in, as plain data (what recipe.yaml stores)."""
        out = self.model_dump(mode="json", exclude={"base_dir"})
        out["model"], out["train"] = out.pop("model"), out.pop("train")  # recipe.yaml's order: they come last
        # Data paths are stored absolute so the run directory reproduces from anywhere.
        out["data"] = _absolute_data_paths(out["data"], self.base_dir)
        for spec in out["model"]["pretrained_embeddings"].values():
            if spec is not None:
                spec["path"] = str((self.base_dir / Path(spec["path"]).expanduser()).resolve())
        return out


def _absolute_data_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    data = copy.deepcopy(data)
    if not data.get("streaming"):  # keep recipe.yaml of in-memory runs as it always was
        for key in STREAMING_KEYS:
            data.pop(key, None)
    elif data.get("stream_cache"):
        data["stream_cache"] = str((base / Path(data["stream_cache"]).expanduser()).resolve())
    for split in ("train", "valid", "test"):
        files = data.get(split)
        if not files:
            continue
        for key in ("src", "tgt", "path"):
            if files.get(key):
                files[key] = str((base / files[key]).resolve())
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], yaml-parsed value)."""
    if "=" not in text:
        raise RecipeError(f"override {shorten(text)}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise RecipeError(f"override {shorten(text)}: empty key in path {shorten(key)}")
    try:
        value = yamlsafe.load(raw) if raw.strip() else ""
    except yaml.MarkedYAMLError as exc:
        raise RecipeError(f"override {shorten(text)}: value is not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, yamlsafe.YamlLimitError) as exc:
        raise RecipeError(f"override {shorten(text)}: value is not valid YAML: {exc}") from None
    return parts, value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``key.path=value`` in a copy of ``tree``; intermediate mappings are created."""
    tree = copy.deepcopy(tree)
    for text in overrides:
        parts, value = parse_override(text)
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                path = ".".join(parts[: i + 1])
                raise RecipeError(f"override {shorten(text)}: {path} is a {type(child).__name__}, not a mapping")
            node = child
        node[parts[-1]] = value
    return tree


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:  # bounded read: the path may name /dev/zero or a huge file
            raw = fh.read(yamlsafe.MAX_BYTES + 1)
        if len(raw) > yamlsafe.MAX_BYTES:
            raise RecipeError(f"{path}: larger than {yamlsafe.MAX_BYTES // 1024} KB; a recipe is a few KB")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror}") from None
    try:
        tree = yamlsafe.load(text)
    except yamlsafe.YamlLimitError as exc:
        where = f" at line {exc.line}" if exc.line else ""
        raise RecipeError(f"{path}: YAML refused{where}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise RecipeError(f"{path}: YAML syntax error at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: YAML error: {' '.join(str(exc).split())[:200]}") from None
    if tree is None:
        raise RecipeError(f"{path}: recipe is empty")
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: top level must be a mapping of sections, got {type(tree).__name__}")
    return tree


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override and validate a recipe; every plugin named in it is resolved too."""
    path = Path(path)
    tree = read_yaml(path)
    try:
        tree = apply_overrides(tree, overrides or [])
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    tree.setdefault("run_dir", str(Path("runs") / path.stem))
    return validate_recipe(tree, source=str(path), base_dir=path.resolve().parent)


def validate_recipe(tree: dict[str, Any], *, source: str, base_dir: Path) -> Recipe:
    try:
        recipe = Recipe.model_validate({**tree, "base_dir": base_dir})
    except ValidationError as exc:
        raise RecipeError(_prefixed(source, format_validation_error(exc, "", Recipe))) from None
    if entry(recipe.task).needs_valid and recipe.data.valid is None:  # train refuses it; so does `recipe check`
        raise RecipeError(_prefixed(source, f"data.valid: a validation split is required for {recipe.task} recipes"))
    _check_early_stopping_metric(recipe, source)
    if recipe.train.subword_sampling is not None and (entry(recipe.task).model != "seq2seq" or recipe.data.streaming):
        raise RecipeError(_prefixed(source, "train.subword_sampling: only translation and summarization from in-memory "
                                            "data (data.streaming's cache holds one fixed segmentation)"))
    try:
        _validate_plugins(recipe)
    except PluginError as exc:
        raise RecipeError(_prefixed(source, str(exc))) from None
    return recipe


def _check_early_stopping_metric(recipe: Recipe, source: str) -> None:
    """train.early_stopping_metric is a number of the task's validation log line (when the task
    table lists them; otherwise the Trainer checks it at the first validation)."""
    name, known = recipe.train.early_stopping_metric, entry(recipe.task).valid_metrics
    if name is not None and known and name not in known:
        guess = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        raise RecipeError(_prefixed(source, f"train.early_stopping_metric: {shorten(name)} is not a validation metric "
                                            f"of task {recipe.task!r}; expected {', '.join(known)}{hint}"))


def _validate_plugins(recipe: Recipe) -> None:
    # The torch boundary: plugins are torch modules; the recipe's sections are read without torch.
    from seqkit.tasks.common import check_model

    tok = recipe.tokenizer
    validate_spec("tokenizer", tok.source, "tokenizer.source")
    if not tok.shared and tok.target is not None:
        validate_spec("tokenizer", tok.target, "tokenizer.target")
    check_model(recipe.model, entry(recipe.task).model)
    if recipe.train.coverage_loss > 0 and recipe.model.decoder.get("coverage") is not True:
        raise PluginError("train.coverage_loss: the coverage loss needs the decoder's coverage; "
                          "set model.decoder.coverage: true (or train.coverage_loss: 0)")
    if recipe.train.oov_dropout > 0 and recipe.model.decoder.get("copy_oov") is not True:
        raise PluginError("train.oov_dropout: making source words unknown needs the extended vocabulary; "
                          "set model.decoder.copy_oov: true (or train.oov_dropout: 0)")
    if recipe.model.decoder.get("copy_oov") is True and tok.source.get("type") not in ("word", "char"):
        raise PluginError("model.decoder.copy_oov: the extended vocabulary is numbered from token strings; "
                          "it needs tokenizer.source.type word or char")
    if recipe.model.decoder.get("copy_source") is True and not tok.shared:
        # Copying adds attention mass to the target id of each source token: the ids must agree.
        raise PluginError("model.decoder.copy_source: copying source tokens needs one vocabulary for source "
                          "and target; set tokenizer.shared: true")


def _prefixed(source: str, message: str, most: int = 3) -> str:
    """``source: problem; problem; ...`` on one line (the first ``most`` problems, then a count)."""
    problems = message.splitlines()
    shown = "; ".join(problems[:most])
    more = f" (and {len(problems) - most} more problems)" if len(problems) > most else ""
    return f"{source}: {shown}{more}"


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.resolved(), sort_keys=False, allow_unicode=True)
