"""Export a trained run to ONNX for the torch-free runtime, and prove the export right.

``export_run(run_dir, out_dir)`` writes the directory described in :mod:`seqkit.runtime.format`
(graph names and dynamic axes are declared there, once). The export verifies itself before it
is published (:mod:`seqkit.export_verify`):

1. The sample inputs go through torch and through onnxruntime: every encoder output and every
   output of several decoder steps must agree within ``ATOL + RTOL * |torch|``; a failure names
   the output, the step and the max absolute difference.
2. Greedy decoding of the sample sentences through :class:`seqkit.models.TorchStepper` and the
   runtime's :class:`~seqkit.runtime.stepper.OrtStepper` must give identical ids.
3. With ``quantize="int8"`` the fp32 graphs pass 1-2 first; the int8 graphs' differences and
   greedy agreement are then only reported (int8 changes the outputs), in manifest.json.

Everything is written to a temporary sibling directory that is renamed to ``out_dir`` only
after all checks pass, so ``out_dir`` never holds a half-written or unverified model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqkit import __version__
from seqkit.errors import ModelError, SeqkitError
from seqkit.export_graphs import add_top_k_outputs, quantize_graphs
from seqkit.export_verify import sample_inputs, verify_export
from seqkit.models import LanguageModel, Seq2Seq, run_encoder
from seqkit.runtime import format as fmt
from seqkit.runtime.stepper import (
    OrtStepper,
    make_stepper,
    open_session,
    session_options,
)

log = logging.getLogger("seqkit")

QUANTIZE_CHOICES = ("int8",)
EXPORTABLE_TASKS = ("translation", "summarization", "lm", "classification")
MIN_OPSET = 13  # opsets 11-12 reject the int64 sequence lengths the recurrent encoders pass


class _EncoderGraph(nn.Module):
    """encoder.onnx: (src, src_lengths) -> (*memory, *state)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        enc = run_encoder(self.model.encoder, src, src_lengths)
        memory, state = self.model.decoder.init(enc, src.size(0))
        if not memory:
            # Without attention the padded per-position outputs go unused, and the legacy
            # exporter fails on a packed RNN whose padded output is dropped
            # (vector::_M_range_check). Adding 0 * their sum keeps the node alive, values unchanged.
            state = (state[0] + 0.0 * enc.memory.sum(), *state[1:])
        return (*memory, *state)


