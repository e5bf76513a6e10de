"""seqkit.loss: the chunked label-smoothed cross-entropy equals PyTorch's, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from seqkit import loss as L


def _reference(logits, target, pad_id, smoothing):
    flat = logits.float()
    loss = F.cross_entropy(flat, target, ignore_index=pad_id, label_smoothing=smoothing, reduction="sum")
    nll = F.cross_entropy(flat, target, ignore_index=pad_id, reduction="sum")
    return loss, nll


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [7, 1 << 20])  # several row chunks with a ragged last one, and one chunk
def test_matches_cross_entropy(monkeypatch, smoothing, chunk):
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", chunk * 11)
    torch.manual_seed(0)
    logits = (torch.randn(23, 11) * 3).requires_grad_()
    target = torch.randint(1, 11, (23,))
    target[[0, 5, 22]] = 0  # padding
    ref = logits.detach().clone().requires_grad_()
    loss, nll = L.smoothed_loss(logits, target, 0, smoothing)
    ref_loss, ref_nll = _reference(ref, target, 0, smoothing)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(nll, ref_nll)
    (loss * 0.5).backward()
    (ref_loss * 0.5).backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    assert logits.grad[[0, 5, 22]].abs().max() == 0  # padding rows get no gradient


def test_bf16_logits_keep_bf16_gradient():
    torch.manual_seed(1)
    logits = torch.randn(9, 13).to(torch.bfloat16).requires_grad_()
    target = torch.randint(0, 13, (9,))
    loss, nll = L.smoothed_loss(logits, target, -1, 0.1)
    assert loss.dtype == nll.dtype == torch.float32
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16
    ref = logits.detach().float().requires_grad_()
    ref_loss, _ = _reference(ref, target, -1, 0.1)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(logits.grad.float(), ref.grad, atol=1e-2, rtol=1e-2)


def test_negative_pad_id_is_ignored():
    """Classification pads with -1: those rows count nothing (and index nothing)."""
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([2, -1, 0, -1])
    loss, nll = L.smoothed_loss(logits, target, -1, 0.0)
    ref, _ = _reference(logits, target, -1, 0.0)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, ref)


def test_no_grad_validation_path():
    with torch.inference_mode():
        loss, nll = L.smoothed_loss(torch.zeros(2, 4), torch.tensor([1, 3]), 0, 0.0)
    expected = torch.tensor(2 * torch.log(torch.tensor(4.0)).item())
    torch.testing.assert_close(nll, expected)
    torch.testing.assert_close(loss, expected)  # no smoothing: the loss is the NLL
