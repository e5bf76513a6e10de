"""Models composed from plugins: :class:`Seq2Seq` (encoder + decoder), :class:`LanguageModel`
(decoder only) and :class:`Classifier` (encoder + pooling + linear head).

``build_model`` turns the recipe's ``model:`` section (:class:`ModelConfig`) into a module;
``TorchStepper`` adapts either model to the search step-function protocol (numpy in, numpy out)
so that greedy/beam/sampling search is written once for torch and onnxruntime alike.

What ONNX export traces, with flat tuples of tensors:

- ``Seq2Seq.encode(src (B, S), src_lengths (B,)) -> (memory, state)``
- ``step(y_prev (B,), memory, state) -> (logits (B, V), attention (B, S) or (B, 0), state)``
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from seqkit.checkpoint import load_model_tensors, model_tensors
from seqkit.contracts import UNK_ID
from seqkit.cpu_kernels import OneDnnDecoding, largest_product, native_rnn, onednn_available, onednn_pays
from seqkit.errors import PluginError, SeqkitError
from seqkit.model_config import HeadConfig, ModelConfig
from seqkit.registry import build_plugin, validate_spec
from seqkit.rundir import atomic_write_bytes
from seqkit.search import TopK

State = tuple[Tensor, ...]
MODEL_KINDS = ("seq2seq", "lm", "classifier")  # what seqkit.tasks.TaskEntry.model names


def validate_model_specs(cfg: ModelConfig, kind: str) -> None:
    """Resolve every plugin spec the ``kind`` of model uses, so a bad recipe fails when it is
    loaded (:func:`seqkit.tasks.common.check_model` then checks the sizes).

    Raises PluginError whose message starts with the dotted recipe path (``model.decoder``,
    ``model.decoder.attention.type``, ...).
    """
    _check_kind(kind)
    if kind == "classifier":
        validate_spec("encoder", cfg.encoder, "model.encoder")
    elif kind == "lm":
        attention = cfg.decoder.get("attention")
        if attention is not None and (not isinstance(attention, dict) or attention.get("type") != "none"):
            raise PluginError(
                "model.decoder.attention: a language model has no source to attend to; "
                "remove this key (or set type: none)"
            )
    else:
        validate_spec("encoder", cfg.encoder, "model.encoder")
        if "attention" in cfg.decoder:
            validate_spec("attention", cfg.decoder["attention"], "model.decoder.attention")
    if kind != "classifier":
        validate_spec("decoder", cfg.decoder, "model.decoder")


def build_model(cfg: ModelConfig, kind: str, src_vocab: int | None, tgt_vocab: int,
                pad_id: int) -> Seq2Seq | LanguageModel | Classifier:
    """Seq2Seq (``kind`` seq2seq), LanguageModel (decoder only, lm) or Classifier (classifier;
    there ``tgt_vocab`` is the number of classes). seqkit builds its models through
    :func:`seqkit.tasks.common.new_model`, the one caller."""
    _check_kind(kind)
    if kind == "lm":
        cls, dec_config = validate_spec("decoder", cfg.decoder, "model.decoder")
        if "attention" in type(dec_config).model_fields:  # the stored config says what runs
            dec_config = dec_config.model_copy(update={"attention": {"type": "none"}})
        return LanguageModel(cls(dec_config, tgt_vocab, pad_id, None))
    if src_vocab is None:
        raise ValueError(f"a {kind} model needs a source vocabulary size")
    encoder = build_plugin("encoder", cfg.encoder, "model.encoder", src_vocab, pad_id)
    if kind == "classifier":
        return Classifier(encoder, cfg.head, tgt_vocab)
    decoder = build_plugin("decoder", cfg.decoder, "model.decoder", tgt_vocab, pad_id, encoder)
    if cfg.share_embeddings:
        _share_embeddings(encoder, decoder)
    return Seq2Seq(encoder, decoder, oov_start=tgt_vocab if cfg.decoder.get("copy_oov") is True else None)


def _check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise PluginError(f"seqkit.models has no model of kind '{kind}'; kinds: {', '.join(MODEL_KINDS)}")


def _share_embeddings(encoder: nn.Module, decoder: nn.Module) -> None:
    embeddings = []
    for name, module in (("encoder", encoder), ("decoder", decoder)):
        embedding = dict(module.named_children()).get("embedding")  # plugins need not own one
        if not isinstance(embedding, nn.Embedding):
            raise PluginError(f"model.share_embeddings: the {name} plugin has no `embedding` (nn.Embedding) to share")
        embeddings.append(embedding)
    src, tgt = embeddings
    if src.weight.shape != tgt.weight.shape:
        raise PluginError(
            f"model.share_embeddings: source embedding {tuple(src.weight.shape)} and target embedding "
            f"{tuple(tgt.weight.shape)} differ (vocabulary x embedding_dim); share the tokenizer "
            "(tokenizer.shared) and use one embedding_dim"
        )
    src.weight = tgt.weight


def run_encoder(encoder: nn.Module, src: Tensor, src_lengths: Tensor, oov_start: int | None = None) -> Any:
    """The encoder's :class:`~seqkit.contracts.EncoderOutput` with ``src_ids`` filled in: the
    one way a decoder is handed the source ids it copies from (``model.decoder.copy_source``).
    ``oov_start`` (``copy_oov``: the vocabulary size): the encoder reads ids from there on, a
    sentence's unknown words (:mod:`seqkit.oov`), as unk; the decoder gets them as they are."""
    seen = src if oov_start is None else src.masked_fill(src >= oov_start, UNK_ID)
    return encoder(seen, src_lengths)._replace(src_ids=src)


