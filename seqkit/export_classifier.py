"""Export a classification run to ``classifier.onnx`` and prove the export right.

The classification task's export (:mod:`seqkit.tasks.classification`), called by
:func:`seqkit.export.export_run` (which checks the options and seals and publishes the
directory). The directory written (see :mod:`seqkit.runtime.format`)::

    classifier.onnx       (src (B, S) int64, src_lengths (B,) int64) -> probs (B, C) float32
    tokenizer/src/        the run's text tokenizer
    config.json           ExportConfig: model_kind "classifier", labels (index = class id), ...
    manifest.json         sha256 of every other file and the verification report

Verification, on the same sample texts as the seq2seq export (``check_sentences``, else the
validation split, else random ids), all in one padded batch:

1. ``probs`` from torch and onnxruntime agree within ``ATOL + RTOL * |torch|`` (else
   ModelError naming the output and the max difference);
2. the predicted class (argmax) is identical for every sample;
3. with ``quantize="int8"`` the fp32 graph passes 1-2 first; the int8 graph's differences and
   argmax agreement are then only reported in manifest.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from seqkit.batching import pad_batch
from seqkit.errors import ModelError
from seqkit.export_trace import probe_batch, trace_graph
from seqkit.export_verify import Diffs, sample_inputs
from seqkit.graph_edits import quantize_graphs
from seqkit.models import Classifier
from seqkit.runtime import OrtClassifier
from seqkit.runtime import format as fmt
from seqkit.runtime.stepper import open_session, session_options
from seqkit.tasks.common import to_device

log = logging.getLogger("seqkit")

_PROBE = (3, 7)  # (batch, source length) of the traced example; both axes are declared dynamic


class _ClassifierGraph(nn.Module):
    """classifier.onnx: softmax in the graph, in float32."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        enc = self.model.encoder(src, src_lengths)
        pooled = self.model.pool_encoded(enc)  # (B, H)
        if self.model.pooling == "last":
            # The per-position outputs go unused, and the legacy exporter fails on a packed
            # one-layer RNN whose padded output is dropped (vector::_M_range_check). Adding
            # 0 * their sum keeps the node alive, values unchanged (as seqkit.export does).
            pooled = pooled + 0.0 * enc.memory.sum()
        logits = self.model.output(self.model.dropout(pooled))  # (B, C)
        return torch.softmax(logits.float(), dim=-1)


def build_classifier_config(run: Any, labels: list[str], opset: int, quantize: str | None) -> fmt.ExportConfig:
    tok = run.src_tok
    return fmt.ExportConfig(
        task="classification", model_kind="classifier",
        special_ids=fmt.SpecialIds(pad=tok.pad_id, unk=tok.unk_id, bos=tok.bos_id, eos=tok.eos_id),
        src_pad_id=tok.pad_id, src_vocab_size=tok.vocab_size, tgt_vocab_size=len(labels),
        max_src_len=run.recipe.data.max_src_len, has_attention=False, memory=[], state=[], search={},
        opset=opset, quantized=quantize, labels=labels,  # type: ignore[arg-type]
    )


def export_classifier(run: Any, out: Path, *, opset: int, quantize: str | None,
                      check_sentences: list[str] | None) -> dict[str, Any]:
    """Write a classification run's graph, tokenizer and config.json into ``out`` and verify
    them; returns the verification report (manifest.json). ModelError when verification fails."""
    model, labels, pad_id = run.model.float().eval(), run.labels, run.src_tok.pad_id
    config = build_classifier_config(run, labels, opset, quantize)
    probe = probe_batch(*_PROBE, run.src_tok.vocab_size, pad_id)
    trace_graph(_ClassifierGraph(model), probe, out / fmt.CLASSIFIER_FILE, fmt.classifier_io(), opset)
    run.src_tok.save(out / fmt.TOKENIZER_DIR / "src")
    (out / fmt.CONFIG_FILE).write_text(config.model_dump_json(indent=1) + "\n", encoding="utf-8")
    samples = sample_inputs(run, check_sentences)
    report = {"checkpoint": run.checkpoint.name, "samples": samples.description,
              "fp32": verify_classifier(model, labels, out, samples.ids, pad_id=pad_id, strict=True)}
    if quantize:
        quantize_graphs(config, out)
        report["int8"] = verify_classifier(model, labels, out, samples.ids, pad_id=pad_id, strict=False)
    return report


def torch_probs_fn(model: torch.nn.Module, device: torch.device) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A :data:`seqkit.inference.ProbsFunction` over the torch classifier (put in eval mode):
    (src (B, S) int64, lengths (B,) int64) -> softmax probabilities (B, C) float32."""
    model.eval()

    def probs(src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            src_t, lengths_t = to_device(src, device), torch.from_numpy(lengths)  # lengths stay on CPU
            return torch.softmax(model(src_t, lengths_t).float(), dim=-1).cpu().numpy()

    return probs


def ort_probs(model_dir: Path) -> Any:
    """An :class:`seqkit.runtime.OrtClassifier` over ``model_dir``'s graph (one thread)."""
    try:
        return OrtClassifier(open_session(model_dir / fmt.CLASSIFIER_FILE, session_options(1)))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise ModelError(f"{fmt.CLASSIFIER_FILE}: the exported graph does not load in onnxruntime: {exc}") from None


def verify_classifier(model: Classifier, labels: list[str], model_dir: Path, rows: list[list[int]], *, pad_id: int,
                      strict: bool) -> dict[str, Any]:
    """Compare torch and onnxruntime ``probs`` on ``rows`` (source ids, eos included) in one
    padded batch. strict: ModelError on a difference beyond tolerance or a different argmax.
    Returns the report stored in manifest.json."""
    src, lengths = pad_batch(rows, pad_id)
    want = torch_probs_fn(model, torch.device("cpu"))(src, lengths)
    got = ort_probs(model_dir)(src, lengths)
    diffs = Diffs(strict)
    diffs.check(fmt.PROBS, f"{len(rows)} samples", want, got)
    same = want.argmax(axis=1) == got.argmax(axis=1)
    if strict and not same.all():
        i = int(np.flatnonzero(~same)[0])
        a, b = int(want[i].argmax()), int(got[i].argmax())
        raise ModelError(f"parity: predicted label of sample {i} differs: torch '{labels[a]}' (p={want[i, a]:.4f}) "
                         f"vs onnxruntime '{labels[b]}' (p={got[i, b]:.4f})")
    return {"max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.max_abs.items()},
            "argmax_identical": f"{int(same.sum())}/{len(same)}"}
