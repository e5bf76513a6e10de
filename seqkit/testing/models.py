"""``check_encoder``, ``check_decoder``, ``check_attention``: model plugins against their contracts.

The fixed inputs, the tolerances and the ONNX half live in :mod:`seqkit.testing._tensors` and
:mod:`seqkit.testing.onnx`. Built-in plugins used as partners (a GRU encoder under a decoder,
the built-in decoders over an encoder) are resolved through the registry like any plugin.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel

from seqkit.contracts import EncoderOutput
from seqkit.models import LanguageModel, Seq2Seq, run_encoder
from seqkit.registry import default_registry
from seqkit.testing._common import build_config, fail, label_of
from seqkit.testing._tensors import (
    LENGTHS, SRC_VOCAB, TGT_VOCAB, assert_close, assert_shape, source_batch,
)
from seqkit.testing.onnx import check_attention_onnx, check_export_parity

__all__ = ["check_attention", "check_decoder", "check_encoder"]

Config = BaseModel | dict[str, Any] | None
BUILTIN_DECODERS = ("rnn", "lstm", "gru")
SMALL_DECODER = {"embedding_dim": 8, "hidden_size": 12, "num_layers": 2, "attention": {"type": "luong-general"}}
BEAM_ORDER = [2, 0, 0, 1]  # rows a beam search might keep: reordered, one twice, one dropped


# -- helpers ------------------------------------------------------------------------------------
def _positive_ints(label: str, module: Any, names: tuple[str, ...], minimum: int = 1) -> None:
    for name in names:
        if not hasattr(module, name):
            fail(label, f"missing attribute `{name}` (an int set in __init__)")
        value = getattr(module, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            fail(label, f"`{name}` must be an int >= {minimum}, got {value!r}")


def _builtin(kind: str, name: str, options: dict[str, Any], *args: Any) -> torch.nn.Module:
    cls = default_registry().get(kind, name)
    return cls(cls.Config(**options), *args).eval()


def _small_gru_encoder(pad_id: int) -> torch.nn.Module:
    options = {"embedding_dim": 6, "hidden_size": 6, "num_layers": 1, "dropout": 0.0, "embedding_dropout": 0.0}
    return _builtin("encoder", "gru", options, SRC_VOCAB, pad_id)


def _check_flat(label: str, dec: Any, memory: Any, state: Any, batch: int) -> None:
    """memory and state are tuples of tensors batched on dim 0 / on ``state_batch_dims``."""
    dims = dec.state_batch_dims
    if not (isinstance(dims, tuple) and all(isinstance(d, int) for d in dims)):
        fail(label, f"state_batch_dims must be a tuple of ints, got {dims!r}")
    for what, flat in (("memory", memory), ("state", state)):
        if not (isinstance(flat, tuple) and all(isinstance(t, torch.Tensor) for t in flat)):
            fail(label, f"init() must return (memory, state) as tuples of tensors; {what} is {type(flat).__name__}")
    if len(state) != len(dims):
        fail(label, f"state has {len(state)} tensors but state_batch_dims has {len(dims)} entries")
    for i, m in enumerate(memory):
        if m.dim() == 0 or m.size(0) != batch:
            fail(label, f"memory[{i}] has shape {tuple(m.shape)}: the batch ({batch}) must be dim 0")
    for i, (s, d) in enumerate(zip(state, dims)):
        if s.dim() <= d or s.size(d) != batch:
            fail(label, f"state[{i}] has shape {tuple(s.shape)}: the batch ({batch}) must be dim {d} (state_batch_dims)")


def _check_step_parity(label: str, dec: Any, y_in: torch.Tensor, memory: tuple, state: tuple, vocab: int,
                       src_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """forward(y_in) equals stepping step() over y_in[:, t]; -> forward's (logits, attention)."""
    batch, steps = y_in.shape
    logits, weights, final = dec(y_in, memory, state)
    assert_shape(label, "forward() logits", logits, (batch, steps, vocab))
    if tuple(weights.shape) not in ((batch, steps, src_len), (batch, steps, 0)):
        fail(label, f"forward() attention has shape {tuple(weights.shape)}, expected {(batch, steps, src_len)} "
                    f"or {(batch, steps, 0)} without attention")
    step_logits, step_weights, current = [], [], state
    for t in range(steps):
        out, w, new = dec.step(y_in[:, t], memory, current)
        assert_shape(label, f"step() logits at t={t}", out, (batch, vocab))
        if not isinstance(new, tuple) or [s.shape for s in new] != [s.shape for s in current]:
            fail(label, f"step() at t={t} must return the new state as a tuple of tensors shaped like the old one")
        step_logits.append(out)
        step_weights.append(w)
        current = new
    assert_close(label, "forward() vs stepping step(): logits", logits, torch.stack(step_logits, 1))
    assert_close(label, "forward() vs stepping step(): attention", weights, torch.stack(step_weights, 1))
    if not isinstance(final, tuple) or len(final) != len(current):
        fail(label, "forward() must return the final state as a tuple like step()'s")
    for i, (a, b) in enumerate(zip(final, current)):
        assert_close(label, f"forward() vs stepping step(): final state[{i}]", a, b)
    return logits, weights