class Seq2Seq(nn.Module):
    """Encoder + decoder. ``forward`` is teacher-forced; ``encode`` + ``step`` decode."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, oov_start: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        # model.decoder.copy_oov: ids >= oov_start are a sentence's unknown source words (seqkit.oov).
        self.oov_start = oov_start

    @property
    def state_batch_dims(self) -> tuple[int, ...]:
        return self.decoder.state_batch_dims

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[State, State]:
        """src (B, S) int64, src_lengths (B,) int64 -> (memory, initial decoder state)."""
        return self.decoder.init(run_encoder(self.encoder, src, src_lengths, self.oov_start), src.size(0))

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """tgt_in (B, T) starts with bos -> logits (B, T, V) [, attention (B, T, S) or (B, T, 0)]."""
        memory, state = self.encode(src, src_lengths)
        logits, attention, _ = self.decoder(tgt_in, memory, state)
        return (logits, attention) if return_attention else logits

    def step(self, y_prev: Tensor, memory: State, state: State) -> tuple[Tensor, Tensor, State]:
        """y_prev (B,) -> (logits (B, V), attention (B, S) or (B, 0), new state)."""
        return self.decoder.step(y_prev, memory, state)


class LanguageModel(nn.Module):
    """A decoder with no encoder: next-token prediction over a stream (TBPTT-friendly)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    @property
    def state_batch_dims(self) -> tuple[int, ...]:
        return self.decoder.state_batch_dims

    def init_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` streams."""
        return self.decoder.init(None, batch_size)[1]

    def forward(self, tgt_in: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tgt_in (B, T) -> (logits (B, T, V), final state). The caller detaches the state
        between truncated-BPTT batches."""
        if state is None:
            state = self.init_state(tgt_in.size(0))
        logits, _, state = self.decoder(tgt_in, (), state)
        return logits, state

    def step(self, y_prev: Tensor, memory: State = (), state: State | None = None) -> tuple[Tensor, Tensor, State]:
        """y_prev (B,) -> (logits (B, V), attention (B, 0), new state); memory is always ()."""
        if state is None:
            state = self.init_state(y_prev.size(0))
        return self.decoder.step(y_prev, memory, state)


class Classifier(nn.Module):
    """Encoder plugin + pooling + dropout + linear layer: a sequence to class logits."""

    def __init__(self, encoder: nn.Module, head: HeadConfig, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise SeqkitError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.encoder = encoder
        self.pooling = head.pooling
        size = encoder.final_size if head.pooling == "last" else encoder.output_size
        self.dropout = nn.Dropout(head.dropout)
        self.output = nn.Linear(size, num_classes)

    def pool(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        """src (B, S) int64, src_lengths (B,) int64 -> one vector per sequence (B, H)."""
        return self.pool_encoded(self.encoder(src, src_lengths))

    def pool_encoded(self, enc: Any) -> Tensor:
        """The encoder's output (a :class:`seqkit.contracts.EncoderOutput`) -> pooled (B, H)."""
        if self.pooling == "last":
            return enc.hidden[-1]  # (B, H_final) top layer
        mask = enc.mask.unsqueeze(-1)  # (B, S, 1)
        if self.pooling == "max":
            return enc.memory.masked_fill(~mask, float("-inf")).max(dim=1).values
        return (enc.memory * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)

    def forward(self, src: Tensor, src_lengths: Tensor) -> Tensor:
        """src (B, S), src_lengths (B,) -> logits (B, C)."""
        return self.output(self.dropout(self.pool(src, src_lengths)))


class TorchStepper:
    """The search step-function protocol over a torch model: numpy in, numpy out.

    Memory and state stay torch tensors on ``device`` (search treats them as opaque and only
    reorders them through ``select_memory``/``select_state``). The caller puts the model in
    eval mode. ``onednn``: on a CPU, float32, run the step's linear and LSTM products on oneDNN
    (:class:`seqkit.cpu_kernels.OneDnnDecoding`): None (default) for the steps where that pays
    (``seqkit.cpu_kernels.onednn_pays``), True for every step, False never (torch's own kernels).
    """

    def __init__(self, model: Seq2Seq | LanguageModel, device: torch.device | str | None = None, *,
                 onednn: bool | None = None):
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.state_batch_dims = model.state_batch_dims
        self.dtype = next(model.parameters()).dtype
        # CPU float32: linear and one-step LSTM products on oneDNN, packed weights cached here
        fits = onednn is not False and self.device.type == "cpu" and self.dtype == torch.float32 and onednn_available()
        self._onednn: dict | None = {} if fits else None
        self._largest = largest_product(model) if fits and onednn is None else None  # None: every step

    def _products(self, rows: int) -> contextlib.AbstractContextManager[Any]:
        """seqkit.cpu_kernels.OneDnnDecoding for a step of ``rows`` rows where it applies (a
        decode 1.25-1.35x faster on the VM)."""
        if self._onednn is None or (self._largest is not None and not onednn_pays(rows, self._largest)):
            return contextlib.nullcontext()
        return OneDnnDecoding(self._onednn)

    def _mode(self, rows: int) -> contextlib.ExitStack:
        """inference_mode, with torch's own RNN kernels on CPU for a decoding step
        (seqkit.cpu_kernels: oneDNN's LSTM ran a 5-row step 2.7x slower on one thread) and the
        products on oneDNN."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(native_rnn(self.device, self.dtype))
        stack.enter_context(self._products(rows))
        return stack

    def start(self, src: np.ndarray, lengths: np.ndarray) -> tuple[State, State]:
        """src (B, S) int64 (LM: (B, 0)), lengths (B,) int64 -> (memory, state)."""
        # the encoder's LSTM keeps oneDNN's RNN (level with torch's own at batch 32)
        with torch.inference_mode(), self._products(int(src.shape[0]) * max(int(src.shape[1]), 1)):
            if isinstance(self.model, LanguageModel):
                return (), self.model.init_state(int(src.shape[0]))
            src_t = torch.as_tensor(src, dtype=torch.long, device=self.device)
            lengths_t = torch.as_tensor(lengths, dtype=torch.long, device=self.device)
            return self.model.encode(src_t, lengths_t)

    def step(self, y_prev: np.ndarray, memory: State, state: State) -> tuple[np.ndarray, np.ndarray | None, State]:
        """y_prev (N,) int64 -> (log_probs (N, V) float32, attention (N, S) float32 or None, state)."""
        with self._mode(len(y_prev)):
            log_probs, weights, state = self._log_probs(y_prev, memory, state)
            return log_probs.cpu().numpy(), weights, state

    def step_top_k(self, y_prev: np.ndarray, memory: State, state: State, k: int, eos_id: int) -> tuple[TopK, np.ndarray | None, State]:
        """y_prev (N,) int64 -> (TopK (N, min(k, V)) of ``step``'s log-probs, attention, state)."""
        with self._mode(len(y_prev)):
            log_probs, weights, state = self._log_probs(y_prev, memory, state)
            values, ids = top_k_lower_id(log_probs, min(k, log_probs.size(-1)))
            return TopK(values.cpu().numpy(), ids.cpu().numpy(), log_probs[:, eos_id].cpu().numpy()), weights, state

    def _log_probs(self, y_prev: np.ndarray, memory: State, state: State) -> tuple[Tensor, np.ndarray | None, State]:
        """The model's step (call under inference_mode): log-probs (N, V) float32 as a tensor,
        attention (N, S) float32 numpy or None, new state."""
        y = torch.as_tensor(y_prev, dtype=torch.long, device=self.device)
        logits, attn, state = self.model.step(y, memory, state)
        weights = attn.float().cpu().numpy() if attn.size(-1) > 0 else None
        return torch.log_softmax(logits.float(), dim=-1), weights, state

    def select_memory(self, memory: State, index: np.ndarray) -> State:
        """Gather batch rows (dim 0) of every memory tensor: index (N',) int64."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            return tuple(m.index_select(0, idx) for m in memory)

    def select_state(self, state: State, index: np.ndarray) -> State:
        """Gather batch rows of every state tensor along its ``state_batch_dims`` entry."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        with torch.inference_mode():
            return tuple(s.index_select(dim, idx) for s, dim in zip(state, self.state_batch_dims))


def top_k_lower_id(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest of each row of x (N, V), best first, equal values in id order (as ONNX
    TopK and seqkit.search.top_k_rows): torch.topk leaves tie order open, so rows where a tie
    could matter (at the k-th value, or inside the k) are redone with a stable sort."""
    if k == 1:  # torch.max returns the first of equal maxima: the lowest id
        values, ids = x.max(dim=-1, keepdim=True)
        return values, ids
    values, ids = torch.topk(x, min(k + 1, x.size(-1)), dim=-1)  # one more: a tie at the cut shows
    cut = values[:, k - 1] == values[:, k] if values.size(-1) > k else torch.zeros_like(values[:, 0], dtype=torch.bool)
    values, ids = values[:, :k], ids[:, :k]
    unordered = ((values[:, 1:] == values[:, :-1]) & (ids[:, 1:] < ids[:, :-1])).any(dim=-1)
    redo = torch.nonzero(cut | unordered).flatten()
    if redo.numel():
        sorted_values, sorted_ids = torch.sort(x[redo], dim=-1, descending=True, stable=True)
        values[redo], ids[redo] = sorted_values[:, :k], sorted_ids[:, :k]
    return values, ids


# -- weights ----------------------------------------------------------------------------------
def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write the model's weights to a safetensors file, atomically; tied weights stored once."""
    atomic_write_bytes(Path(path), safetensors_bytes(model_tensors(model)))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights saved by :func:`save_weights` (or a checkpoint's model.safetensors).

    A file that does not match the model raises CheckpointError naming the file and the first
    unexpected, missing or mis-shaped tensor.
    """
    load_model_tensors(model, Path(path))
