"""Sequence classification: a text to one of a fixed set of labels.

Data: any pair format of :mod:`seqkit.data` (``tsv``: ``text<TAB>label``); the target string is
the label. Labels are the distinct training targets, given ids in sorted order (numerically
when they are all integers) and written to ``RUN_DIR/labels.json`` (a JSON list: index = class
id), which is what evaluation and prediction read back. A label in the valid or test split
that training never saw is a :class:`~seqkit.errors.DataError`.

The run directory holds the text tokenizer in ``tokenizer/src/`` only (built from
``tokenizer.source`` on the training texts; there is no target tokenizer). The model is
:class:`seqkit.models.Classifier`: an encoder plugin, pooling (``model.head.pooling``), dropout
and a linear layer. Training minimizes cross entropy with ``train.label_smoothing``; validation
reports plain cross entropy (``loss``, nats per example), ``accuracy`` and ``macro_f1`` (0-1).
Sources are encoded like seq2seq sources (ids, cut to ``data.max_src_len - 1``, then eos);
longer training examples are dropped unless ``data.truncate_src``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml

from seqkit.batching import bucket_batches
from seqkit.errors import CheckpointError, DataError
from seqkit.loss import smoothed_loss
from seqkit.tasks import to_device

log = logging.getLogger("seqkit")

LABELS_FILE = "labels.json"
_INTEGER = re.compile(r"^-?\d+$")


# -- labels -------------------------------------------------------------------------------------
def build_labels(targets: Sequence[str]) -> list[str]:
    """Distinct labels in id order: numeric order when all are integers, else string order."""
    distinct = set(targets)
    if len(distinct) < 2:
        raise DataError(f"data.train: classification needs at least 2 distinct labels, found {sorted(distinct)}")
    if all(_INTEGER.match(label) for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def label_ids(targets: Sequence[str], labels: Sequence[str], split: str) -> np.ndarray:
    """Targets -> int64 class ids; DataError naming the split for a label not in ``labels``."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(targets) - set(index))
    if unknown:
        raise DataError(f"data.{split}: label(s) {unknown} never occur in the training data (labels: {list(labels)})")
    return np.array([index[t] for t in targets], dtype=np.int64)


def save_labels(run_dir: Path, labels: Sequence[str]) -> None:
    from seqkit.checkpoint import atomic_write_text

    atomic_write_text(Path(run_dir) / LABELS_FILE, json.dumps(list(labels), ensure_ascii=False, indent=1) + "\n")


def load_labels(run_dir: Path) -> list[str]:
    path = Path(run_dir) / LABELS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a classification run writes it when training starts)")
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from None
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)):
        raise CheckpointError(f"{path}: expected a JSON list of at least 2 label strings")
    return labels


# -- building the task ----------------------------------------------------------------------------
def prepare_text_tokenizer(recipe: Any, run_dir: Path, texts: Sequence[str], resume: bool) -> Any:
    """The text tokenizer in ``run_dir/tokenizer/src`` (trained on ``texts`` unless it exists)."""
    from seqkit.registry import validate_spec
    from seqkit.tokenizers import load_tokenizer

    tok_dir = Path(run_dir) / "tokenizer" / "src"
    if resume or (tok_dir / "tokenizer.json").exists():
        return load_tokenizer(tok_dir)
    cls, config = validate_spec("tokenizer", recipe.tokenizer.source, "tokenizer.source")
    workdir = Path(run_dir) / "tokenizer.work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = cls.train(list(texts), config, workdir)
    except DataError as exc:
        raise DataError(f"tokenizer.source: {exc}") from exc
    tokenizer.save(tok_dir)
    shutil.rmtree(workdir, ignore_errors=True)
    return load_tokenizer(tok_dir)


def build_classify_task(recipe: Any, run_dir: Path, resume: bool, device: torch.device, train: Any,
                        valid: Any | None) -> ClassifyTask:
    """What :func:`seqkit.runs.build_task` returns for ``task: classification``."""
    from seqkit.models import build_model

    if valid is None:
        raise DataError("data.valid: a validation split is required for classification recipes")
    if resume:
        labels = load_labels(run_dir)
    else:
        labels = build_labels(train.tgt)
        save_labels(run_dir, labels)
    tokenizer = prepare_text_tokenizer(recipe, run_dir, train.src, resume)
    model = build_model(recipe.model, "classification", tokenizer.vocab_size, len(labels), tokenizer.pad_id)
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: Classifier, %d classes, %.2fM parameters", len(labels), n_params / 1e6)
    return ClassifyTask(recipe, model, tokenizer, labels, train, valid, device)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_len: int) -> tuple[list[list[int]], np.ndarray]:
    """(ids per text as the model sees them, truncated flags (N,) bool)."""
    from seqkit.inference import encode_source

    pairs = [encode_source(tokenizer, text, max_len) for text in texts]
    return [ids for ids, _ in pairs], np.array([t for _, t in pairs], dtype=bool)


