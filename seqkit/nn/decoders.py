"""Recurrent decoder plugins (RNN, LSTM, GRU), one implementation for every attention style.

Luong style (``none``, ``luong-*``)::

    h_t   = RNN(emb(y_{t-1}) [; h~_{t-1} if input_feeding], h_{t-1})
    c_t   = attn(h_t, memory)
    h~_t  = tanh(W_c [c_t; h_t])          (h~_t = h_t without attention)
    logit = W_o h~_t

Bahdanau style (``bahdanau``: the attention's ``needs_previous_state`` is True)::

    c_t   = attn(s_{t-1}[top layer], memory)
    s_t   = RNN([emb(y_{t-1}); c_t] [; h~_{t-1}], s_{t-1})
    h~_t  = tanh(W_c [c_t; s_t]);  logit = W_o h~_t

Without input feeding a Luong decoder's teacher-forced ``forward`` runs the fused RNN once over
the whole target and attends for all steps in one batched call; the other variants loop over
steps with the very code ``step`` uses. Either way ``forward`` equals stepping ``step``.

With ``copy_source: true`` the output layer is a pointer-generator (:mod:`seqkit.nn.copy`): ``step`` and
``forward`` return the log of the copy/generate mixture instead of logits.

With ``copy_oov: true`` as well (:mod:`seqkit.oov`) ids ``>= V`` are a sentence's own source words
outside the vocabulary: the decoder reads them as unk and the output has ``V + S`` columns.

With ``coverage: true`` (See et al. 2017) the attention summed over the past steps, ``cov``
(B, S), enters every attention score through its keys: ``keys + cov[..., None] * w_cov`` (w_cov
(K,), zero at first). For additive attention that is See et al.'s ``v . tanh(W_k m + W_q q +
w_c cov)``; for multiplicative ones it adds ``cov * (q . w_cov)``. Teacher forcing then runs the
attention step by step (the RNN stays fused without input feeding).

State is a flat tuple: LSTM ``(h, c)``, GRU/RNN ``(h,)``, each (L, B, H), followed by
``h~`` (B, H) when input feeding, then ``cov`` (B, S) with coverage.
Memory is ``(memory (B, S, H_enc), mask (B, S) float
1.0/0.0, keys (B, S, K))`` [+ ``src_ids (B, S)`` float32 with copy], or ``()`` without
attention (and for a language model).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from seqkit.contracts import MAX_LAYERS, MAX_WIDTH, UNK_ID, Encoder, EncoderOutput
from seqkit.errors import PluginError
from seqkit.nn.attention import NoAttention, NoAttentionConfig
from seqkit.nn.copy import CopyGenerator, source_ids
from seqkit.registry import validate_spec

ATTENTION_PATH = "model.decoder.attention"

State = tuple[Tensor, ...]


class DecoderConfig(BaseModel):
    """Options shared by every built-in recurrent decoder (recipe: ``model.decoder``)."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(256, ge=1, le=MAX_WIDTH)
    hidden_size: int = Field(512, ge=1, le=MAX_WIDTH)
    num_layers: int = Field(2, ge=1, le=MAX_LAYERS)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)  # between layers and before the output layer
    embedding_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # An attention plugin spec: {"type": <name>, ...its options}. Ignored by language models.
    attention: dict[str, Any] = Field(default_factory=lambda: {"type": "luong-general"})
    # Feed the previous attentional output h~_{t-1} into the RNN (Luong et al. 2015). Better
    # alignment, but teacher forcing must then loop over steps.
    input_feeding: bool = False
    # Initial decoder state from the encoder's final state: linear (+ tanh), zero, or copy
    # (copy needs the encoder's final size to equal hidden_size). See Bridge for layer mapping.
    bridge: Literal["linear", "zero", "copy"] = "linear"
    # Output layer shares the target embedding matrix (with a projection hidden -> embedding
    # when the sizes differ).
    tie_embeddings: bool = True
    # Pointer-generator output (See et al. 2017): mix the softmax with the attention scattered
    # onto the source ids, so source words the softmax has not learned can still be emitted.
    # Needs attention and one vocabulary for source and target (tokenizer.shared).
    copy_source: bool = False
    # With copy_source: each sentence's source words outside the vocabulary get their own ids
    # V + k (an extended vocabulary, seqkit.oov), so copying emits the word itself instead of
    # unk. Needs a word or char tokenizer.
    copy_oov: bool = False
    # Coverage (See et al. 2017): the attention summed over past steps enters the attention
    # scores; train.coverage_loss penalizes attending to a source position twice.
    coverage: bool = False


