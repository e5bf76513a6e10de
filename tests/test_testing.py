"""seqkit.testing: every built-in plugin passes its contract check, and each check catches the
bug it exists for (padding leaks, forward != step, wrong batch dims, ignored masks, lossy save,
torch imports, sizes baked into an ONNX trace)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from seqkit.contracts import EncoderOutput
from seqkit.nn import attention as A
from seqkit.nn.decoders import GRUDecoder, LSTMDecoder, RNNDecoder
from seqkit.nn.encoders import GRUEncoder, LSTMEncoder, RNNEncoder
from seqkit.testing import check_attention, check_decoder, check_encoder, check_tokenizer
from seqkit.tokenizers.base import SPECIAL_TOKENS
from seqkit.tokenizers.char import CharTokenizer
from seqkit.tokenizers.spm import SentencePieceTokenizer
from seqkit.tokenizers.word import WordTokenizer

TEXTS = ["the cat sat on the mat", "a dog ran  fast", "Grüße, Welt! 12.5", "the cat", "tab\tseparated words"] * 3
SMALL_ENCODER = {"embedding_dim": 8, "hidden_size": 6, "num_layers": 2}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# -- built-ins pass -------------------------------------------------------------------------------
def test_importing_seqkit_testing_imports_no_torch():
    code = "import sys, seqkit.testing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("cls,onnx", [(GRUEncoder, True), (LSTMEncoder, False), (RNNEncoder, False)])
def test_builtin_encoders_pass(cls, onnx):
    encoder = check_encoder(cls, SMALL_ENCODER, onnx=onnx)
    assert encoder.final_size == 12  # bidirectional by default


def test_builtin_unidirectional_encoder_passes():
    check_encoder(LSTMEncoder, {**SMALL_ENCODER, "bidirectional": False}, onnx=False)


@pytest.mark.parametrize("cls,attention,input_feeding,onnx", [
    (LSTMDecoder, "luong-general", False, True),
    (GRUDecoder, "bahdanau", True, True),
    (RNNDecoder, "luong-concat", False, False),
    (LSTMDecoder, "luong-dot", True, False),
    # attention none: the seq2seq encode graph with an unused encoder memory does not export
    # (legacy exporter crash in the peephole pass); the torch-side checks still run.
    (GRUDecoder, "none", False, False),
])
def test_builtin_decoders_pass(cls, attention, input_feeding, onnx):
    spec = {"type": attention, **({"attention_size": 8} if attention in ("bahdanau", "luong-concat") else {})}
    config = {"embedding_dim": 8, "hidden_size": 12, "num_layers": 2, "attention": spec, "input_feeding": input_feeding}
    decoder = check_decoder(cls, config, onnx=onnx)
    assert decoder.state_batch_dims[0] == 1


@pytest.mark.parametrize("cls,sizes", [
    (A.NoAttention, {}),
    (A.BahdanauAttention, {}),
    (A.LuongDotAttention, {"query_size": 10, "memory_size": 10}),
    (A.LuongGeneralAttention, {}),
    (A.LuongConcatAttention, {}),
])
def test_builtin_attention_passes(cls, sizes):
    attention = check_attention(cls, None, **sizes)
    assert attention.output_size == (0 if cls is A.NoAttention else sizes.get("memory_size", 10))


@pytest.mark.parametrize("cls,config", [
    (CharTokenizer, None),
    (WordTokenizer, {"pattern": r"\w+|[^\w\s]"}),
    (SentencePieceTokenizer, {"vocab_size": 36}),
])
def test_builtin_tokenizers_pass(cls, config):
    tok = check_tokenizer(cls, TEXTS, config)
    assert tok.vocab_size > 4


# -- each check catches its bug ---------------------------------------------------------------------
class BagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_size: int = 8
    leak_padding: bool = False  # bug: the summary averages padding too
    bake_length: bool = False  # bug: the source length becomes a constant of the ONNX trace
    flat_hidden: bool = False  # bug: hidden (B, H) instead of (L, B, H)


class BagEncoder(nn.Module):
    """A minimal, correct encoder (tanh of embeddings, mean summary) with switchable bugs."""

    Config = BagConfig

    def __init__(self, config: BagConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.hidden_size, padding_idx=pad_id)
        self.output_size = self.final_size = config.hidden_size
        self.num_layers = 1

    def forward(self, src, lengths):
        width = int(src.size(1)) if self.config.bake_length else src.size(1)
        mask = torch.arange(width)[None] < lengths[:, None]  # (B, S)
        memory = torch.tanh(self.embedding(src)) * mask[:, :, None]  # (B, S, H)
        hidden = memory.sum(1) / lengths.clamp(min=1)[:, None]  # (B, H)
        if self.config.leak_padding:
            hidden = torch.tanh(self.embedding(src)).mean(1)
        return EncoderOutput(memory, mask, hidden if self.config.flat_hidden else hidden[None], None)


def test_a_small_third_party_encoder_passes_everything():
    check_encoder(BagEncoder, {})


@pytest.mark.parametrize("bug,message", [
    ({"leak_padding": True}, r"sentence 1 \(length 4\) encoded alone vs in a padded batch: hidden: max \|diff\|"),
    ({"flat_hidden": True}, r"EncoderOutput.hidden \(num_layers, B, final_size\): shape \(3, 8\), expected \(1, 3, 8\)"),
])
def test_check_encoder_catches(bug, message):
    with pytest.raises(AssertionError, match=message) as err:
        check_encoder(BagEncoder, bug, onnx=False)
    assert str(err.value).startswith("encoder test_testing.BagEncoder: ")


@pytest.mark.filterwarnings("ignore")
def test_check_encoder_catches_a_length_baked_into_the_onnx_trace():
    with pytest.raises(AssertionError, match=r"the exported encoder fails at B=4, S=9 \(traced at other sizes\)"):
        check_encoder(BagEncoder, {"bake_length": True})


class DriftingDecoder(GRUDecoder):
    """Teacher forcing that disagrees with stepping."""

    def forward(self, y_in, memory, state):
        logits, weights, state = super().forward(y_in, memory, state)
        return logits + 0.01, weights, state


class BatchFirstClaimDecoder(LSTMDecoder):
    """Claims its (L, B, H) state is batched on dim 0."""

    def __init__(self, *args):
        super().__init__(*args)
        self.state_batch_dims = (0, 0)


SMALL_DECODER = {"embedding_dim": 8, "hidden_size": 12, "num_layers": 2}


@pytest.mark.parametrize("cls,message", [
    (DriftingDecoder, r"forward\(\) vs stepping step\(\): logits: max \|diff\| 0.01"),
    (BatchFirstClaimDecoder, r"state\[0\] has shape \(2, 3, 12\): the batch \(3\) must be dim 0 \(state_batch_dims\)"),
])
def test_check_decoder_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_decoder(cls, SMALL_DECODER, onnx=False)


class MaskBlindAttention(A.LuongGeneralAttention):
    """Softmax over every source position, padding included."""

    def forward(self, query, keys, memory, mask):
        weights = torch.softmax(torch.bmm(query, keys.transpose(1, 2)), dim=-1)
        return torch.bmm(weights, memory), weights


def test_check_attention_catches_an_ignored_mask():
    with pytest.raises(AssertionError, match=r"attention weight .* on a padded source position: the mask is ignored"):
        check_attention(MaskBlindAttention, onnx=False)


class ForgetfulTokenizer(CharTokenizer):
    """load() forgets the vocabulary it saved."""

    type_name = "forgetful"

    @classmethod
    def load(cls, directory):
        return cls(cls.Config(), list(SPECIAL_TOKENS))


def test_check_tokenizer_catches_a_lossy_save():
    with pytest.raises(AssertionError, match=r"load\(save\(tok\)\) has vocab_size 4"):
        check_tokenizer(ForgetfulTokenizer, TEXTS, torch_free=False)


def test_check_tokenizer_catches_a_type_that_resolves_elsewhere():
    class Impostor(CharTokenizer):  # saves type "char", which names the built-in class
        pass

    with pytest.raises(AssertionError, match="names type 'char', but that entry point resolves to seqkit.tokenizers.char"):
        check_tokenizer(Impostor, TEXTS, torch_free=False)


def test_check_tokenizer_catches_a_torch_import(tmp_path, monkeypatch):
    (tmp_path / "torchy_tokenizer.py").write_text(textwrap.dedent("""
        import torch  # a tokenizer must not need this
        from seqkit.tokenizers.char import CharTokenizer

        class TorchyTokenizer(CharTokenizer):
            type_name = "torchy"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from torchy_tokenizer import TorchyTokenizer

    with pytest.raises(AssertionError, match="importing torchy_tokenizer imports torch"):
        check_tokenizer(TorchyTokenizer, TEXTS)
