"""The conv encoder: seqkit's contract checks, every decoder and bridge on top, receptive field,
config validation, discovery through the entry point, and learning a tiny reverse task."""

from __future__ import annotations

import itertools

import pytest
import torch
from pydantic import ValidationError

from seqkit.model_config import ModelConfig
from seqkit.models import build_model
from seqkit.registry import default_registry
from seqkit.testing import check_encoder
from seqkit_convenc.encoder import ConvEncoder, ConvEncoderConfig

SMALL = {"embedding_dim": 8, "hidden_size": 16, "num_layers": 3, "kernel_size": 3, "dropout": 0.1}
VOCAB, PAD, BOS, EOS = 12, 0, 2, 3


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and the CPU is shared with other tests."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_contract_checks_pass_including_onnx_parity():
    encoder = check_encoder(ConvEncoder, SMALL)
    assert (encoder.output_size, encoder.final_size, encoder.num_layers) == (16, 16, 3)


def test_contract_checks_pass_with_one_layer_and_wide_kernel():
    check_encoder(ConvEncoder, {**SMALL, "num_layers": 1, "kernel_size": 5}, onnx=False)


def test_registered_under_conv_in_its_own_distribution():
    info = default_registry().available("encoder")["conv"]
    assert info.distribution == "seqkit-convenc" and info.value == "seqkit_convenc.encoder:ConvEncoder"
    assert default_registry().get("encoder", "conv") is ConvEncoder


@pytest.mark.parametrize("decoder,attention,bridge", list(itertools.product(
    ["lstm", "gru", "rnn"], ["none", "bahdanau", "luong-dot", "luong-concat"], ["linear", "zero", "copy"])))
def test_every_decoder_attention_and_bridge_builds_and_runs(decoder, attention, bridge):
    spec = {"type": attention} if attention in ("none", "luong-dot") else {"type": attention, "attention_size": 8}
    cfg = ModelConfig(
        encoder={"type": "conv", **SMALL},
        # hidden_size 16 = the encoder's size, which luong-dot and bridge: copy need.
        decoder={"type": decoder, "embedding_dim": 8, "hidden_size": 16, "num_layers": 2, "attention": spec,
                 "bridge": bridge},
    )
    torch.manual_seed(0)
    model = build_model(cfg, "seq2seq", VOCAB, VOCAB, PAD).eval()
    src, lengths = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0]]), torch.tensor([4, 2])
    with torch.no_grad():
        logits = model(src, lengths, torch.tensor([[BOS, 4, 5], [BOS, 6, 7]]))
        memory, state = model.encode(src, lengths)
    assert logits.shape == (2, 3, VOCAB) and torch.isfinite(logits).all()
    if bridge == "copy" and decoder == "lstm":  # no cell from a conv encoder: it starts at zeros
        assert torch.equal(state[1], torch.zeros_like(state[1]))


def test_memory_sees_only_its_receptive_field():
    """Two layers of kernel 3 see 2 tokens each side: changing token 0 leaves positions >= 3 alone."""
    torch.manual_seed(0)
    encoder = ConvEncoder(ConvEncoderConfig(**{**SMALL, "num_layers": 2}), VOCAB, PAD).eval()
    src = torch.tensor([[4, 5, 6, 7, 8, 9, 10]])
    changed = src.clone()
    changed[0, 0] = 11
    lengths = torch.tensor([7])
    with torch.no_grad():
        a, b = encoder(src, lengths).memory, encoder(changed, lengths).memory
    assert not torch.allclose(a[0, :3], b[0, :3])
    torch.testing.assert_close(a[0, 3:], b[0, 3:])


def test_hidden_is_the_mean_of_each_layer_over_real_tokens():
    torch.manual_seed(0)
    encoder = ConvEncoder(ConvEncoderConfig(**{**SMALL, "num_layers": 1}), VOCAB, PAD).eval()
    src, lengths = torch.tensor([[4, 5, 6, 0, 0]]), torch.tensor([3])
    with torch.no_grad():
        out = encoder(src, lengths)
    torch.testing.assert_close(out.hidden[0, 0], out.memory[0, :3].mean(0))  # one layer: memory = its output
    assert out.cell is None


def test_positions_beyond_max_positions_share_the_last_embedding():
    torch.manual_seed(0)
    encoder = ConvEncoder(ConvEncoderConfig(**{**SMALL, "max_positions": 4}), VOCAB, PAD).eval()
    src = torch.full((1, 9), 5)
    with torch.no_grad():
        out = encoder(src, torch.tensor([9]))
    assert out.memory.shape == (1, 9, 16) and torch.isfinite(out.memory).all()


@pytest.mark.parametrize("options,message", [
    ({"kernel_size": 4}, "kernel_size must be odd"),
    ({"hiden_size": 8}, "Extra inputs are not permitted"),
    ({"dropout": 1.0}, "less than 1"),
])
def test_config_rejects_bad_values(options, message):
    with pytest.raises(ValidationError, match=message):
        ConvEncoderConfig(**options)


def test_learns_to_reverse_a_short_sequence():
    """Conv encoder + GRU decoder with attention fit a tiny reverse task within 150 steps."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder={"type": "conv", "embedding_dim": 16, "hidden_size": 32, "num_layers": 2, "dropout": 0.0,
                 "embedding_dropout": 0.0},
        decoder={"type": "gru", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0,
                 "embedding_dropout": 0.0, "attention": {"type": "luong-general"}},
    )
    model = build_model(cfg, "seq2seq", VOCAB, VOCAB, PAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(150):
        src = torch.randint(4, VOCAB, (32, 5), generator=gen)
        tgt = torch.cat([src.flip(1), torch.full((32, 1), EOS)], 1)
        tgt_in = torch.cat([torch.full((32, 1), BOS), tgt[:, :-1]], 1)
        logits = model(src, torch.full((32,), 5), tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[:10]) / 10 > 1.5  # near ln(12) = 2.5 at the start
    assert sum(losses[-10:]) / 10 < 0.3
