"""Coverage (model.decoder.coverage) and the extended vocabulary (model.decoder.copy_oov) in the
decoder: forward == stepping, copy mass on the extended columns, the coverage loss, ONNX parity."""

import pytest
import torch

from seqkit.errors import PluginError
from seqkit.loss import coverage_loss
from seqkit.models import run_encoder
from seqkit.nn.decoders import DecoderConfig, LSTMDecoder
from seqkit.nn.encoders import LSTMEncoder
from seqkit.testing import check_decoder

from test_decoders import TGT_V, assert_parity, inputs, make  # tests/nn/ is on sys.path (no __init__.py)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def extended_inputs():
    """inputs() with unknown source words V, V + 1 (one repeated) and a target that copies one."""
    src, lengths, y_in = inputs()
    src, y_in = src.clone(), y_in.clone()
    src[0, 1], src[0, 3], src[1, 0] = TGT_V, TGT_V + 1, TGT_V
    y_in[0, 2] = TGT_V + 1
    return src, lengths, y_in


@pytest.mark.parametrize("cell,attention,input_feeding", [
    ("lstm", "luong-general", False),  # fused RNN, attention stepped for coverage
    ("gru", "bahdanau", False),  # the step loop
    ("lstm", "luong-concat", True),  # input feeding and coverage both in the state
])
def test_forward_equals_stepping_with_coverage_and_extended_ids(cell, attention, input_feeding):
    encoder, decoder = make(cell, attention, input_feeding, encoder_cls=LSTMEncoder, copy_source=True,
                            copy_oov=True, coverage=True)
    src, lengths, y_in = extended_inputs()
    with torch.no_grad():
        decoder.coverage_key.normal_()  # zero at first; make it matter
        memory, state = decoder.init(run_encoder(encoder, src, lengths, oov_start=TGT_V), src.size(0))
        assert decoder.state_batch_dims[-1] == 0 and state[-1].shape == src.shape and not state[-1].any()
        logp, weights, final = decoder(y_in, memory, state)
        assert logp.shape == (3, 5, TGT_V + src.size(1))  # V + S columns
        torch.testing.assert_close(final[-1], weights.sum(1))  # coverage = attention summed over steps
        step_logp = torch.stack([s for s in _steps(decoder, y_in, memory, state)], 1)
    torch.testing.assert_close(step_logp, logp, atol=1e-5, rtol=1e-5)


def _steps(decoder, y_in, memory, state):
    for t in range(y_in.size(1)):
        logp, _, state = decoder.step(y_in[:, t], memory, state)
        yield logp


def test_coverage_off_keeps_the_state_and_outputs():
    encoder, plain = make("lstm", encoder_cls=LSTMEncoder)
    _, covered = make("lstm", encoder_cls=LSTMEncoder, coverage=True)
    src, lengths, y_in = inputs()
    with torch.no_grad():
        m1, s1 = plain.init(run_encoder(encoder, src, lengths), 3)
        m2, s2 = covered.init(run_encoder(encoder, src, lengths), 3)
        assert len(s2) == len(s1) + 1
        # w_cov starts at zero: the same numbers until it is trained
        torch.testing.assert_close(covered(y_in, m2, s2)[0], plain(y_in, m1, s1)[0])
        assert_parity(covered, y_in, m2, s2)


def test_extended_column_holds_the_copy_mass_of_its_word():
    encoder, decoder = make("lstm", encoder_cls=LSTMEncoder, copy_source=True, copy_oov=True)
    src, lengths, y_in = extended_inputs()
    with torch.no_grad():
        decoder.copy.gate.bias.fill_(-1e4)  # p_gen = 0: pure copying
        memory, state = decoder.init(run_encoder(encoder, src, lengths, oov_start=TGT_V), 3)
        logp, weights, _ = decoder(y_in, memory, state)
    want = weights[0, :, 1]  # V occurs once in row 0 (position 1); V + 1 at position 3
    torch.testing.assert_close(logp[0, :, TGT_V].exp(), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logp[1, :, TGT_V].exp(), weights[1, :, 0], atol=1e-6, rtol=1e-5)
    assert (logp[2, :, TGT_V:].exp() < 1e-9).all()  # row 2 has no unknown words
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 5), atol=1e-5, rtol=0)


def test_coverage_loss_is_the_overlap_with_past_attention():
    a = torch.tensor([[[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]])  # (1, T=3, S=3)
    # step 1: min(a, cov=[.5,.5,0]) = .5 + .25; step 2: min([0,0,1], [1,.75,.25]) = .25
    assert coverage_loss(a, torch.tensor([[True, True, True]])).item() == pytest.approx(1.0)
    assert coverage_loss(a, torch.tensor([[True, True, False]])).item() == pytest.approx(0.75)


def test_config_errors_name_the_key():
    encoder, _ = make("lstm", encoder_cls=LSTMEncoder)
    with pytest.raises(PluginError, match=r"^model\.decoder\.copy_oov: .*copy_source: true"):
        LSTMDecoder(DecoderConfig(copy_oov=True), 20, 0, encoder)
    with pytest.raises(PluginError, match=r"^model\.decoder\.coverage: .*attention"):
        LSTMDecoder(DecoderConfig(coverage=True, attention={"type": "none"}), 20, 0, encoder)


@pytest.mark.parametrize("attention,input_feeding", [("luong-general", False), ("bahdanau", False), ("luong-concat", True)])
def test_contract_checks_and_onnx_parity_with_coverage(attention, input_feeding):
    check_decoder(LSTMDecoder, {"embedding_dim": 8, "hidden_size": 12, "num_layers": 1, "copy_source": True,
                                "coverage": True, "attention": {"type": attention, **({"attention_size": 7} if attention != "luong-general" else {})},
                                "input_feeding": input_feeding}, vocab_size=40, language_model=False)
