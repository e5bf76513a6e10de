"""Built-in tokenizers (char, word, sentencepiece) and the recipe's ``tokenizer:`` section.

Tokenizers are plugins of kind ``tokenizer`` (entry-point group ``seqkit.tokenizers``), resolved
through :mod:`seqkit.registry` like any third-party one. Nothing here imports torch: the
runtime loads tokenizers from an exported model directory.

A run directory holds ``tokenizer/src/`` and ``tokenizer/tgt/`` (language models: ``tgt``
only), each with a ``tokenizer.json`` naming the plugin ``type``. With ``shared: true`` both
directories hold the same tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from seqkit.contracts import Tokenizer
from seqkit.errors import DataError, ModelError, PluginError
from seqkit.registry import get_plugin, validate_spec
from seqkit.tokenizers.base import TOKENIZER_FILE, read_tokenizer_json

__all__ = ["TokenizerSection", "build_tokenizers", "save_tokenizers", "load_tokenizer", "load_tokenizers"]


def _default_spec() -> dict[str, Any]:
    return {"type": "sentencepiece"}


class TokenizerSection(BaseModel):
    """The recipe's ``tokenizer:`` section.

    ``source`` and ``target`` are plugin specs: ``type`` plus that plugin's Config keys
    (e.g. ``{type: sentencepiece, vocab_size: 8000}``). ``shared: true`` trains one tokenizer
    on source and target text together and uses ``source`` for it; ``target`` is then not
    allowed. With ``shared: false`` the target side uses ``target`` (default: same spec as
    ``source``, trained on target text only).
    """

    model_config = ConfigDict(extra="forbid")

    shared: bool = True
    source: dict[str, Any] = Field(default_factory=_default_spec)
    target: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _target_only_when_separate(self) -> TokenizerSection:
        if self.shared and self.target is not None:
            raise ValueError("target is only used with shared: false (a shared tokenizer uses source)")
        return self

    def target_spec(self) -> tuple[dict[str, Any], str]:
        """(spec, key name) the target side is built from."""
        if self.shared or self.target is None:
            return self.source, "source"
        return self.target, "target"


def build_tokenizers(
    section: TokenizerSection,
    src_texts: list[str] | None,
    tgt_texts: list[str],
    workdir: Path,
    path: str = "tokenizer",
) -> tuple[Tokenizer | None, Tokenizer]:
    """Validate the specs and train (src, tgt) tokenizers; ``src_texts=None`` -> (None, tgt).

    Errors start with the recipe path of the offending spec (e.g. ``tokenizer.source``).
    """
    workdir = Path(workdir)
    if src_texts is None:
        spec, key = section.target_spec()
        return None, _train(spec, f"{path}.{key}", tgt_texts, workdir / "tgt")
    if section.shared:
        shared = _train(section.source, f"{path}.source", list(src_texts) + list(tgt_texts), workdir / "shared")
        return shared, shared
    src = _train(section.source, f"{path}.source", src_texts, workdir / "src")
    spec, key = section.target_spec()
    return src, _train(spec, f"{path}.{key}", tgt_texts, workdir / "tgt")


def _train(spec: dict[str, Any], path: str, texts: list[str], workdir: Path) -> Tokenizer:
    cls, config = validate_spec("tokenizer", spec, path)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return cls.train(texts, config, workdir)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def save_tokenizers(directory: Path, src: Tokenizer | None, tgt: Tokenizer) -> None:
    """Write ``directory/src/`` (skipped when src is None) and ``directory/tgt/``."""
    directory = Path(directory)
    if src is not None:
        src.save(directory / "src")
    tgt.save(directory / "tgt")


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load the tokenizer saved in ``directory`` through the plugin its tokenizer.json names."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"tokenizer directory not found: {directory}")
    name = read_tokenizer_json(directory)["type"]
    try:
        cls = get_plugin("tokenizer", name)
    except PluginError as exc:
        raise ModelError(f"{directory / TOKENIZER_FILE}: {exc}") from exc
    return cls.load(directory)


def load_tokenizers(directory: Path) -> tuple[Tokenizer | None, Tokenizer]:
    """(src or None when ``directory/src`` is absent, tgt) as written by :func:`save_tokenizers`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"tokenizer directory not found: {directory}")
    src_dir = directory / "src"
    src = load_tokenizer(src_dir) if src_dir.exists() else None
    return src, load_tokenizer(directory / "tgt")
