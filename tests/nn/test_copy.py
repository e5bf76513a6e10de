"""The copy (pointer-generator) decoder option: forward == stepping, a normalized mixture, the
contract checks with ONNX parity, clear config errors, and a copying task it learns faster."""

import pytest
import torch
import yaml

from seqkit.errors import PluginError, RecipeError
from seqkit.models import Seq2Seq, run_encoder
from seqkit.nn.copy import EPS, CopyGenerator
from seqkit.nn.decoders import DecoderConfig, GRUDecoder, LSTMDecoder
from seqkit.nn.encoders import EncoderConfig, LSTMEncoder
from seqkit.recipe import load_recipe
from seqkit.loss import smoothed_loss
from seqkit.testing import check_decoder

from test_decoders import assert_parity, inputs, make  # tests/nn/ is on sys.path (no __init__.py)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("cell,attention,input_feeding", [
    ("lstm", "luong-general", False),  # the fused whole-sequence path
    ("gru", "bahdanau", False),  # the step loop
    ("lstm", "luong-dot", True),  # the step loop with input feeding
])
def test_forward_equals_stepping(cell, attention, input_feeding):
    encoder, decoder = make(cell, attention, input_feeding, encoder_cls=LSTMEncoder, copy_source=True)
    src, lengths, y_in = inputs()
    with torch.no_grad():
        memory, state = decoder.init(run_encoder(encoder, src, lengths), src.size(0))
        assert len(memory) == 4 and torch.equal(memory[3], src.float())  # source ids ride in memory
        assert_parity(decoder, y_in, memory, state)


def test_output_is_a_normalized_log_distribution_with_copy_mass_on_source_ids():
    encoder, decoder = make("lstm", "luong-general", encoder_cls=LSTMEncoder, copy_source=True)
    src, lengths, y_in = inputs()
    with torch.no_grad():
        memory, state = decoder.init(run_encoder(encoder, src, lengths), src.size(0))
        logp, weights, _ = decoder(y_in, memory, state)  # (B, T, V), (B, T, S)
        torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2]), atol=1e-5, rtol=0)
        # With the gate shut (p_gen = 0) the distribution is the attention scattered onto the ids.
        decoder.copy.gate.bias.fill_(-1e4)
        logp, weights, _ = decoder(y_in, memory, state)
    want = torch.zeros_like(logp).scatter_add(-1, src[:, None, :].expand_as(weights), weights)
    torch.testing.assert_close(logp.exp(), want.clamp_min(EPS), atol=1e-6, rtol=1e-5)
    assert torch.isfinite(logp).all()  # words with no mass get log(EPS), not -inf


