"""ONNX parity: export through :mod:`seqkit.export_seq2seq` itself, decode in onnxruntime, compare.

``check_export_parity`` describes the model's memory and state tensors as ``seqkit export`` does
(:func:`seqkit.export_seq2seq.tensor_specs`: batch and source-length axes found by probing two sizes;
float32; batch where ``state_batch_dims`` says), traces the very graphs it writes
(:func:`seqkit.export_seq2seq.trace_graphs`) and opens them with the runtime's
:class:`~seqkit.runtime.stepper.OrtStepper`. Then the torch stepper and the onnxruntime stepper
start from a batch of other size and source length than the traces and take greedy steps, with a
beam-style reordering of rows in between; every memory, state, log-prob and attention tensor
must agree. A plugin that passes will export with ``seqkit export``.

``check_attention_onnx`` exports an attention plugin alone (precompute + forward as one graph,
batch, query steps and source length dynamic) with the same exporter settings.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqkit.contracts import BOS_ID, EOS_ID, UNK_ID
from seqkit.errors import ModelError
from seqkit.export_seq2seq import open_stepper, tensor_specs, trace_graphs
from seqkit.models import LanguageModel, TorchStepper
from seqkit.runtime import format as fmt
from seqkit.testing._common import fail
from seqkit.testing._tensors import LENGTHS, ONNX_ATOL, OTHER_LENGTHS, assert_close, source_batch

STEPS = 3  # greedy steps compared after encoding
OPSET = 17  # seqkit export's default
REORDER = np.array([3, 0, 0, 2])  # after the first step: rows kept as beam search might


def _export_config(model: nn.Module, src_vocab: int, tgt_vocab: int, pad_id: int) -> Any:
    memory, state = tensor_specs(model, src_vocab, pad_id)
    lm = isinstance(model, LanguageModel)
    has_attention = False
    if not lm:
        src, lengths = source_batch(LENGTHS, src_vocab, pad_id)
        with torch.no_grad():
            mem, st = model.encode(src, lengths)
            has_attention = model.step(torch.full((src.size(0),), BOS_ID), mem, st)[1].size(-1) > 0
    return fmt.ExportConfig(
        task="lm" if lm else "translation", model_kind="lm" if lm else "seq2seq",
        special_ids=fmt.SpecialIds(pad=pad_id, unk=UNK_ID, bos=BOS_ID, eos=EOS_ID),
        src_pad_id=None if lm else pad_id, src_vocab_size=None if lm else src_vocab, tgt_vocab_size=tgt_vocab,
        max_src_len=max(OTHER_LENGTHS), has_attention=has_attention, memory=memory, state=state, search={},
        opset=OPSET,
    )


def check_export_parity(label: str, model: nn.Module, src_vocab: int, tgt_vocab: int, pad_id: int) -> None:
    """``model``: a :class:`seqkit.models.Seq2Seq` or :class:`~seqkit.models.LanguageModel`."""
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config = _export_config(model, src_vocab, tgt_vocab, pad_id)
            trace_graphs(model, config, Path(tmp))
            ort_fn = open_stepper(config, Path(tmp))
        except ModelError as exc:
            fail(label, f"seqkit export fails: {exc}")
    names = [t.name for t in config.memory], [t.name for t in config.state]
    _compare_steppers(label, TorchStepper(model, "cpu"), ort_fn, names, src_vocab, pad_id)


def _compare_steppers(label: str, torch_fn: Any, ort_fn: Any, names: tuple[list[str], list[str]],
                      src_vocab: int, pad_id: int) -> None:
    src, lengths = (t.numpy() for t in source_batch(OTHER_LENGTHS, src_vocab, pad_id, seed=4))
    where = f"B={src.shape[0]}, S={src.shape[1]} (traced at other sizes)"
    try:
        o_mem, o_state = ort_fn.start(src, lengths)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        fail(label, f"the exported encoder fails at {where}: {exc}")
    t_mem, t_state = torch_fn.start(src, lengths)
    for name, got, want in zip(names[0] + names[1], (*o_mem, *o_state), (*t_mem, *t_state)):
        assert_close(label, f"ONNX encoder output {name} at {where}", got, want, ONNX_ATOL)
    y = np.full(src.shape[0], BOS_ID, dtype=np.int64)
    for t in range(STEPS):
        try:
            o_lp, o_att, o_state = ort_fn.step(y, o_mem, o_state)
        except Exception as exc:  # noqa: BLE001
            fail(label, f"the exported step graph fails at {where}, step {t}: {exc}")
        t_lp, t_att, t_state = torch_fn.step(y, t_mem, t_state)
        assert_close(label, f"ONNX step {t} log_probs", o_lp, t_lp, ONNX_ATOL)
        if (o_att is None) != (t_att is None):
            fail(label, f"ONNX step {t}: attention is {'missing' if o_att is None else 'extra'} in the exported graph")
        if t_att is not None:
            assert_close(label, f"ONNX step {t} attention", o_att, t_att, ONNX_ATOL)
        for name, got, want in zip(names[1], o_state, t_state):
            assert_close(label, f"ONNX step {t} new {name}", got, want, ONNX_ATOL)
        y = t_lp.argmax(-1)
        if t == 0:  # continue on reordered rows, as beam search does, through each side's own select
            y = y[REORDER]
            o_mem, o_state = ort_fn.select_memory(o_mem, REORDER), ort_fn.select_state(o_state, REORDER)
            t_mem, t_state = torch_fn.select_memory(t_mem, REORDER), torch_fn.select_state(t_state, REORDER)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # shape-inference notices are not failures
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _AttentionGraph(nn.Module):
    """precompute + forward as one graph: (query, memory, mask) -> (context, weights)."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention(query, self.attention.precompute(memory), memory, mask)


def check_attention_onnx(label: str, attention: nn.Module, make_inputs: Any) -> None:
    """``make_inputs(lengths, steps, seed)`` -> (query (B, T, Q), memory (B, S, M), mask (B, S) float)."""
    inputs = make_inputs(LENGTHS, 4, 5)  # B=3, T=4, S=7
    names = ["query", "memory", "mask"]
    axes = {"query": {0: "B", 1: "T"}, "memory": {0: "B", 1: "S"}, "mask": {0: "B", 1: "S"},
            "context": {0: "B", 1: "T"}, "weights": {0: "B", 1: "T", 2: "S"}}
    graph = _AttentionGraph(attention).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attention.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notices; the outputs are compared below
                torch.onnx.export(graph, inputs, str(path), dynamo=False, opset_version=OPSET, input_names=names,
                                  output_names=["context", "weights"], dynamic_axes=axes)
        except Exception as exc:  # noqa: BLE001
            fail(label, f"ONNX export (torch.onnx.export, dynamo=False) failed: {type(exc).__name__}: {exc}")
        session = _session(path)
    other = make_inputs(OTHER_LENGTHS, 2, 6)  # B=4, T=2, S=9
    try:
        kept = {i.name for i in session.get_inputs()}  # the exporter drops inputs a graph never reads
        got = session.run(None, {n: t.numpy() for n, t in zip(names, other) if n in kept})
    except Exception as exc:  # noqa: BLE001
        fail(label, f"ONNX attention graph failed at other B, T, S than traced: {exc}")
    with torch.no_grad():
        context, weights = graph(*other)
    assert_close(label, "ONNX context", got[0], context, ONNX_ATOL)
    assert_close(label, "ONNX weights", got[1], weights, ONNX_ATOL)