class _StepGraph(nn.Module):
    """decoder_step.onnx / lm_step.onnx: log_softmax runs in the graph, in float32."""

    def __init__(self, model: Seq2Seq | LanguageModel, n_memory: int, has_attention: bool):
        super().__init__()
        self.model, self.n_memory, self.has_attention = model, n_memory, has_attention

    def forward(self, y_prev: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        logits, attn, state = self.model.step(y_prev, flat[: self.n_memory], flat[self.n_memory :])
        head = [torch.log_softmax(logits.float(), dim=-1)]
        if self.has_attention:
            head.append(attn.float())
        return (*head, *state)


# -- shapes: which dims are batch / source length, found by running two batch sizes ---------
_PROBES = ((3, 7), (2, 5))  # (batch, source length); distinct, so every dynamic dim shows


def probe_batch(batch: int, length: int, vocab: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """A source batch (B, S) of random ids (specials avoided where the vocabulary allows) with
    lengths S, S-1, ... so the longest row fills the batch."""
    gen = torch.Generator().manual_seed(batch * 100 + length)
    low = 4 if vocab > 4 else 0
    src = torch.randint(low, vocab, (batch, length), generator=gen)
    lengths = torch.tensor([max(1, length - i) for i in range(batch)])
    src = src.masked_fill(torch.arange(length)[None] >= lengths[:, None], pad_id)
    return src, lengths


def _initial(model: Seq2Seq | LanguageModel, batch: int, length: int, vocab: int, pad_id: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    with torch.no_grad():  # not inference_mode: the exporter traces these tensors afterwards
        if isinstance(model, LanguageModel):
            return (), model.init_state(batch)
        return model.encode(*probe_batch(batch, length, vocab, pad_id))


def tensor_specs(model: Seq2Seq | LanguageModel, src_vocab: int, pad_id: int) -> tuple[list[fmt.TensorSpec], list[fmt.TensorSpec]]:
    """(memory specs, state specs): each dim fixed, "batch" or "src_len"; checked against the
    decoder contract (memory batch on dim 0, state batch on ``state_batch_dims``)."""
    (b1, s1), (b2, s2) = _PROBES
    first, second = _initial(model, b1, s1, src_vocab, pad_id), _initial(model, b2, s2, src_vocab, pad_id)
    specs: list[list[fmt.TensorSpec]] = [[], []]
    expected = [(0,) * len(first[0]), tuple(model.state_batch_dims)]
    for group, (name_of, a_group, b_group) in enumerate(((fmt.memory_name, first[0], second[0]),
                                                         (fmt.state_name, first[1], second[1]))):
        for i, (a, b) in enumerate(zip(a_group, b_group)):
            name = name_of(i)
            shape: list[fmt.Dim] = []
            for da, db in zip(a.shape, b.shape):
                if da == db:
                    shape.append(int(da))
                elif (da, db) == (b1, b2):
                    shape.append(fmt.BATCH)
                elif (da, db) == (s1, s2):
                    shape.append(fmt.SRC_LEN)
                else:
                    raise ModelError(f"{name}: dimension varies with the input ({da} vs {db}) but is neither batch nor source length")
            if shape.count(fmt.BATCH) != 1 or shape.index(fmt.BATCH) != expected[group][i]:
                raise ModelError(f"{name}: shape {shape} does not put the batch on dim {expected[group][i]} as the decoder declares")
            if a.dtype != torch.float32:
                raise ModelError(f"{name}: dtype {a.dtype}; exported memory and state must be float32")
            specs[group].append(fmt.TensorSpec(name=name, shape=shape))
    if isinstance(model, LanguageModel) and any(bool(s.any()) for s in first[1]):
        raise ModelError("the language model's initial state is not zero; the runtime starts from zeros")
    return specs[0], specs[1]


def _has_attention(model: Seq2Seq | LanguageModel, src_vocab: int, pad_id: int, bos_id: int) -> bool:
    if isinstance(model, LanguageModel):
        return False
    memory, state = _initial(model, *_PROBES[0], src_vocab, pad_id)
    with torch.no_grad():
        _, attn, _ = model.step(torch.full((_PROBES[0][0],), bos_id), memory, state)
    return attn.size(-1) > 0


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
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


def _export_graph(module: nn.Module, args: tuple[Tensor, ...], path: Path, io: fmt.GraphIO, opset: int) -> None:
    try:
        with _quiet_stderr():
            torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=opset,
                              input_names=list(io.inputs), output_names=list(io.outputs), dynamic_axes=io.dynamic_axes)
    except SeqkitError:
        raise
    except Exception as exc:  # the exporter raises many types; name the graph
        raise ModelError(f"{path.name}: torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc


def export_graphs(model: Seq2Seq | LanguageModel, config: fmt.ExportConfig, out: Path) -> None:
    """Write the graph files of ``config.graph_files`` into ``out``."""
    src_vocab, pad = config.src_vocab_size or config.tgt_vocab_size, config.src_pad_id or 0
    memory, state = _initial(model, *_PROBES[0], src_vocab, pad)
    if isinstance(model, Seq2Seq):
        _export_graph(_EncoderGraph(model), probe_batch(*_PROBES[0], src_vocab, pad), out / fmt.ENCODER_FILE,
                      fmt.encoder_io(config.memory, config.state), config.opset)
    y_prev = torch.full((_PROBES[0][0],), config.special_ids.bos)
    step = _StepGraph(model, len(memory), config.has_attention)
    _export_graph(step, (y_prev, *memory, *state), out / config.graph_files["step"],
                  fmt.step_io(config.memory, config.state, config.has_attention), config.opset)
    if config.step_top_k:
        add_top_k_outputs(out / config.graph_files["step"])


def open_stepper(config: fmt.ExportConfig, out: Path) -> OrtStepper:
    options, sessions = session_options(1), {}
    for role, name in config.graph_files.items():
        try:
            sessions[role] = open_session(out / name, options)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ModelError(f"{name}: the exported graph does not load in onnxruntime: {exc}") from None
    return make_stepper(config, sessions.get("encoder"), sessions["step"])


def build_config(run: Any, model: Seq2Seq | LanguageModel, opset: int, quantize: str | None) -> fmt.ExportConfig:
    recipe, src_tok, tgt_tok = run.recipe, run.src_tok, run.tgt_tok
    src_vocab = src_tok.vocab_size if src_tok is not None else None
    pad = src_tok.pad_id if src_tok is not None else tgt_tok.pad_id
    memory, state = tensor_specs(model, src_vocab or tgt_tok.vocab_size, pad)
    return fmt.ExportConfig(
        task=recipe.task, model_kind="lm" if isinstance(model, LanguageModel) else "seq2seq",
        special_ids=fmt.SpecialIds(pad=tgt_tok.pad_id, unk=tgt_tok.unk_id, bos=tgt_tok.bos_id, eos=tgt_tok.eos_id),
        src_pad_id=src_tok.pad_id if src_tok is not None else None, src_vocab_size=src_vocab,
        tgt_vocab_size=tgt_tok.vocab_size, max_src_len=recipe.data.max_src_len,
        has_attention=_has_attention(model, src_vocab or tgt_tok.vocab_size, pad, tgt_tok.bos_id),
        memory=memory, state=state, search=recipe.search.model_dump(mode="json"), opset=opset,
        quantized=quantize, step_top_k=True,  # type: ignore[arg-type]
    )


def export_run(run_dir: str | Path, out_dir: str | Path, *, opset: int = 17, quantize: str | None = None,
               which: str = "best", check_sentences: list[str] | None = None) -> Path:
    """Export the ``which`` checkpoint of ``run_dir`` to ``out_dir``; returns ``out_dir``.

    ``check_sentences``: sample inputs for the parity check (default: the run's validation
    sources, or random ids when the data cannot be read). Raises ModelError, leaving nothing
    at ``out_dir``, when export or verification fails or ``out_dir`` already holds files.
    """
    from seqkit.recipe import load_recipe
    from seqkit.runs import RECIPE_FILE, is_run_dir, load_run
    from seqkit.tokenizers import save_tokenizers

    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ModelError(f"quantize: unknown '{quantize}'; choices: {', '.join(QUANTIZE_CHOICES)}")
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is too old; seqkit exports with opset >= {MIN_OPSET}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: already exists; remove it or choose another output directory")
    if is_run_dir(Path(run_dir)):  # else load_run names what is missing
        task = load_recipe(Path(run_dir) / RECIPE_FILE, [f"run_dir={run_dir}"]).task
        if task not in EXPORTABLE_TASKS:
            raise ModelError(f"{run_dir}: task '{task}' cannot be exported; "
                             f"exportable tasks: {', '.join(EXPORTABLE_TASKS)}")
        if task == "classification":  # one graph, no decoder: seqkit/export_classifier.py
            from seqkit.export_classifier import export_classifier

            return export_classifier(Path(run_dir), out, opset=opset, quantize=quantize, which=which,
                                     check_sentences=check_sentences)
    run = load_run(Path(run_dir), which, "cpu")
    model = run.model.float().eval()
    with staging_dir(out) as tmp:
        config = build_config(run, model, opset, quantize)
        export_graphs(model, config, tmp)
        save_tokenizers(tmp / fmt.TOKENIZER_DIR, run.src_tok, run.tgt_tok)
        (tmp / fmt.CONFIG_FILE).write_text(config.model_dump_json(indent=1) + "\n", encoding="utf-8")
        samples = sample_inputs(run, check_sentences)
        report = {"checkpoint": run.checkpoint.name, "samples": samples.description,
                  "fp32": verify_export(model, config, open_stepper(config, tmp), samples, strict=True)}
        if quantize:
            quantize_graphs(config, tmp)
            report["int8"] = verify_export(model, config, open_stepper(config, tmp), samples, strict=False)
        seal_and_publish(tmp, out, opset=opset, quantize=quantize, report=report)
    log.info("exported %s (%s) to %s", run.checkpoint, quantize or "fp32", out)
    return out


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``out`` to build an export in; removed if the block fails, so a
    failed export leaves nothing behind (``seal_and_publish`` moves it into place)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:  # -o under a file, a read-only or full disk: one line, not a traceback
        raise ModelError(f"{out}: cannot create the output directory: {exc.strerror or exc}") from None
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"{out}: cannot write the export: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def seal_and_publish(tmp: Path, out: Path, *, opset: int, quantize: str | None, report: dict[str, Any]) -> None:
    """Write the manifest (sha256 of every file), re-open the directory as the runtime will,
    then move it into place."""
    from seqkit.runtime import load_model

    manifest = fmt.Manifest(seqkit_version=__version__, opset=opset, quantized=quantize,  # type: ignore[arg-type]
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            files=fmt.hash_files(tmp), verification=report)
    fmt.write_manifest(tmp, manifest)
    load_model(tmp, threads=1)
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