def _tensors(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    from seqkit.inference import pad_batch

    src, lengths = pad_batch(rows, pad_id)
    return to_device(src, device), torch.from_numpy(lengths)  # packing wants lengths on CPU


class ClassifyTask:
    """The Trainer's adapter for ``task: classification``: token-budget batches of texts."""

    def __init__(self, recipe: Any, model: torch.nn.Module, tokenizer: Any, labels: list[str], train: Any,
                 valid: Any, device: torch.device):
        self.recipe, self.model, self.device = recipe, model, device
        self.tokenizer, self.labels = tokenizer, labels
        self.train_cfg = recipe.train
        data = recipe.data
        ids, truncated = encode_texts(tokenizer, train.src, data.max_src_len)
        y = label_ids(train.tgt, labels, "train")
        keep = np.ones(len(ids), dtype=bool) if data.truncate_src else ~truncated
        if not keep.any():
            raise DataError(f"data.train: no example fits data.max_src_len={data.max_src_len}")
        if not keep.all():
            log.info("dropped %d of %d training examples longer than data.max_src_len", int((~keep).sum()), len(ids))
        self.src_ids = [row for row, k in zip(ids, keep) if k]
        self.y = y[keep]
        self.src_len = np.array([len(row) for row in self.src_ids])
        self.valid_ids, _ = encode_texts(tokenizer, valid.src, data.max_src_len)
        self.valid_y = label_ids(valid.tgt, labels, "valid")
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None

    def batches(self, epoch: int, seed: int) -> list[np.ndarray]:
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            order = bucket_batches(self.src_len, np.zeros_like(self.src_len), self.train_cfg.batch_tokens,
                                   shuffle=True, seed=seed, epoch=epoch)
            self._epoch_batches = (epoch, order)
        return self._epoch_batches[1]

    def end_epoch(self) -> None:
        self._epoch_batches = None

    def loss(self, index: np.ndarray) -> tuple[torch.Tensor, int, torch.Tensor]:
        src, lengths = _tensors([self.src_ids[i] for i in index], self.tokenizer.pad_id, self.device)
        logits = self.model(src, lengths)  # (B, C)
        target = to_device(self.y[index], self.device)
        # pad_id -1: no class id is ever masked out.
        loss, nll = smoothed_loss(logits, target, -1, self.train_cfg.label_smoothing)
        return loss, len(index), nll

    @torch.inference_mode()
    def validate(self, cfg: Any) -> dict[str, Any]:
        log_probs = predict_ids(self.model, self.valid_ids, self.tokenizer.pad_id, cfg.batch_tokens, self.device)
        return classification_metrics(log_probs, self.valid_y)


def predict_ids(model: torch.nn.Module, rows: list[list[int]], pad_id: int, batch_tokens: int,
                device: torch.device) -> np.ndarray:
    """Class log-probabilities (N, C) float32 for encoded texts, in input order (eval mode)."""
    model.eval()
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.zeros((len(rows), model.output.out_features), dtype=np.float32)
    if not rows:
        return out
    with torch.inference_mode():
        for index in bucket_batches(lengths, np.zeros_like(lengths), batch_tokens, shuffle=False, seed=0, epoch=0):
            src, src_lengths = _tensors([rows[i] for i in index], pad_id, device)
            out[index] = torch.log_softmax(model(src, src_lengths).float(), dim=-1).cpu().numpy()
    return out


def classification_metrics(log_probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """loss (mean NLL, nats per example), accuracy and macro_f1 (0-1) of log_probs (N, C)."""
    from seqkit import metrics as M

    preds = log_probs.argmax(axis=1)
    nll = -log_probs[np.arange(len(y)), y]
    return {"loss": float(nll.mean()), "accuracy": M.accuracy(preds.tolist(), y.tolist()),
            "macro_f1": M.macro_f1(preds.tolist(), y.tolist()), "examples": int(len(y))}


# -- reopening a run ----------------------------------------------------------------------------
def is_classification_run(run_dir: Path) -> bool:
    """True when ``run_dir/recipe.yaml`` says ``task: classification`` (no validation)."""
    from seqkit.runs import RECIPE_FILE

    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        return False
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return False  # load_run reports the broken recipe properly
    return isinstance(tree, dict) and tree.get("task") == "classification"


def load_classifier_run(run_dir: Path, which: str = "best", device: str = "cpu") -> tuple[Any, list[str]]:
    """(:class:`seqkit.runs.LoadedRun` with ``tgt_tok`` None, labels) for a classification run."""
    from seqkit import checkpoint as ckpt
    from seqkit.models import build_model
    from seqkit.recipe import load_recipe
    from seqkit.runs import RECIPE_FILE, LoadedRun
    from seqkit.tokenizers import load_tokenizer

    from seqkit.devices import torch_device

    dev = torch_device(device)  # a bad name fails before anything is loaded
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise CheckpointError(f"{run_dir}: not a run directory ({RECIPE_FILE} missing)")
    recipe = load_recipe(run_dir / RECIPE_FILE, [f"run_dir={run_dir}"])
    tokenizer = load_tokenizer(run_dir / "tokenizer" / "src")
    labels = load_labels(run_dir)
    path = ckpt.resolve_checkpoint(run_dir, which)
    ckpt.load_checkpoint_state(path)  # verifies sha256 of the tensor files
    model = build_model(recipe.model, "classification", tokenizer.vocab_size, len(labels), tokenizer.pad_id)
    ckpt.load_model_tensors(model, path / "model.safetensors")
    model.to(dev).eval()
    return LoadedRun(run_dir, recipe, tokenizer, None, model, dev, path), labels


def torch_probs_fn(model: torch.nn.Module, device: torch.device) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A :data:`seqkit.inference.ProbsFunction` over the torch classifier (put in eval mode):
    (src (B, S) int64, lengths (B,) int64) -> softmax probabilities (B, C) float32."""
    model.eval()

    def probs(src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            src_t, lengths_t = to_device(src, device), torch.from_numpy(lengths)  # lengths stay on CPU
            return torch.softmax(model(src_t, lengths_t).float(), dim=-1).cpu().numpy()

    return probs


def text_classifier(run: Any, labels: list[str], batch_size: int | None = None) -> Any:
    """The :class:`seqkit.inference.TextClassifier` over a loaded run (what `seqkit translate` uses)."""
    from seqkit.inference import TextClassifier

    options = {} if batch_size is None else {"batch_size": batch_size}
    return TextClassifier(torch_probs_fn(run.model, run.device), run.src_tok, labels,
                          max_src_len=run.recipe.data.max_src_len, **options)


def classify_lines(run: Any, labels: list[str], lines: Sequence[str]) -> list[tuple[str, float]]:
    """(label, probability) per line with a loaded classification run; an empty line gives ("", 0.0)."""
    return [(r.label, r.probability) for r in text_classifier(run, labels).classify(lines)]


def evaluate_classifier(run_dir: Path, *, split: str, which: str, output: Path | None, device: str) -> dict[str, Any]:
    """``seqkit evaluate`` for a classification run: accuracy and macro-F1 on ``split``.

    ``output`` receives one predicted label per line. Appends an ``evaluate`` event to the
    run's metrics.jsonl.
    """
    from seqkit.data import load_split

    run, labels = load_classifier_run(run_dir, which, device)
    if getattr(run.recipe.data, split) is None:
        raise CheckpointError(f"{run_dir}: the recipe has no data.{split} split")
    corpus = load_split(run.recipe.data, split, run.recipe.base_dir, cache_dir=Path(run_dir) / "cache")
    rows, _ = encode_texts(run.src_tok, corpus.src, run.recipe.data.max_src_len)
    log_probs = predict_ids(run.model, rows, run.src_tok.pad_id, run.recipe.train.batch_tokens, run.device)
    y = label_ids(corpus.tgt, labels, split)
    if output is not None:
        output.write_text("".join(labels[int(c)] + "\n" for c in log_probs.argmax(axis=1)), encoding="utf-8")
    result = {"split": split, "checkpoint": run.checkpoint.name, **classification_metrics(log_probs, y),
              "labels": labels}
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": "evaluate", **result}) + "\n")
    return result