def test_mixture_and_gradients_equal_the_probability_space_formula_with_repeated_words():
    torch.manual_seed(0)
    layer = CopyGenerator(3, 4, 2).double()
    B, T, S, V = 2, 3, 5, 9
    src_ids = torch.tensor([[4, 5, 4, 4, 0], [6, 7, 8, 6, 7]])  # repeats, and a padding position
    logits = torch.randn(B, T, V, dtype=torch.float64, requires_grad=True)
    scores = torch.randn(B, T, S, dtype=torch.float64).masked_fill(src_ids[:, None, :] == 0, -1e9)
    weights = torch.softmax(scores, -1).requires_grad_()
    context, att_out, emb = (torch.randn(B, T, n, dtype=torch.float64) for n in (3, 4, 2))

    def reference():
        p_gen = torch.sigmoid(layer.gate(torch.cat([context, att_out, emb], -1)))
        copy = torch.zeros(B, T, V, dtype=torch.float64).scatter_add(-1, src_ids[:, None, :].expand(B, T, S), weights)
        return torch.log(p_gen * torch.softmax(logits, -1) + (1 - p_gen) * copy)

    got, want = layer(logits, weights, src_ids, context, att_out, emb), reference()
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)  # the layer mixes in float32
    probe = torch.randn(B, T, V, dtype=torch.float64)
    grads = [torch.autograd.grad((out * probe).sum(), (logits, weights, layer.gate.weight)) for out in (got, want)]
    real = (src_ids != 0)[:, None, :]  # at padding the attention is 0 and its gradient is moot
    (g_logits, g_weights, g_gate), (r_logits, r_weights, r_gate) = grads
    torch.testing.assert_close(g_logits.double(), r_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close((g_weights * real).double(), r_weights * real, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g_gate.double(), r_gate, atol=1e-5, rtol=1e-4)
    step = layer(logits[:, 1], weights[:, 1], src_ids, context[:, 1], att_out[:, 1], emb[:, 1])  # no time axis
    torch.testing.assert_close(step, got[:, 1])


def test_loss_and_gradients_stay_finite_when_most_words_get_no_mass():
    encoder, decoder = make("lstm", "luong-general", encoder_cls=LSTMEncoder, copy_source=True)
    decoder.train()
    decoder.copy.gate.bias.data.fill_(-50.0)  # p_gen ~ 0: every word outside the source is at EPS
    src, lengths, y_in = inputs()
    memory, state = decoder.init(run_encoder(encoder, src, lengths), src.size(0))
    logp, _, _ = decoder(y_in, memory, state)
    loss, _ = smoothed_loss(logp.reshape(-1, logp.size(-1)), y_in.reshape(-1), 0, 0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in decoder.parameters() if p.grad is not None)


@pytest.mark.parametrize("cls,attention,input_feeding", [
    (LSTMDecoder, "luong-general", False), (GRUDecoder, "bahdanau", False), (LSTMDecoder, "luong-concat", True),
])
def test_contract_checks_and_onnx_parity(cls, attention, input_feeding):
    spec = {"type": attention, **({"attention_size": 7} if attention == "luong-concat" else {})}
    check_decoder(cls, {"embedding_dim": 8, "hidden_size": 12, "num_layers": 1, "copy_source": True,
                        "attention": spec, "input_feeding": input_feeding}, vocab_size=40, language_model=False)


def test_config_errors_name_the_key():
    with pytest.raises(PluginError, match=r"model.decoder.copy_source: copying points with the attention"):
        make("lstm", "none", copy_source=True)
    config = DecoderConfig(copy_source=True, attention={"type": "none"})
    with pytest.raises(PluginError, match="model.decoder.copy_source: a language model has no source"):
        LSTMDecoder(config, 13, 0, None)
    encoder, decoder = make("lstm", encoder_cls=LSTMEncoder, copy_source=True)
    src, lengths, _ = inputs()
    with pytest.raises(PluginError, match="carries no src_ids"):
        decoder.init(encoder(src, lengths), 3)


def test_recipe_needs_a_shared_vocabulary(tiny_recipe):
    tree = yaml.safe_load(tiny_recipe.read_text())
    tree["model"]["decoder"]["copy_source"] = True
    tree["tokenizer"]["shared"] = False
    tiny_recipe.write_text(yaml.safe_dump(tree))
    with pytest.raises(RecipeError, match=r"tiny.yaml: model.decoder.copy_source: .*set tokenizer.shared: true"):
        load_recipe(tiny_recipe)


# -- a task that needs copying ------------------------------------------------------------------
COPY_VOCAB, COPY_LEN = 400, 6  # too many words for the softmax to learn in a few dozen steps


def _copy_batch(gen: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random words (ids 4..V-1); the target repeats them: (src, lengths, y_in, y_out)."""
    words = torch.randint(4, COPY_VOCAB, (batch, COPY_LEN), generator=gen)
    src = torch.cat([words, torch.full((batch, 1), 3)], dim=1)  # eos
    y_in = torch.cat([torch.full((batch, 1), 2), words], dim=1)  # bos
    y_out = torch.cat([words, torch.full((batch, 1), 3)], dim=1)
    return src, torch.full((batch,), COPY_LEN + 1), y_in, y_out


def _train_copy_task(copy_source: bool, steps: int = 60) -> float:
    """Held-out teacher-forced token accuracy after ``steps`` Adam steps."""
    torch.manual_seed(0)
    encoder = LSTMEncoder(EncoderConfig(embedding_dim=32, hidden_size=32, num_layers=1, dropout=0.0), COPY_VOCAB, 0)
    config = DecoderConfig(embedding_dim=32, hidden_size=64, num_layers=1, dropout=0.0, embedding_dropout=0.0,
                           copy_source=copy_source)
    model = Seq2Seq(encoder, LSTMDecoder(config, COPY_VOCAB, 0, encoder))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        src, lengths, y_in, y_out = _copy_batch(gen, 32)
        logits = model(src, lengths, y_in)
        loss, _ = smoothed_loss(logits.reshape(-1, COPY_VOCAB), y_out.reshape(-1), 0, 0.0)
        optimizer.zero_grad()
        (loss / y_out.numel()).backward()
        optimizer.step()
    model.eval()
    src, lengths, y_in, y_out = _copy_batch(torch.Generator().manual_seed(99), 64)
    with torch.no_grad():
        return float((model(src, lengths, y_in).argmax(-1) == y_out).float().mean())


def test_copying_task_is_learned_with_copy_and_not_without():
    with_copy, without = _train_copy_task(True), _train_copy_task(False)
    assert with_copy > 0.8, with_copy
    assert with_copy > without + 0.4, (with_copy, without)
