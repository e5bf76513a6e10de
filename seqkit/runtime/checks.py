"""An exported model must fit its own config.json before anything runs (imports no torch).

A valid ONNX graph of another shape, swapped graph files, or a config whose special ids,
vocabulary sizes or memory/state shapes disagree with the graphs and tokenizers used to load and
then fail inside onnxruntime (a traceback, or HTTP 500 under ``seqkit serve``). These checks read
only what each session declares (input/output names, ranks, fixed dimensions) and what each
tokenizer reports, and name the file and field that disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from seqkit.errors import ModelError
from seqkit.runtime.format import (
    CONFIG_FILE,
    EOS_ID,
    EOS_LOG_PROBS,
    LOG_PROBS,
    PROBS,
    TOP_IDS,
    TOP_K,
    TOP_LOG_PROBS,
    ExportConfig,
    GraphIO,
    TensorSpec,
    classifier_io,
    encoder_io,
    shortlist_step_io,
    step_io,
)
from seqkit.search import SearchConfig


def expected_io(config: ExportConfig) -> dict[str, GraphIO]:
    """Role -> the inputs and outputs its graph must declare, from config.json alone."""
    if config.model_kind == "classifier":
        return {"classifier": classifier_io()}
    step = step_io(config.memory, config.state, config.has_attention)
    if config.step_top_k:
        step.inputs.update({TOP_K: {}, EOS_ID: {}})
        step.outputs.update({TOP_LOG_PROBS: {}, TOP_IDS: {}, EOS_LOG_PROBS: {}})
    if config.model_kind == "lm":
        return {"step": step}
    graphs = {"encoder": encoder_io(config.memory, config.state), "step": step}
    if config.shortlist is not None:
        info = config.shortlist
        extra = shortlist_step_io(config.memory, config.state, config.has_attention, fed=info.rows == "fed",
                                  quantized=config.quantized is not None).inputs
        graphs["step_shortlist"] = GraphIO(inputs={**step.inputs, **extra}, outputs=step.outputs)
    return graphs


def check_graphs(root: Path, config: ExportConfig, sessions: dict[str, Any]) -> None:
    """Every graph declares exactly the inputs and outputs config.json implies, and the
    fixed dimensions recorded for memory, state and the score rows."""
    specs = {t.name: t for t in (*config.memory, *config.state)}
    specs.update({f"state_out_{i}": t for i, t in enumerate(config.state)})
    vocab = {LOG_PROBS: config.tgt_vocab_size, PROBS: config.tgt_vocab_size}
    for role, io in expected_io(config).items():
        where = root / config.graph_files[role]
        session = sessions[role]
        inputs = {a.name: a.shape for a in session.get_inputs()}
        outputs = {a.name: a.shape for a in session.get_outputs()}
        if set(inputs) != set(io.inputs):
            raise ModelError(f"{where}: graph inputs {sorted(inputs)[:8]} do not match {CONFIG_FILE} "
                             f"(expected {sorted(io.inputs)})")
        if set(outputs) != set(io.outputs):
            raise ModelError(f"{where}: graph outputs {sorted(outputs)[:8]} do not match {CONFIG_FILE} "
                             f"(expected {sorted(io.outputs)})")
        for name, shape in [*inputs.items(), *outputs.items()]:
            if name in specs:
                _check_shape(where, name, shape, specs[name])
            elif (name in vocab and role != "step_shortlist" and len(shape) == 2 and isinstance(shape[1], int)
                  and shape[1] != vocab[name]):
                raise ModelError(f"{where}: output {name!r} has {shape[1]} columns but {CONFIG_FILE} "
                                 f"tgt_vocab_size is {vocab[name]}")


def _check_shape(where: Path, name: str, shape: list[Any], spec: TensorSpec) -> None:
    if len(shape) != len(spec.shape):
        raise ModelError(f"{where}: {name!r} has rank {len(shape)} but {CONFIG_FILE} records shape {spec.shape}")
    for i, (got, want) in enumerate(zip(shape, spec.shape)):
        if isinstance(got, int) and isinstance(want, int) and got != want:
            raise ModelError(f"{where}: {name!r} dimension {i} is {got} but {CONFIG_FILE} records {want}")


def check_tokenizers(root: Path, config: ExportConfig, src_tok: Any, tgt_tok: Any) -> None:
    """Vocabulary sizes and special ids of the tokenizers agree with config.json."""
    where = root / CONFIG_FILE
    if tgt_tok is not None:
        if tgt_tok.vocab_size != config.tgt_vocab_size:
            raise ModelError(f"{where}: tgt_vocab_size is {config.tgt_vocab_size} but the target tokenizer "
                             f"has {tgt_tok.vocab_size} tokens")
        ids = config.special_ids
        for field in ("pad", "unk", "bos", "eos"):
            if getattr(ids, field) != getattr(tgt_tok, f"{field}_id"):
                raise ModelError(f"{where}: special_ids.{field} is {getattr(ids, field)} but the target "
                                 f"tokenizer's is {getattr(tgt_tok, f'{field}_id')}")
    if src_tok is not None and config.model_kind != "classifier":
        if src_tok.vocab_size != config.src_vocab_size:
            raise ModelError(f"{where}: src_vocab_size is {config.src_vocab_size} but the source tokenizer "
                             f"has {src_tok.vocab_size} tokens")
        if config.src_pad_id != src_tok.pad_id:
            raise ModelError(f"{where}: src_pad_id is {config.src_pad_id} but the source tokenizer's is {src_tok.pad_id}")


def check_search(root: Path, config: ExportConfig) -> None:
    """The exported search defaults are a valid SearchConfig (bounded beam, max_len, ...)."""
    try:
        SearchConfig.model_validate(config.search)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"{root / CONFIG_FILE}: search.{where}: {first['msg']}") from None
