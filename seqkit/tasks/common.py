"""What the task modules share on the torch side: the one place a model is built, the recipe's
model check, host-to-device batches and the tokenizers of a pair (or text) corpus."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from seqkit.contracts import MAX_PARAMETERS
from seqkit.errors import PluginError, SeqkitError
from seqkit.model_config import ModelConfig
from seqkit.models import build_model, validate_model_specs
from seqkit.rundir import TOKENIZER_DIR
from seqkit.tokenizers import build_tokenizers, load_tokenizers, save_tokenizers

log = logging.getLogger("seqkit")


@dataclass(frozen=True)
class ModelSizes:
    """What a model's shape takes from its vocabularies: (source vocabulary or None, target
    vocabulary or number of classes, padding id)."""

    src_vocab: int | None
    tgt_vocab: int
    pad_id: int


@dataclass(frozen=True)
class Vocab:
    """A run's tokenizers (``src_tok`` None for a language model, ``tgt_tok`` None for a
    classifier), a classifier's labels, and the model sizes they give."""

    src_tok: Any
    tgt_tok: Any
    labels: list[str] | None
    sizes: ModelSizes

    def describe(self) -> str:
        """What the training log adds after the model's class name."""
        return f", {len(self.labels)} classes" if self.labels is not None else ""


def new_model(cfg: ModelConfig, kind: str, sizes: ModelSizes, device: torch.device | str) -> torch.nn.Module:
    """The model of ``kind`` for ``cfg`` with parameters on ``device`` (the meta device: shapes
    only). Training, reopening a run and the recipe check all build their model here."""
    if torch.device(device).type == "meta":
        with torch.device("meta"):
            return build_model(cfg, kind, sizes.src_vocab, sizes.tgt_vocab, sizes.pad_id)
    # Initialized on the CPU, then moved: the CPU generator draws the weights, so a seed gives
    # the same initial model on every device.
    return build_model(cfg, kind, sizes.src_vocab, sizes.tgt_vocab, sizes.pad_id).to(device)


def check_model(cfg: ModelConfig, kind: str) -> None:
    """Resolve the plugin specs and check the sizes, so a bad recipe fails when it is loaded."""
    validate_model_specs(cfg, kind)
    # Size constraints (luong-dot, bridge: copy, share_embeddings) only show when the modules
    # are built; on the meta device that costs no memory and no time.
    try:
        model = new_model(cfg, kind, ModelSizes(8, 8, 0), "meta")
    except SeqkitError:
        raise
    except Exception:  # noqa: BLE001 - a plugin that cannot build on meta fails at the real build
        return
    # With an 8-token vocabulary this undercounts embeddings and the output layer, which the
    # recipe cannot size yet (the tokenizer is trained later); the recurrent layers dominate.
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > MAX_PARAMETERS:
        raise PluginError(f"model: {n_params:.3g} parameters before the vocabulary is counted (limit "
                          f"{MAX_PARAMETERS:.0e}); reduce model.encoder/decoder hidden_size or num_layers")


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host batch as a tensor on ``device``. On CUDA it is staged in pinned (page-locked)
    memory and copied without blocking, so the copy overlaps the GPU's queued work; on the CPU
    the tensor shares the array's memory."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def pair_tokenizers(recipe: Any, run_dir: Path, texts: Callable[[], tuple[list[str] | None, list[str]]],
                    resume: bool) -> tuple[Any, Any]:
    """(source, target) tokenizers in ``run_dir/tokenizer``, unless the run already has them
    trained on ``texts()``: (source texts, target texts); source None: a language model's
    target tokenizer only."""
    tok_dir = run_dir / TOKENIZER_DIR
    if resume or (tok_dir / "tgt" / "tokenizer.json").exists():
        return load_tokenizers(tok_dir)
    src_texts, tgt_texts = texts()
    log.info("training tokenizers")
    workdir = run_dir / "tokenizer.work"
    src, tgt = build_tokenizers(recipe.tokenizer, src_texts, tgt_texts, workdir)
    save_tokenizers(tok_dir, src, tgt)
    shutil.rmtree(workdir, ignore_errors=True)
    return load_tokenizers(tok_dir)


def log_model(model: torch.nn.Module, what: str = "") -> None:
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s%s, %.2fM parameters", type(model).__name__, what, n_params / 1e6)
