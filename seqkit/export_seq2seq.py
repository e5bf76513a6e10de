"""The seq2seq and language-model export: ``encoder.onnx`` + ``decoder_step.onnx`` (or
``lm_step.onnx``), tokenizers and config.json, verified against torch (:mod:`seqkit.export`
describes the checks, :mod:`seqkit.export_verify` runs them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqkit import export_shortlist
from seqkit.errors import ModelError, SeqkitError
from seqkit.export_trace import probe_batch, trace_graph
from seqkit.export_verify import sample_inputs, verify_export
from seqkit.graph_edits import add_top_k_outputs, quantize_graphs
from seqkit.models import LanguageModel, Seq2Seq, run_encoder
from seqkit.runtime import format as fmt
from seqkit.runtime.rows import OutputRows
from seqkit.runtime.stepper import OrtStepper, make_stepper, open_session, session_options
from seqkit.shortlist import Shortlist, ShortlistConfig
from seqkit.tokenizers import save_tokenizers

log = logging.getLogger("seqkit")


class _EncoderGraph(nn.Module):
    """encoder.onnx: (src, src_lengths) -> (*memory, *state)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        enc = run_encoder(self.model.encoder, src, src_lengths, self.model.oov_start)
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


def trace_graphs(model: Seq2Seq | LanguageModel, config: fmt.ExportConfig, out: Path) -> None:
    """Write the graph files of ``config.graph_files`` into ``out``."""
    src_vocab, pad = config.src_vocab_size or config.tgt_vocab_size, config.src_pad_id or 0
    memory, state = _initial(model, *_PROBES[0], src_vocab, pad)
    if isinstance(model, Seq2Seq):
        trace_graph(_EncoderGraph(model), probe_batch(*_PROBES[0], src_vocab, pad), out / fmt.ENCODER_FILE,
                      fmt.encoder_io(config.memory, config.state), config.opset)
    y_prev = torch.full((_PROBES[0][0],), config.special_ids.bos)
    step = _StepGraph(model, len(memory), config.has_attention)
    trace_graph(step, (y_prev, *memory, *state), out / config.graph_files["step"],
                  fmt.step_io(config.memory, config.state, config.has_attention, config.copy_oov), config.opset)
    if config.step_top_k:
        add_top_k_outputs(out / config.graph_files["step"])
    if config.shortlist is not None and isinstance(model, Seq2Seq):
        export_shortlist.trace(model, config, (y_prev, *memory, *state), len(memory), out)


def open_stepper(config: fmt.ExportConfig, out: Path, shortlist: Shortlist | None = None) -> OrtStepper:
    """The runtime's stepper over the graphs in ``out``; over the shortlist graph when given."""
    options, sessions = session_options(1), {}
    for role, name in config.graph_files.items():
        try:
            sessions[role] = open_session(out / name, options)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ModelError(f"{name}: the exported graph does not load in onnxruntime: {exc}") from None
    short = None
    if shortlist is not None:
        fed = config.shortlist is not None and config.shortlist.rows == "fed"
        rows = OutputRows.load(out / fmt.SHORTLIST_ROWS_FILE, config.tgt_vocab_size) if fed else None
        short = (sessions["step_shortlist"], shortlist, rows)
    return make_stepper(config, sessions.get("encoder"), sessions["step"], short)


def shortlist_table(run: Any, model: Seq2Seq | LanguageModel, settings: ShortlistConfig) -> Shortlist | None:
    """The shortlist to ship, or None (mode off; or mode auto and the model or data cannot have one)."""
    if settings.mode == "off":
        return None
    reason = export_shortlist.unsupported(model)
    if reason is None:
        try:
            table = export_shortlist.build(run, settings)
        except SeqkitError as exc:
            reason = f"the training pairs cannot be read: {exc}"
        else:
            if (table.per_source >= 0).any():
                return table
            reason = f"export.shortlist.frequent ({settings.frequent}) covers every target piece of the training data"
    if settings.mode == "on":
        raise ModelError(f"export.shortlist.mode: on, but this model cannot have a shortlist: {reason}")
    log.info("no vocabulary shortlist: %s", reason)
    return None


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
        copy_oov=isinstance(model, Seq2Seq) and model.oov_start is not None,
    )


def export_seq2seq(run: Any, out: Path, *, opset: int, quantize: str | None,
                   check_sentences: list[str] | None) -> dict[str, Any]:
    """Write a seq2seq or language-model run's graphs, tokenizers and config.json into ``out``
    and verify them; returns the verification report (manifest.json)."""
    model = run.model.float().eval()
    settings = run.recipe.export.shortlist
    table = shortlist_table(run, model, settings)
    config = build_config(run, model, opset, quantize)
    if table is not None:  # decided by the validation check below
        config.shortlist = fmt.ShortlistInfo(default=False, per_source=settings.per_source, frequent=settings.frequent,
                                             bleu_off=0.0, bleu_on=0.0, sentences=0, rest_sample=settings.rest_sample,
                                             rows=export_shortlist.ROWS)
        table.save(out / fmt.SHORTLIST_FILE)
    trace_graphs(model, config, out)
    save_tokenizers(out / fmt.TOKENIZER_DIR, run.src_tok, run.tgt_tok)
    write_config(config, out)
    samples = sample_inputs(run, check_sentences)
    report = {"checkpoint": run.checkpoint.name, "samples": samples.description,
              "fp32": verify_export(model, config, open_stepper(config, out), samples, strict=True)}
    checked = None
    if table is not None:
        checked = report["shortlist_fp32"] = _check_shortlist(run, config, out, table, settings)
    if quantize:
        export_shortlist.quantize_rows(config, out)
        quantize_graphs(config, out)
        report["int8"] = verify_export(model, config, open_stepper(config, out), samples, strict=False)
        if table is not None:  # the int8 export's default follows its own graphs
            checked = report["shortlist_int8"] = _check_shortlist(run, config, out, table, settings)
    if table is not None and checked is not None:
        config.shortlist = export_shortlist.info(settings, table, checked)
        write_config(config, out)
    return report


def write_config(config: fmt.ExportConfig, out: Path) -> None:
    (out / fmt.CONFIG_FILE).write_text(config.model_dump_json(indent=1) + "\n", encoding="utf-8")


def _check_shortlist(run: Any, config: fmt.ExportConfig, out: Path, table: Shortlist,
                     settings: ShortlistConfig) -> dict[str, Any]:
    return export_shortlist.check(run, config, open_stepper(config, out), open_stepper(config, out, table), settings)
