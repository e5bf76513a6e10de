"""Attention plugins: shapes, masking, and one batched call equal to T single-step calls."""

import pytest
import torch

from seqkit.errors import PluginError
from seqkit.nn.attention import (
    AdditiveConfig,
    BahdanauAttention,
    LuongConcatAttention,
    LuongDotAttention,
    LuongGeneralAttention,
    MultiplicativeConfig,
    NoAttention,
    NoAttentionConfig,
    masked_softmax,
)
from seqkit.registry import get_plugin

Q, M = 6, 6  # luong-dot needs equal sizes

ATTENTIONS = {
    "bahdanau": lambda: BahdanauAttention(AdditiveConfig(attention_size=5), Q, M),
    "luong-dot": lambda: LuongDotAttention(MultiplicativeConfig(), Q, M),
    "luong-general": lambda: LuongGeneralAttention(MultiplicativeConfig(), Q, M),
    "luong-concat": lambda: LuongConcatAttention(AdditiveConfig(attention_size=5), Q, M),
}


def _inputs():
    torch.manual_seed(0)
    memory = torch.randn(2, 4, M)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    memory = memory * mask[:, :, None]
    query = torch.randn(2, 3, Q)
    return query, memory, mask


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_shapes_and_masking(name):
    attn = ATTENTIONS[name]().eval()
    query, memory, mask = _inputs()
    keys = attn.precompute(memory)
    context, weights = attn(query, keys, memory, mask)
    assert context.shape == (2, 3, attn.output_size) == (2, 3, M)
    assert weights.shape == (2, 3, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert torch.all(weights[1, :, 2:] == 0)  # padding gets exactly no weight
    torch.testing.assert_close(context, weights @ memory)


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_bool_and_float_masks_agree(name):
    attn = ATTENTIONS[name]().eval()
    query, memory, mask = _inputs()
    keys = attn.precompute(memory)
    _, w_float = attn(query, keys, memory, mask)
    _, w_bool = attn(query, keys, memory, mask > 0)
    torch.testing.assert_close(w_float, w_bool)


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_batched_query_equals_single_steps(name):
    attn = ATTENTIONS[name]().eval()
    query, memory, mask = _inputs()
    keys = attn.precompute(memory)
    context, weights = attn(query, keys, memory, mask)
    for t in range(query.size(1)):
        c_t, w_t = attn(query[:, t : t + 1], keys, memory, mask)
        torch.testing.assert_close(c_t[:, 0], context[:, t], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w_t[:, 0], weights[:, t], atol=1e-6, rtol=1e-5)


def test_previous_state_flag():
    assert BahdanauAttention.needs_previous_state is True
    for cls in (NoAttention, LuongDotAttention, LuongGeneralAttention, LuongConcatAttention):
        assert cls.needs_previous_state is False


def test_no_attention_has_empty_context():
    attn = NoAttention(NoAttentionConfig(), Q, M)
    query, memory, mask = _inputs()
    context, weights = attn(query, attn.precompute(memory), memory, mask)
    assert attn.output_size == 0
    assert context.shape == (2, 3, 0)
    torch.testing.assert_close(weights[1], torch.tensor([[0.5, 0.5, 0.0, 0.0]] * 3))


def test_luong_dot_size_mismatch_names_both_sizes():
    with pytest.raises(PluginError, match=r"\(8\).*\(12"):
        LuongDotAttention(MultiplicativeConfig(), 8, 12)


def test_luong_general_handles_different_sizes():
    attn = LuongGeneralAttention(MultiplicativeConfig(), 8, 12)
    memory, mask = torch.randn(2, 5, 12), torch.ones(2, 5)
    context, weights = attn(torch.randn(2, 1, 8), attn.precompute(memory), memory, mask)
    assert context.shape == (2, 1, 12) and weights.shape == (2, 1, 5)


def test_masked_softmax_low_precision_is_finite():
    scores = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    weights = masked_softmax(scores, mask)
    assert weights.dtype == torch.bfloat16
    assert torch.isfinite(weights).all()
    assert torch.all(weights[:, :, 2:] == 0)


def test_unknown_attention_option_is_rejected():
    with pytest.raises(Exception, match="attention_sise"):
        AdditiveConfig(attention_sise=3)


@pytest.mark.parametrize(
    "name,cls",
    [("none", NoAttention), ("bahdanau", BahdanauAttention), ("luong-dot", LuongDotAttention),
     ("luong-general", LuongGeneralAttention), ("luong-concat", LuongConcatAttention)],
)
def test_entry_points_resolve(name, cls):
    assert get_plugin("attention", name) is cls
