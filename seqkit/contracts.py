"""The plugin contracts: one place that says what each kind of plugin must provide.

Kinds and their entry-point groups:

=============  =====================  ==========================================
kind           entry-point group      contract
=============  =====================  ==========================================
tokenizer      ``seqkit.tokenizers``  :class:`Tokenizer` (torch-free)
encoder        ``seqkit.encoders``    :class:`Encoder` (a ``torch.nn.Module``)
decoder        ``seqkit.decoders``    :class:`Decoder` (a ``torch.nn.Module``)
attention      ``seqkit.attention``   :class:`Attention` (a ``torch.nn.Module``)
=============  =====================  ==========================================

Every plugin class carries ``Config``: a pydantic model (``extra="forbid"``) holding its own
options and their defaults. A recipe names the plugin with ``type:``; the remaining keys are
validated against that plugin's ``Config``.

This module imports no torch: tensors are named in annotations only. Shapes use
B = batch, S = source length, T = target length, H = hidden size, V = vocabulary size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel
    from torch import Tensor

# Special ids shared by every built-in tokenizer. Third-party tokenizers may differ; the ids a
# model was trained with are saved in its run directory and exported config.json.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# Upper bounds on the sizes a recipe may ask of the built-in modules (plugins may reuse them):
# past these a recipe check took minutes (10^5 layers) or training asked for 192 GB (10^9 units).
MAX_WIDTH = 65_536  # embedding, hidden and attention sizes
MAX_LAYERS = 64
# Parameters of a whole model (measured on the meta device at recipe load); 2e9 fp32 = 8 GB.
MAX_PARAMETERS = 2_000_000_000


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> ids. Must import no torch (the runtime loads tokenizers).

    ``save(d)`` writes ``d/tokenizer.json`` holding at least ``{"type": <entry-point name>}``
    plus whatever files it needs; ``load(d)`` restores an equal tokenizer from them.
    """

    Config: ClassVar[type[BaseModel]]
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    @classmethod
    def train(cls, texts: Sequence[str], config: Any, workdir: Path) -> Tokenizer:
        """Build the vocabulary/model from training texts (one sentence each)."""

    def encode(self, text: str) -> list[int]:
        """Ids without bos/eos."""

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of encode; special ids are skipped."""

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Tokenizer: ...


@runtime_checkable
class SamplingTokenizer(Protocol):
    """A tokenizer that can also sample segmentations (``train.subword_sampling``: subword
    regularization, BPE-dropout). Optional: only training calls it, never inference or export."""

    def sample_encode(self, texts: Sequence[str], alpha: float, nbest_size: int, seed: int) -> list[list[int]]:
        """One sampled segmentation of each text (ids without bos/eos); equal for equal ``seed``
        (0 <= seed < 2**32). alpha: unigram smoothing exponent, or BPE's merge-dropout probability;
        nbest_size: sample among the n best (-1: all), unigram only."""


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    memory: (B, S, H_enc) one vector per source position (zeros at padding).
    mask: (B, S) bool, True at real tokens.
    hidden: (L, B, H_final) final hidden state per layer (bidirectional: both directions
        concatenated, so H_final = 2 * hidden_size); the decoder's bridge maps it to its size.
    cell: (L, B, H_final) final LSTM cell state, or None for cells that have none.
    src_ids: (B, S) int64 the source ids themselves, for a decoder that copies source tokens
        (``model.decoder.copy_source``). Encoders leave it None; :func:`seqkit.models.run_encoder`
        fills it, so no encoder plugin has to know about copying.
    """

    memory: Tensor
    mask: Tensor
    hidden: Tensor
    cell: Tensor | None
    src_ids: Tensor | None = None


@runtime_checkable
class Encoder(Protocol):
    """``__init__(config, vocab_size: int, pad_id: int)``; owns its source embedding."""

    Config: ClassVar[type[BaseModel]]
    output_size: int  # H_enc of EncoderOutput.memory
    final_size: int  # H_final of EncoderOutput.hidden
    num_layers: int  # L of EncoderOutput.hidden

    def forward(self, src: Tensor, lengths: Tensor) -> EncoderOutput:
        """src: (B, S) int64 padded with pad_id; lengths: (B,) int64."""


@runtime_checkable
class Attention(Protocol):
    """``__init__(config, query_size: int, memory_size: int)``.

    ``output_size`` is the context size (normally memory_size). ``needs_previous_state``:
    True for Bahdanau-style attention (query is the previous decoder state, context feeds the
    RNN input); False for Luong-style (query is the current RNN output).
    """

    Config: ClassVar[type[BaseModel]]
    output_size: int
    needs_previous_state: ClassVar[bool]

    def precompute(self, memory: Tensor) -> Tensor:
        """(B, S, H_enc) -> keys (B, S, K), computed once per source (e.g. W·memory)."""

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, T, Q) -> (context (B, T, H_enc), weights (B, T, S)); T may be 1."""


@runtime_checkable
class Decoder(Protocol):
    """``__init__(config, vocab_size: int, pad_id: int, encoder: Encoder | None)``.

    ``encoder`` is None for a language model (no memory, no attention). The decoder owns its
    target embedding and output projection, so ``step`` and ``forward`` return logits:
    unnormalized scores, or already-normalized log-probabilities (a copying decoder returns the
    log of its mixture distribution). Consumers apply log_softmax / cross_entropy, which leave
    normalized log-probabilities unchanged, so both kinds work everywhere.

    Memory and state are *flat tuples of tensors*, batch on dim 0 for memory and on the dim
    listed in ``state_batch_dims`` for state: that is what beam search reorders and what ONNX
    export names ``memory_i`` / ``state_i``.
    """

    Config: ClassVar[type[BaseModel]]
    state_batch_dims: tuple[int, ...]

    def init(self, enc: EncoderOutput | None, batch_size: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """-> (memory, state). memory is constant over decoding (e.g. memory, mask as float, keys)."""

    def step(self, y_prev: Tensor, memory: tuple[Tensor, ...], state: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """y_prev (B,) int64 -> (logits (B, V), attention (B, S) or (B, 0), new state)."""

    def forward(self, y_in: Tensor, memory: tuple[Tensor, ...], state: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """Teacher forcing: y_in (B, T) -> (logits (B, T, V), attention (B, T, S), final state).

        Must equal stepping ``step`` over y_in[:, t] (a test checks it); may use a faster path.
        """


KINDS: dict[str, str] = {
    "tokenizer": "seqkit.tokenizers",
    "encoder": "seqkit.encoders",
    "decoder": "seqkit.decoders",
    "attention": "seqkit.attention",
}

CONTRACTS: dict[str, type] = {
    "tokenizer": Tokenizer,
    "encoder": Encoder,
    "decoder": Decoder,
    "attention": Attention,
}

# Attributes checked on the plugin *class* when it is loaded (instances are checked by
# seqkit.testing). Protocol isinstance checks need instances, so the registry checks these.
REQUIRED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "tokenizer": ("Config", "train", "encode", "decode", "save", "load"),
    "encoder": ("Config", "forward"),
    "decoder": ("Config", "init", "step", "forward"),
    "attention": ("Config", "precompute", "forward", "needs_previous_state"),
}
