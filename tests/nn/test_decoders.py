"""Recurrent decoders: forward == stepping, bridge, state layout, tying."""

import itertools

import pytest
import torch
from pydantic import ValidationError

from seqkit.errors import PluginError
from seqkit.nn.decoders import DecoderConfig, GRUDecoder, LSTMDecoder, RNNDecoder, RNNDecoderConfig, bridge_layers
from seqkit.nn.encoders import EncoderConfig, GRUEncoder, LSTMEncoder
from seqkit.registry import get_plugin

CELLS = {"lstm": (LSTMDecoder, DecoderConfig), "gru": (GRUDecoder, DecoderConfig), "rnn": (RNNDecoder, RNNDecoderConfig)}
ATTENTIONS = ["none", "bahdanau", "luong-dot", "luong-general", "luong-concat"]
SRC_V, TGT_V, PAD = 11, 13, 0


def make(cell, attention="luong-general", input_feeding=False, encoder_cls=GRUEncoder, **options):
    """A 1-layer bidirectional encoder (final size 12) and a 2-layer decoder (hidden 12)."""
    torch.manual_seed(0)
    encoder = encoder_cls(EncoderConfig(embedding_dim=6, hidden_size=6, num_layers=1), SRC_V, PAD)
    spec = {"type": attention}
    if attention in ("bahdanau", "luong-concat"):
        spec["attention_size"] = 7
    cls, config_cls = CELLS[cell]
    options = {"embedding_dim": 8, "hidden_size": 12, "num_layers": 2, **options}
    config = config_cls(attention=spec, input_feeding=input_feeding, **options)
    decoder = cls(config, TGT_V, PAD, encoder)
    return encoder.eval(), decoder.eval()


def inputs():
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(4, SRC_V, (3, 6), generator=gen)
    lengths = torch.tensor([6, 4, 2])
    src = src.masked_fill(torch.arange(6)[None] >= lengths[:, None], PAD)
    y_in = torch.randint(2, TGT_V, (3, 5), generator=gen)
    return src, lengths, y_in


def step_through(decoder, y_in, memory, state):
    logits, weights = [], []
    for t in range(y_in.size(1)):
        step_logits, step_weights, state = decoder.step(y_in[:, t], memory, state)
        logits.append(step_logits)
        weights.append(step_weights)
    return torch.stack(logits, 1), torch.stack(weights, 1), state


def assert_parity(decoder, y_in, memory, state):
    logits, weights, final = decoder(y_in, memory, state)
    step_logits, step_weights, step_final = step_through(decoder, y_in, memory, state)
    assert logits.shape == (y_in.size(0), y_in.size(1), TGT_V)
    torch.testing.assert_close(step_logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step_weights, weights, atol=1e-5, rtol=1e-5)
    assert len(final) == len(step_final) == len(decoder.state_batch_dims)
    for a, b in zip(final, step_final):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    return weights


@pytest.mark.parametrize("cell,attention,input_feeding", list(itertools.product(CELLS, ATTENTIONS, [False, True])))
def test_forward_equals_stepping(cell, attention, input_feeding):
    encoder, decoder = make(cell, attention, input_feeding)
    src, lengths, y_in = inputs()
    with torch.no_grad():
        memory, state = decoder.init(encoder(src, lengths), src.size(0))
        weights = assert_parity(decoder, y_in, memory, state)
    if attention == "none":
        assert memory == () and weights.shape == (3, 5, 0)
    else:
        assert weights.shape == (3, 5, 6)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
        assert torch.all(weights[2, :, 2:] == 0)  # no attention on padding


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("input_feeding", [False, True])
def test_language_model_forward_equals_stepping(cell, input_feeding):
    cls, config_cls = CELLS[cell]
    torch.manual_seed(0)
    config = config_cls(embedding_dim=8, hidden_size=12, num_layers=2, input_feeding=input_feeding)
    decoder = cls(config, TGT_V, PAD, None).eval()
    memory, state = decoder.init(None, 3)
    assert memory == ()
    assert all(torch.all(s == 0) for s in state)
    with torch.no_grad():
        assert_parity(decoder, inputs()[2], memory, state)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("input_feeding", [False, True])
def test_state_layout(cell, input_feeding):
    encoder, decoder = make(cell, input_feeding=input_feeding)
    src, lengths, _ = inputs()
    memory, state = decoder.init(encoder(src, lengths), 3)
    n_rnn = 2 if cell == "lstm" else 1
    assert decoder.state_batch_dims == (1,) * n_rnn + ((0,) if input_feeding else ())
    for tensor, dim in zip(state, decoder.state_batch_dims):
        assert tensor.size(dim) == 3
    assert [tuple(s.shape) for s in state[:n_rnn]] == [(2, 3, 12)] * n_rnn
    if input_feeding:
        assert state[-1].shape == (3, 12)
    mem, mask, keys = memory
    assert mem.shape == (3, 6, 12) and keys.shape == (3, 6, 12)
    assert mask.dtype == mem.dtype and mask.tolist()[2] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_bridge_layer_mapping():
    assert bridge_layers(3, 2) == [1, 2]  # the top encoder layers
    assert bridge_layers(2, 2) == [0, 1]
    assert bridge_layers(1, 3) == [0, 0, 0]
    assert bridge_layers(2, 3) == [0, 0, 1]