class RNNDecoderConfig(DecoderConfig):
    nonlinearity: Literal["tanh", "relu"] = "tanh"


def bridge_layers(encoder_layers: int, decoder_layers: int) -> list[int]:
    """Encoder layer feeding each decoder layer, aligned at the top.

    With more encoder layers the decoder takes the last ``decoder_layers`` of them; with fewer,
    the decoder's extra bottom layers all start from the encoder's first layer.
    """
    offset = encoder_layers - decoder_layers
    return [max(0, offset + i) for i in range(decoder_layers)]


class Bridge(nn.Module):
    """Encoder final states (L_e, B, H_final) -> decoder initial states (L_d, B, H).

    ``linear``: tanh(W_l x + b_l), one layer per decoder layer, separate weights for the hidden
    and the cell state (an LSTM decoder after a GRU/RNN encoder derives its cell from the
    encoder hidden state). ``zero``: zeros. ``copy``: the encoder states themselves (zeros for a
    cell the encoder does not have).
    """

    def __init__(self, kind: str, encoder: Encoder, hidden_size: int, num_layers: int, with_cell: bool):
        super().__init__()
        if kind == "copy" and encoder.final_size != hidden_size:
            raise PluginError(
                f"model.decoder.bridge: 'copy' needs the encoder final size ({encoder.final_size}; "
                f"2 x hidden_size when bidirectional) to equal the decoder hidden_size ({hidden_size}); "
                "use 'linear'"
            )
        self.kind, self.with_cell, self.hidden_size = kind, with_cell, hidden_size
        self.layers = bridge_layers(encoder.num_layers, num_layers)

        def projections() -> nn.ModuleList | None:
            if kind != "linear":
                return None
            return nn.ModuleList(nn.Linear(encoder.final_size, hidden_size) for _ in range(num_layers))

        self.hidden_proj = projections()
        self.cell_proj = projections() if with_cell else None

    def forward(self, enc: EncoderOutput) -> State:
        """-> (h,) or (h, c), each (L_d, B, H)."""
        hidden = enc.hidden[self.layers]  # (L_d, B, H_final)
        cell = enc.cell[self.layers] if enc.cell is not None else None
        if self.kind == "zero":
            h = hidden.new_zeros(len(self.layers), hidden.size(1), self.hidden_size)
            return (h, torch.zeros_like(h)) if self.with_cell else (h,)
        if self.kind == "copy":
            h = hidden
            c = cell if cell is not None else torch.zeros_like(h)
            return (h, c) if self.with_cell else (h,)
        h = _project(self.hidden_proj, hidden)
        if not self.with_cell:
            return (h,)
        return h, _project(self.cell_proj, cell if cell is not None else hidden)


def _project(layers: nn.ModuleList, states: Tensor) -> Tensor:
    return torch.stack([torch.tanh(proj(states[i])) for i, proj in enumerate(layers)])