def _check_weights(label: str, weights: torch.Tensor, lengths: torch.Tensor) -> None:
    """weights (B, T, S): non-negative, summing to 1, zero at padded source positions."""
    pad = torch.arange(weights.size(-1))[None, None, :] >= lengths[:, None, None]
    if (weights < -1e-7).any():
        fail(label, "attention weights must be non-negative")
    assert_close(label, "attention weights summed over the source", weights.sum(-1), torch.ones(weights.shape[:2]))
    leak = float(weights.masked_fill(~pad, 0.0).abs().max())
    if leak > 1e-6:
        fail(label, f"attention weight {leak:.3g} on a padded source position: the mask is ignored")


def _targets(batch: int, vocab: int, steps: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    return torch.randint(4, vocab, (batch, steps), generator=gen)


# -- encoders -----------------------------------------------------------------------------------
def check_encoder(cls: type, config: Config = None, *, vocab_size: int = SRC_VOCAB, pad_id: int = 0,
                  onnx: bool = True) -> torch.nn.Module:
    """Check an encoder plugin ``cls(config, vocab_size, pad_id)`` (see :mod:`seqkit.testing`).

    :class:`~seqkit.contracts.EncoderOutput` shapes against ``output_size``, ``final_size``,
    ``num_layers``; ``mask == positions < lengths``; zeros in ``memory`` at padding; each
    sentence encoding the same alone as in a padded batch (also with extra padding columns);
    every built-in decoder running on it with ``forward`` equal to stepping; with ``onnx``, an
    encoder + LSTM-decoder model's encode and step graphs matching torch in onnxruntime.
    """
    label = label_of("encoder", cls)
    torch.manual_seed(0)
    enc = cls(build_config(cls, config), vocab_size, pad_id).eval()
    _positive_ints(label, enc, ("output_size", "final_size", "num_layers"))
    src, lengths = source_batch(LENGTHS, vocab_size, pad_id)
    with torch.no_grad():
        out = enc(src, lengths)
        _check_encoder_output(label, enc, out, src, lengths)
        _check_encoder_padding(label, enc, out, src, lengths, pad_id)
        for name in BUILTIN_DECODERS:
            dec = _builtin("decoder", name, SMALL_DECODER, TGT_VOCAB, pad_id, enc)
            memory, state = dec.init(enc(src, lengths), src.size(0))
            _check_step_parity(f"{label} under the built-in {name} decoder", dec, _targets(src.size(0), TGT_VOCAB),
                               memory, state, TGT_VOCAB, src.size(1))
    if onnx:
        model = Seq2Seq(enc, _builtin("decoder", "lstm", SMALL_DECODER, TGT_VOCAB, pad_id, enc))
        check_export_parity(f"{label} (+ lstm decoder)", model, vocab_size, TGT_VOCAB, pad_id)
    return enc


def _check_encoder_output(label: str, enc: Any, out: Any, src: torch.Tensor, lengths: torch.Tensor) -> None:
    if not isinstance(out, EncoderOutput):
        fail(label, f"forward() must return seqkit.contracts.EncoderOutput, got {type(out).__name__}")
    (batch, src_len), layers = src.shape, enc.num_layers
    assert_shape(label, "EncoderOutput.memory (B, S, output_size)", out.memory, (batch, src_len, enc.output_size))
    assert_shape(label, "EncoderOutput.mask (B, S)", out.mask, (batch, src_len))
    assert_shape(label, "EncoderOutput.hidden (num_layers, B, final_size)", out.hidden, (layers, batch, enc.final_size))
    if out.cell is not None:
        assert_shape(label, "EncoderOutput.cell (num_layers, B, final_size)", out.cell, (layers, batch, enc.final_size))
    if out.mask.dtype != torch.bool:
        fail(label, f"EncoderOutput.mask must be bool (True at real tokens), got {out.mask.dtype}")
    expected = torch.arange(src_len)[None] < lengths[:, None]
    if not torch.equal(out.mask.cpu(), expected):
        fail(label, f"EncoderOutput.mask must be positions < lengths: got {out.mask.int().tolist()} for lengths {lengths.tolist()}")
    leak = float(out.memory.masked_fill(expected[:, :, None], 0.0).abs().max())
    if leak > 1e-6:
        fail(label, f"EncoderOutput.memory must be zero at padding; found |value| {leak:.3g}")


def _check_encoder_padding(label: str, enc: Any, out: EncoderOutput, src: torch.Tensor, lengths: torch.Tensor,
                           pad_id: int) -> None:
    """Each sentence alone (B=1, no padding) and the batch with 3 extra pad columns agree."""
    for i, n in enumerate(lengths.tolist()):
        alone = enc(src[i : i + 1, :n], lengths[i : i + 1])
        what = f"sentence {i} (length {n}) encoded alone vs in a padded batch"
        assert_close(label, f"{what}: memory", alone.memory[0], out.memory[i, :n])
        assert_close(label, f"{what}: hidden", alone.hidden[:, 0], out.hidden[:, i])
        if out.cell is not None:
            assert_close(label, f"{what}: cell", alone.cell[:, 0], out.cell[:, i])
    wider = enc(torch.cat([src, src.new_full((src.size(0), 3), pad_id)], dim=1), lengths)
    assert_close(label, "memory with 3 extra padding columns", wider.memory[:, : src.size(1)], out.memory)
    assert_close(label, "hidden with 3 extra padding columns", wider.hidden, out.hidden)


# -- decoders -----------------------------------------------------------------------------------
def check_decoder(cls: type, config: Config = None, *, vocab_size: int = TGT_VOCAB, pad_id: int = 0,
                  language_model: bool = True, onnx: bool = True) -> torch.nn.Module:
    """Check a decoder plugin ``cls(config, vocab_size, pad_id, encoder)`` (see :mod:`seqkit.testing`).

    Runs after seqkit's GRU encoder: flat memory/state tuples; ``forward`` equal to stepping
    ``step``; attention weights summing to 1 and zero at padding; each sentence decoding the same
    alone as in the batch; reordering memory and state rows (as beam search does) equal to
    reordering the outputs; with ``language_model`` the same without an encoder; with ``onnx``,
    encode and step graphs matching torch in onnxruntime.
    """
    label = label_of("decoder", cls)
    cfg = build_config(cls, config)
    torch.manual_seed(0)
    encoder = _small_gru_encoder(pad_id)
    dec = cls(cfg, vocab_size, pad_id, encoder).eval()
    src, lengths = source_batch(LENGTHS, SRC_VOCAB, pad_id)
    y_in = _targets(src.size(0), vocab_size)
    with torch.no_grad():
        memory, state = dec.init(run_encoder(encoder, src, lengths), src.size(0))
        _check_flat(label, dec, memory, state, src.size(0))
        logits, weights = _check_step_parity(label, dec, y_in, memory, state, vocab_size, src.size(1))
        if weights.size(-1):
            _check_weights(label, weights, lengths)
        for i, n in enumerate(lengths.tolist()):
            m, s = dec.init(run_encoder(encoder, src[i : i + 1, :n], lengths[i : i + 1]), 1)
            alone, _, _ = dec(y_in[i : i + 1], m, s)
            assert_close(label, f"sentence {i} decoded alone vs in a padded batch: logits", alone[0], logits[i])
        _check_reorder(label, dec, y_in[:, 0], memory, state)
        lm = _check_language_model(label, cls, cfg, vocab_size, pad_id, y_in) if language_model else None
    if onnx:
        check_export_parity(label, Seq2Seq(encoder, dec), SRC_VOCAB, vocab_size, pad_id)
        if lm is not None:
            check_export_parity(f"{label} as a language model", LanguageModel(lm), vocab_size, vocab_size, pad_id)
    return dec


def _check_reorder(label: str, dec: Any, y: torch.Tensor, memory: tuple, state: tuple) -> None:
    """Stepping gathered rows (what beam search does) equals gathering the stepped rows."""
    index = torch.tensor(BEAM_ORDER)
    logits, _, new_state = dec.step(y, memory, state)
    picked_memory = tuple(m.index_select(0, index) for m in memory)
    picked_state = tuple(s.index_select(d, index) for s, d in zip(state, dec.state_batch_dims))
    got, _, got_state = dec.step(y[index], picked_memory, picked_state)
    assert_close(label, f"step() on rows {BEAM_ORDER} vs rows {BEAM_ORDER} of step(): logits", got, logits[index])
    for i, (a, b, d) in enumerate(zip(got_state, new_state, dec.state_batch_dims)):
        assert_close(label, f"step() on reordered rows: state[{i}] (state_batch_dims[{i}] = {d})", a, b.index_select(d, index))


def _check_language_model(label: str, cls: type, cfg: BaseModel, vocab: int, pad_id: int, y_in: torch.Tensor) -> Any:
    lm_label = f"{label} as a language model (encoder=None)"
    dec = cls(cfg, vocab, pad_id, None).eval()
    memory, state = dec.init(None, y_in.size(0))
    _check_flat(lm_label, dec, memory, state, y_in.size(0))
    if memory != ():
        fail(lm_label, f"init(None, B) must give memory () (nothing to attend to), got {len(memory)} tensors")
    _check_step_parity(lm_label, dec, y_in, memory, state, vocab, 0)
    return dec


# -- attention ----------------------------------------------------------------------------------
def check_attention(cls: type, config: Config = None, *, query_size: int = 12, memory_size: int = 10,
                    onnx: bool = True) -> torch.nn.Module:
    """Check an attention plugin ``cls(config, query_size, memory_size)`` (see :mod:`seqkit.testing`).

    ``precompute`` keeps batch and source dims; context (B, T, output_size), weights (B, T, S)
    non-negative, summing to 1 and zero at padding; values at padded memory positions change
    nothing; T queries at once equal T one-step calls; each sentence attends the same alone as in
    the batch; if the class is registered, a built-in LSTM decoder using it has ``forward`` equal
    to stepping; with ``onnx``, precompute + forward as one graph matches torch.
    """
    label = label_of("attention", cls)
    cfg = build_config(cls, config)
    torch.manual_seed(0)
    att = cls(cfg, query_size, memory_size).eval()
    _positive_ints(label, att, ("output_size",), minimum=0)
    if not isinstance(cls.needs_previous_state, bool):
        fail(label, f"needs_previous_state must be a bool class attribute, got {cls.needs_previous_state!r}")

    def make_inputs(lengths: tuple[int, ...], steps: int, seed: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(seed)
        lens = torch.tensor(lengths)
        mask = (torch.arange(max(lengths))[None] < lens[:, None]).float()
        memory = torch.randn(len(lengths), max(lengths), memory_size, generator=gen) * mask[:, :, None]
        return torch.randn(len(lengths), steps, query_size, generator=gen), memory, mask

    query, memory, mask = make_inputs(LENGTHS, 4, 0)
    with torch.no_grad():
        _check_attention_values(label, att, query, memory, mask)
    name = _registered_name("attention", cls)
    if name is not None:
        _check_in_decoder(label, name, cfg)
    if onnx:
        check_attention_onnx(label, att, make_inputs)
    return att


def _check_attention_values(label: str, att: Any, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> None:
    (batch, steps, _), src_len = query.shape, memory.size(1)
    keys = att.precompute(memory)
    if not isinstance(keys, torch.Tensor) or keys.dim() < 2 or tuple(keys.shape[:2]) != (batch, src_len):
        fail(label, f"precompute(memory (B, S, M)) must keep B and S in front, got {getattr(keys, 'shape', keys)}")
    context, weights = att(query, keys, memory, mask)
    assert_shape(label, "context (B, T, output_size)", context, (batch, steps, att.output_size))
    assert_shape(label, "weights (B, T, S)", weights, (batch, steps, src_len))
    lengths = mask.sum(-1).long()
    _check_weights(label, weights, lengths)
    noise = torch.randn(memory.shape, generator=torch.Generator().manual_seed(9)) * 100.0
    garbage = torch.where(mask[:, :, None] > 0, memory, noise)
    ctx2, w2 = att(query, att.precompute(garbage), garbage, mask)
    assert_close(label, "context with garbage in padded memory positions", ctx2, context)
    assert_close(label, "weights with garbage in padded memory positions", w2, weights)
    for t in range(steps):
        ctx_t, w_t = att(query[:, t : t + 1], keys, memory, mask)
        assert_close(label, f"query step {t} alone vs all {steps} steps at once: context", ctx_t, context[:, t : t + 1])
        assert_close(label, f"query step {t} alone vs all {steps} steps at once: weights", w_t, weights[:, t : t + 1])
    for i, n in enumerate(lengths.tolist()):
        mem_i = memory[i : i + 1, :n]
        ctx_i, w_i = att(query[i : i + 1], att.precompute(mem_i), mem_i, mask[i : i + 1, :n])
        assert_close(label, f"sentence {i} (length {n}) alone vs in a padded batch: context", ctx_i[0], context[i])
        assert_close(label, f"sentence {i} (length {n}) alone vs in a padded batch: weights", w_i[0], weights[i, :, :n])


def _registered_name(kind: str, cls: type) -> str | None:
    """The entry-point name pointing at ``cls``, found without importing other plugins."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    return next((name for name, info in default_registry().available(kind).items() if info.value == target), None)


def _check_in_decoder(label: str, name: str, cfg: BaseModel) -> None:
    decoder_label = f"{label} (registered as '{name}') inside the built-in lstm decoder"
    spec = {"type": name, **cfg.model_dump()}
    for feeding in (False, True):
        encoder = _small_gru_encoder(0)
        options = {**SMALL_DECODER, "attention": spec, "input_feeding": feeding}
        dec = _builtin("decoder", "lstm", options, TGT_VOCAB, 0, encoder)
        src, lengths = source_batch(LENGTHS, SRC_VOCAB, 0)
        with torch.no_grad():
            memory, state = dec.init(run_encoder(encoder, src, lengths), src.size(0))
            _check_step_parity(f"{decoder_label}, input_feeding={feeding}", dec, _targets(src.size(0), TGT_VOCAB),
                               memory, state, TGT_VOCAB, src.size(1))