@pytest.mark.parametrize("bridge", ["linear", "zero", "copy"])
@pytest.mark.parametrize("encoder_cls", [GRUEncoder, LSTMEncoder])
@pytest.mark.parametrize("cell", list(CELLS))
def test_bridge_from_bidirectional_encoder(bridge, encoder_cls, cell):
    encoder, decoder = make(cell, encoder_cls=encoder_cls, bridge=bridge)
    src, lengths, _ = inputs()
    enc = encoder(src, lengths)
    assert enc.hidden.shape == (1, 3, 12)  # both directions of one layer
    _, state = decoder.init(enc, 3)
    n_rnn = 2 if cell == "lstm" else 1
    for s in state[:n_rnn]:
        assert s.shape == (2, 3, 12)
    if bridge == "zero":
        assert all(torch.all(s == 0) for s in state)
    if bridge == "copy":
        torch.testing.assert_close(state[0], enc.hidden.expand(2, -1, -1))
        if cell == "lstm":
            expected = enc.cell.expand(2, -1, -1) if enc.cell is not None else torch.zeros(2, 3, 12)
            torch.testing.assert_close(state[1], expected)
    if bridge == "linear":
        assert torch.all(state[0].abs() < 1) and state[0].abs().sum() > 0


def test_copy_bridge_size_mismatch():
    with pytest.raises(PluginError, match=r"model\.decoder\.bridge.*\(12.*\(20\)"):
        make("lstm", hidden_size=20, bridge="copy")


def test_luong_dot_mismatch_names_the_recipe_path():
    with pytest.raises(PluginError, match=r"^model\.decoder\.attention: luong-dot .*\(20\).*\(12"):
        make("gru", attention="luong-dot", hidden_size=20)


def test_unknown_attention_name_names_the_path():
    with pytest.raises(PluginError, match=r"model\.decoder\.attention\.type: unknown attention 'luong-genral'.*did you mean 'luong-general'"):
        make("gru", attention="luong-genral")


def test_tied_output_projection():
    _, decoder = make("lstm")  # hidden 12 != embedding 8: a projection bridges the sizes
    assert decoder.output.weight is decoder.embedding.weight
    assert decoder.pre_output.weight.shape == (8, 12)
    _, same = make("lstm", embedding_dim=12)
    assert same.pre_output is None and same.output.weight is same.embedding.weight
    _, untied = make("lstm", tie_embeddings=False)
    assert untied.pre_output is None and untied.output.weight is not untied.embedding.weight
    assert untied.output.weight.shape == (TGT_V, 12)


def test_fast_path_is_one_rnn_call():
    """Luong without input feeding runs the RNN once for all steps; Bahdanau once per step."""
    calls = {"n": 0}
    for attention, expected in (("luong-general", 1), ("bahdanau", 5)):
        encoder, decoder = make("gru", attention)
        decoder.rnn.register_forward_hook(lambda *args: calls.__setitem__("n", calls["n"] + 1))
        src, lengths, y_in = inputs()
        calls["n"] = 0
        memory, state = decoder.init(encoder(src, lengths), 3)
        decoder(y_in, memory, state)
        assert calls["n"] == expected


def test_training_mode_backpropagates():
    encoder, decoder = make("lstm", "bahdanau", True)
    encoder.train(), decoder.train()
    src, lengths, y_in = inputs()
    memory, state = decoder.init(encoder(src, lengths), 3)
    logits, _, _ = decoder(y_in, memory, state)
    logits.sum().backward()
    assert encoder.embedding.weight.grad.abs().sum() > 0
    assert decoder.attention.key_proj.weight.grad.abs().sum() > 0


def test_config_defaults():
    config = DecoderConfig()
    assert (config.embedding_dim, config.hidden_size, config.num_layers) == (256, 512, 2)
    assert config.attention == {"type": "luong-general"}
    assert (config.input_feeding, config.bridge, config.tie_embeddings) == (False, "linear", True)
    with pytest.raises(ValidationError):
        DecoderConfig(bridge="mlp")
    with pytest.raises(ValidationError):
        DecoderConfig(input_feed=True)


@pytest.mark.parametrize("name", list(CELLS))
def test_entry_points_resolve(name):
    assert get_plugin("decoder", name) is CELLS[name][0]