class _RecurrentDecoder(nn.Module):
    """``__init__(config, vocab_size, pad_id, encoder)``; see :class:`seqkit.contracts.Decoder`."""

    Config: ClassVar[type[DecoderConfig]] = DecoderConfig
    has_cell: ClassVar[bool] = False

    def __init__(self, config: DecoderConfig, vocab_size: int, pad_id: int, encoder: Encoder | None):
        super().__init__()
        self.config = config
        hidden, emb_dim = config.hidden_size, config.embedding_dim
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.attention = self._build_attention(config, encoder)
        ctx = self.attention.output_size
        self.has_attention = ctx > 0
        self.attend_first = bool(self.attention.needs_previous_state) and self.has_attention
        feed = hidden if config.input_feeding else 0
        self.rnn = self._make_rnn(emb_dim + feed + (ctx if self.attend_first else 0), config)
        self.combine = nn.Linear(ctx + hidden, hidden, bias=False) if self.has_attention else None
        self.output_dropout = nn.Dropout(config.dropout)
        tie = config.tie_embeddings
        self.pre_output = nn.Linear(hidden, emb_dim, bias=False) if tie and hidden != emb_dim else None
        self.output = nn.Linear(emb_dim if tie else hidden, vocab_size)
        if tie:
            self.output.weight = self.embedding.weight
        self.bridge = None
        if encoder is not None:
            self.bridge = Bridge(config.bridge, encoder, hidden, config.num_layers, self.has_cell)
        self.copy = self._build_copy(config, encoder, ctx)
        self.vocab_size = vocab_size
        self.coverage_key = self._build_coverage(config, encoder)
        n_rnn = 2 if self.has_cell else 1
        self.state_batch_dims: tuple[int, ...] = ((1,) * n_rnn + ((0,) if config.input_feeding else ())
                                                  + ((0,) if config.coverage else ()))

    @staticmethod
    def _build_attention(config: DecoderConfig, encoder: Encoder | None) -> nn.Module:
        if encoder is None:  # a language model has nothing to attend to
            return NoAttention(NoAttentionConfig(), config.hidden_size, 0)
        cls, attn_config = validate_spec("attention", config.attention, ATTENTION_PATH)
        try:
            return cls(attn_config, config.hidden_size, encoder.output_size)
        except PluginError as exc:
            raise PluginError(f"{ATTENTION_PATH}: {exc}") from None

    def _build_copy(self, config: DecoderConfig, encoder: Encoder | None, ctx: int) -> CopyGenerator | None:
        if not config.copy_source:
            if config.copy_oov:
                raise PluginError("model.decoder.copy_oov: the extended vocabulary is the copy layer's; "
                                  "set model.decoder.copy_source: true")
            return None
        if encoder is None:
            raise PluginError("model.decoder.copy_source: a language model has no source to copy from; set copy_source: false")
        if not self.has_attention:
            raise PluginError("model.decoder.copy_source: copying points with the attention weights; "
                              "set model.decoder.attention to an attention type other than 'none'")
        return CopyGenerator(ctx, config.hidden_size, config.embedding_dim, config.copy_oov)

    def _build_coverage(self, config: DecoderConfig, encoder: Encoder | None) -> nn.Parameter | None:
        """w_cov (K,), K = the attention keys' width, zero so that coverage starts as a no-op."""
        if not config.coverage:
            return None
        if encoder is None or not self.has_attention:
            raise PluginError("model.decoder.coverage: coverage sums the attention weights; "
                              "set model.decoder.attention to an attention type other than 'none'")
        keys = self.attention.precompute(torch.zeros(1, 1, encoder.output_size))  # (1, 1, K)
        return nn.Parameter(torch.zeros(keys.size(-1)))

    def _make_rnn(self, input_size: int, config: DecoderConfig) -> nn.RNNBase:
        raise NotImplementedError

    # -- state plumbing ------------------------------------------------------------------------
    def _split(self, state: State) -> tuple[Any, Tensor | None, Tensor | None]:
        """Flat state -> (what nn.RNN/LSTM/GRU take as hx, h~ (B, H) or None, cov (B, S) or None)."""
        n = 2 if self.has_cell else 1
        rnn_state = (state[0], state[1]) if self.has_cell else state[0]
        feed = state[n] if self.config.input_feeding else None
        cov = state[-1] if self.config.coverage else None
        return rnn_state, feed, cov

    def _join(self, rnn_state: Any, att_out: Tensor, cov: Tensor | None) -> State:
        """Inverse of _split; att_out (B, H) is kept only when input feeding, cov with coverage."""
        flat = tuple(rnn_state) if self.has_cell else (rnn_state,)
        return flat + ((att_out,) if self.config.input_feeding else ()) + ((cov,) if cov is not None else ())

    def init(self, enc: EncoderOutput | None, batch_size: int) -> tuple[State, State]:
        """-> (memory, state); ``enc`` None (language model) gives () and a zero state."""
        if enc is None or self.bridge is None:
            h = self.embedding.weight.new_zeros(self.config.num_layers, batch_size, self.config.hidden_size)
            rnn_state: State = (h, torch.zeros_like(h)) if self.has_cell else (h,)
        else:
            rnn_state = self.bridge(enc)
        memory: State = ()
        if enc is not None and self.has_attention:
            mask = enc.mask.to(enc.memory.dtype)  # float so exported graphs need no bool inputs
            memory = (enc.memory, mask, self.attention.precompute(enc.memory))
            if self.copy is not None:
                if enc.src_ids is None:
                    raise PluginError("model.decoder.copy_source: the encoder output carries no src_ids; "
                                      "encode through seqkit.models.run_encoder")
                memory += (enc.src_ids.float(),)  # float32: exported memory is float (ids exact < 2**24)
        # zeros_like (not new_zeros(batch_size, ...)) keeps the batch size symbolic when traced.
        feed = (torch.zeros_like(rnn_state[0][0]),) if self.config.input_feeding else ()
        cov = (torch.zeros_like(memory[1]),) if self.coverage_key is not None else ()  # (B, S)
        return memory, rnn_state + feed + cov

    # -- one step and the whole sequence -------------------------------------------------------
    def _attend(self, query: Tensor, memory: State, cov: Tensor | None = None) -> tuple[Tensor | None, Tensor]:
        """query (B, T, H) -> (context (B, T, C) or None, weights (B, T, S) or (B, T, 0));
        ``cov`` (B, S): the coverage the scores see (T must then be 1)."""
        if not self.has_attention:
            return None, query[..., :0]
        mem, mask, keys = memory[:3]
        if cov is not None:
            keys = keys + cov[:, :, None].to(keys.dtype) * self.coverage_key.to(keys.dtype)  # (B, S, K)
        return self.attention(query, keys, mem, mask)

    def _attend_steps(self, out: Tensor, memory: State, cov: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Coverage over a whole target: out (B, T, H) -> (context (B, T, C), weights (B, T, S),
        final cov (B, S)); step t sees the attention of steps < t, as ``step`` does."""
        contexts, all_weights = [], []
        for t in range(out.size(1)):
            context, weights = self._attend(out[:, t : t + 1], memory, cov)
            cov = cov + weights[:, 0].to(cov.dtype)
            contexts.append(context)
            all_weights.append(weights)
        return torch.cat(contexts, dim=1), torch.cat(all_weights, dim=1), cov

    def _embed(self, y: Tensor) -> Tensor:
        """y (B, T) int64 -> (B, T, E); an extended id (copy_oov: a source word) reads as unk."""
        if self.config.copy_oov:
            y = y.masked_fill(y >= self.vocab_size, UNK_ID)
        return self.embedding_dropout(self.embedding(y))

    def _attentional(self, out: Tensor, context: Tensor | None) -> Tensor:
        """h~ = tanh(W_c [c; h]) (B, T, H); the RNN output itself without attention."""
        if self.combine is None or context is None:
            return out
        return torch.tanh(self.combine(torch.cat([context, out], dim=-1)))

    def _advance(self, emb: Tensor, memory: State, state: State) -> tuple[Tensor, Tensor | None, Tensor, State]:
        """One step: emb (B, 1, E) -> (h~ (B, 1, H), context (B, 1, C) or None, weights (B, 1, S),
        new state)."""
        rnn_state, feed, cov = self._split(state)
        inputs = [emb]
        context, weights = None, None
        if self.attend_first:
            top = (rnn_state[0] if self.has_cell else rnn_state)[-1]  # (B, H) top layer of s_{t-1}
            context, weights = self._attend(top[:, None, :], memory, cov)
            inputs.append(context)
        if feed is not None:
            inputs.append(feed[:, None, :])
        out, rnn_state = self.rnn(torch.cat(inputs, dim=-1), rnn_state)  # (B, 1, H)
        if not self.attend_first:
            context, weights = self._attend(out, memory, cov)
        att_out = self._attentional(out, context)
        if cov is not None:
            cov = cov + weights[:, 0].to(cov.dtype)
        return att_out, context, weights, self._join(rnn_state, att_out[:, 0], cov)

    def _logits(self, att_out: Tensor, context: Tensor | None, weights: Tensor, emb: Tensor, memory: State) -> Tensor:
        """h~ (B, [T,] H) -> logits (B, [T,] V), or with copy the log of the mixture."""
        x = self.output_dropout(att_out)
        if self.pre_output is not None:
            x = self.pre_output(x)
        logits = self.output(x)
        if self.copy is None:
            return logits
        return self.copy(logits, weights, source_ids(memory[3]), context, att_out, emb)

    def step(self, y_prev: Tensor, memory: State, state: State) -> tuple[Tensor, Tensor, State]:
        """y_prev (B,) int64 -> (logits (B, V), attention (B, S) or (B, 0), new state)."""
        emb = self._embed(y_prev[:, None])  # (B, 1, E)
        att_out, context, weights, state = self._advance(emb, memory, state)
        context = context[:, 0] if context is not None else None
        return self._logits(att_out[:, 0], context, weights[:, 0], emb[:, 0], memory), weights[:, 0], state

    def forward(self, y_in: Tensor, memory: State, state: State) -> tuple[Tensor, Tensor, State]:
        """Teacher forcing: y_in (B, T) -> (logits (B, T, V), attention (B, T, S), final state)."""
        emb = self._embed(y_in)  # (B, T, E)
        if self.attend_first or self.config.input_feeding:
            outs, contexts, all_weights = [], [], []
            for t in range(y_in.size(1)):
                att_out, context, weights, state = self._advance(emb[:, t : t + 1], memory, state)
                outs.append(att_out)
                contexts.append(context)
                all_weights.append(weights)
            att_out, weights = torch.cat(outs, dim=1), torch.cat(all_weights, dim=1)
            context = torch.cat(contexts, dim=1) if self.has_attention else None
        else:  # fast path: one fused RNN call, attention for all T steps at once
            rnn_state, _, cov = self._split(state)
            out, rnn_state = self.rnn(emb, rnn_state)  # (B, T, H)
            if cov is None:
                context, weights = self._attend(out, memory)
            else:
                context, weights, cov = self._attend_steps(out, memory, cov)
            att_out = self._attentional(out, context)
            state = self._join(rnn_state, att_out[:, -1], cov)
        return self._logits(att_out, context, weights, emb, memory), weights, state


def _rnn_kwargs(input_size: int, config: DecoderConfig) -> dict[str, Any]:
    return {
        "input_size": input_size,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        # nn.RNNBase warns when inter-layer dropout is set on a single layer.
        "dropout": config.dropout if config.num_layers > 1 else 0.0,
        "batch_first": True,
    }


class RNNDecoder(_RecurrentDecoder):
    """Elman RNN decoder (``tanh`` or ``relu``)."""

    Config = RNNDecoderConfig

    def _make_rnn(self, input_size: int, config: RNNDecoderConfig) -> nn.RNNBase:  # type: ignore[override]
        return nn.RNN(nonlinearity=config.nonlinearity, **_rnn_kwargs(input_size, config))


class LSTMDecoder(_RecurrentDecoder):
    """LSTM decoder; state ``(h, c)`` [+ h~]."""

    Config = DecoderConfig
    has_cell = True

    def _make_rnn(self, input_size: int, config: DecoderConfig) -> nn.RNNBase:
        return nn.LSTM(**_rnn_kwargs(input_size, config))


class GRUDecoder(_RecurrentDecoder):
    """GRU decoder."""

    Config = DecoderConfig

    def _make_rnn(self, input_size: int, config: DecoderConfig) -> nn.RNNBase:
        return nn.GRU(**_rnn_kwargs(input_size, config))
