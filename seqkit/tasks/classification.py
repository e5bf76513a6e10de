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
from typing import Any, Sequence

import numpy as np
import torch

from seqkit import metrics as M
from seqkit.batching import bucket_batches, encode_source, pad_batch
from seqkit.errors import CheckpointError, DataError
from seqkit.export_classifier import export_classifier, torch_probs_fn
from seqkit.inference import TextClassifier
from seqkit.loss import smoothed_loss
from seqkit.registry import validate_spec
from seqkit.rundir import LABELS_FILE, TOKENIZER_DIR, atomic_write_text, read_json
from seqkit.tasks.common import ModelSizes, Vocab, to_device
from seqkit.tokenizers import load_tokenizer

log = logging.getLogger("seqkit")

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
    atomic_write_text(Path(run_dir) / LABELS_FILE, json.dumps(list(labels), ensure_ascii=False, indent=1) + "\n")


def load_labels(run_dir: Path) -> list[str]:
    path = Path(run_dir) / LABELS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a classification run writes it when training starts)")
    try:
        labels = read_json(path)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from None
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)):
        raise CheckpointError(f"{path}: expected a JSON list of at least 2 label strings")
    return labels


# -- building the task ----------------------------------------------------------------------------
def prepare_text_tokenizer(recipe: Any, run_dir: Path, texts: Sequence[str], resume: bool) -> Any:
    """The text tokenizer in ``run_dir/tokenizer/src`` (trained on ``texts`` unless it exists)."""
    tok_dir = Path(run_dir) / TOKENIZER_DIR / "src"
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


def encode_texts(tokenizer: Any, texts: Sequence[str], max_len: int) -> tuple[list[list[int]], np.ndarray]:
    """(ids per text as the model sees them, truncated flags (N,) bool)."""
    pairs = [encode_source(tokenizer, text, max_len) for text in texts]
    return [ids for ids, _ in pairs], np.array([t for _, t in pairs], dtype=bool)


def _tensors(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
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

    def loss(self, index: np.ndarray, model: torch.nn.Module | None = None) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(summed smoothed loss, examples, summed NLL); the forward runs through ``model`` (the
        Trainer's: this model, or its DDP wrapper)."""
        src, lengths = _tensors([self.src_ids[i] for i in index], self.tokenizer.pad_id, self.device)
        logits = (self.model if model is None else model)(src, lengths)  # (B, C)
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
    preds = log_probs.argmax(axis=1)
    nll = -log_probs[np.arange(len(y)), y]
    return {"loss": float(nll.mean()), "accuracy": M.accuracy(preds.tolist(), y.tolist()),
            "macro_f1": M.macro_f1(preds.tolist(), y.tolist()), "examples": int(len(y))}


# -- the task ------------------------------------------------------------------------------------
def text_classifier(run: Any, labels: list[str], batch_size: int | None = None) -> TextClassifier:
    """The :class:`seqkit.inference.TextClassifier` over a loaded run (what `seqkit translate` uses)."""
    options = {} if batch_size is None else {"batch_size": batch_size}
    return TextClassifier(torch_probs_fn(run.model, run.device), run.src_tok, labels,
                          max_src_len=run.recipe.data.max_src_len, **options)


def classify_lines(run: Any, lines: Sequence[str]) -> list[tuple[str, float]]:
    """(label, probability) per line with a loaded classification run; an empty line gives ("", 0.0)."""
    return [(r.label, r.probability) for r in text_classifier(run, run.labels).classify(lines)]


def _vocab(tokenizer: Any, labels: list[str]) -> Vocab:
    return Vocab(tokenizer, None, labels, ModelSizes(tokenizer.vocab_size, len(labels), tokenizer.pad_id))


class _Classification:
    """The :class:`seqkit.tasks.Task` of ``task: classification``."""

    def prepare_vocab(self, recipe: Any, run_dir: Path, data: Any, resume: bool) -> Vocab:
        if data.valid is None:
            raise DataError("data.valid: a validation split is required for classification recipes")
        if resume:
            labels = load_labels(run_dir)
        else:
            labels = build_labels(data.train.tgt)
            save_labels(run_dir, labels)
        return _vocab(prepare_text_tokenizer(recipe, run_dir, data.train.src, resume), labels)

    def open_vocab(self, run_dir: Path) -> Vocab:
        tokenizer = load_tokenizer(Path(run_dir) / TOKENIZER_DIR / "src")
        return _vocab(tokenizer, load_labels(run_dir))

    def trainable(self, recipe: Any, model: Any, vocab: Vocab, data: Any, device: Any) -> ClassifyTask:
        return ClassifyTask(recipe, model, vocab.src_tok, vocab.labels, data.train, data.valid, device)

    def front_end(self, run: Any, options: dict[str, Any]) -> TextClassifier:
        return text_classifier(run, run.labels, options.get("batch_size"))

    def evaluate(self, run: Any, corpus: Any, *, strategy: str | None, beam_size: int | None,
                 output: Path | None) -> dict[str, Any]:
        """Accuracy and macro-F1 on ``corpus``; ``output`` receives one predicted label per line."""
        labels, data = run.labels, run.recipe.data
        rows, _ = encode_texts(run.src_tok, corpus.src, data.max_src_len)
        log_probs = predict_ids(run.model, rows, run.src_tok.pad_id, run.recipe.train.batch_tokens, run.device)
        y = label_ids(corpus.tgt, labels, corpus.name)
        if output is not None:
            output.write_text("".join(labels[int(c)] + "\n" for c in log_probs.argmax(axis=1)), encoding="utf-8")
        return {"split": corpus.name, "checkpoint": run.checkpoint.name, **classification_metrics(log_probs, y),
                "labels": labels}

    def export(self, run: Any, out: Path, *, opset: int, quantize: str | None,
               check_sentences: list[str] | None) -> dict[str, Any]:
        return export_classifier(run, out, opset=opset, quantize=quantize, check_sentences=check_sentences)


TASK = _Classification()
