"""Recurrent encoders: shapes, per-layer final-state layout, padding invariance."""

import pytest
import torch
from pydantic import ValidationError

from seqkit.nn.encoders import EncoderConfig, GRUEncoder, LSTMEncoder, RNNEncoder, RNNEncoderConfig
from seqkit.registry import get_plugin

CELLS = {"lstm": (LSTMEncoder, EncoderConfig), "gru": (GRUEncoder, EncoderConfig), "rnn": (RNNEncoder, RNNEncoderConfig)}
VOCAB, PAD = 12, 0


def make(cell, bidirectional=True, layers=2):
    torch.manual_seed(0)
    cls, config_cls = CELLS[cell]
    config = config_cls(embedding_dim=8, hidden_size=5, num_layers=layers, bidirectional=bidirectional)
    return cls(config, VOCAB, PAD).eval()


def batch():
    src = torch.tensor([[4, 5, 6, 7, 8], [9, 10, 11, 0, 0], [4, 0, 0, 0, 0]])
    return src, torch.tensor([5, 3, 1])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [True, False])
def test_shapes(cell, bidirectional):
    enc = make(cell, bidirectional, layers=3)
    size = 10 if bidirectional else 5
    assert (enc.output_size, enc.final_size, enc.num_layers) == (size, size, 3)
    src, lengths = batch()
    out = enc(src, lengths)
    assert out.memory.shape == (3, 5, size)
    assert out.mask.dtype == torch.bool
    assert out.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4]
    assert out.hidden.shape == (3, 3, size)
    if cell == "lstm":
        assert out.cell.shape == (3, 3, size)
    else:
        assert out.cell is None
    assert torch.all(out.memory[1, 3:] == 0) and torch.all(out.memory[2, 1:] == 0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_final_state_layout_matches_memory(cell):
    """Top layer: forward half = output at the last real token, backward half = output at 0."""
    enc = make(cell, bidirectional=True)
    src, lengths = batch()
    out = enc(src, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out.hidden[-1, b, :5], out.memory[b, n - 1, :5])
        torch.testing.assert_close(out.hidden[-1, b, 5:], out.memory[b, 0, 5:])


@pytest.mark.parametrize("cell", list(CELLS))
def test_padding_does_not_change_a_sentence(cell):
    enc = make(cell)
    src, lengths = batch()
    full = enc(src, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = enc(src[b : b + 1, :n], lengths[b : b + 1])
        torch.testing.assert_close(alone.memory[0], full.memory[b, :n], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone.hidden[:, 0], full.hidden[:, b], atol=1e-6, rtol=1e-5)
        if cell == "lstm":
            torch.testing.assert_close(alone.cell[:, 0], full.cell[:, b], atol=1e-6, rtol=1e-5)


def test_empty_source_does_not_crash():
    enc = make("gru")
    out = enc(torch.tensor([[4, 5], [0, 0]]), torch.tensor([2, 0]))
    assert out.mask[1].sum() == 0
    assert torch.isfinite(out.hidden).all()


def test_source_embedding_uses_pad_id():
    enc = make("lstm")
    assert enc.embedding.padding_idx == PAD
    assert torch.all(enc.embedding.weight[PAD] == 0)


def test_config_defaults_and_unknown_keys():
    config = EncoderConfig()
    assert (config.embedding_dim, config.hidden_size, config.num_layers, config.bidirectional) == (256, 256, 2, True)
    assert (config.dropout, config.embedding_dropout) == (0.2, 0.1)
    assert RNNEncoderConfig().nonlinearity == "tanh"
    with pytest.raises(ValidationError):
        EncoderConfig(hidden_sise=3)
    with pytest.raises(ValidationError):
        EncoderConfig(nonlinearity="relu")  # only the rnn encoder has it
    with pytest.raises(ValidationError):
        RNNEncoderConfig(nonlinearity="sigmoid")


def test_relu_rnn():
    enc = RNNEncoder(RNNEncoderConfig(embedding_dim=4, hidden_size=3, nonlinearity="relu"), VOCAB, PAD)
    assert enc.rnn.nonlinearity == "relu"


@pytest.mark.parametrize("name", list(CELLS))
def test_entry_points_resolve(name):
    assert get_plugin("encoder", name) is CELLS[name][0]
