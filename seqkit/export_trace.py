"""Tracing a torch module to one ONNX graph, as every export does (the seq2seq and language
model graphs in :mod:`seqkit.export_seq2seq`, the classifier's in :mod:`seqkit.export_classifier`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from seqkit.errors import ModelError, SeqkitError
from seqkit.runtime import format as fmt

log = logging.getLogger("seqkit")


def probe_batch(batch: int, length: int, vocab: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """A source batch (B, S) of random ids (specials avoided where the vocabulary allows) with
    lengths S, S-1, ... so the longest row fills the batch."""
    gen = torch.Generator().manual_seed(batch * 100 + length)
    low = 4 if vocab > 4 else 0
    src = torch.randint(low, vocab, (batch, length), generator=gen)
    lengths = torch.tensor([max(1, length - i) for i in range(batch)])
    src = src.masked_fill(torch.arange(length)[None] >= lengths[:, None], pad_id)
    return src, lengths


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence the exporter's C++ shape-inference notices (written to fd 2, past Python's
    warnings); parity is checked on the outputs instead. What was written is logged at debug."""
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.debug("torch.onnx.export: %s", sink.read().decode("utf-8", "replace"))


def trace_graph(module: nn.Module, args: tuple[Tensor, ...], path: Path, io: fmt.GraphIO, opset: int) -> None:
    try:
        with quiet_stderr():
            torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=opset,
                              input_names=list(io.inputs), output_names=list(io.outputs), dynamic_axes=io.dynamic_axes)
    except SeqkitError:
        raise
    except Exception as exc:  # the exporter raises many types; name the graph
        raise ModelError(f"{path.name}: torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
