"""Label-smoothed cross-entropy over a large vocabulary, computed in row chunks.

The textbook form (``log_softmax`` -> gather -> mean, differentiated by autograd) keeps a
float32 (N, V) log-probability tensor for backward and makes about eight passes over N x V
values per step; with N = 3,000 target positions and V = 8,000 that is ~100 MB per pass and a
float32 copy of bf16 logits under autocast. :class:`SmoothedCrossEntropy` needs only the
log-sum-exp of each row: forward reads the logits once per chunk, backward rebuilds the
softmax chunk by chunk and writes the gradient straight in the logits' dtype. Temporaries are
one float32 chunk (~4 MB), not (N, V).

With smoothing ``e`` over ``V`` classes and ``lse`` = log-sum-exp of a row of logits ``x``::

    nll    = lse - x[target]
    smooth = lse - mean(x)                   (= -mean(log p))
    loss   = (1 - e) * nll + e * smooth
    dloss/dx = softmax(x) - (1 - e) * onehot(target) - e / V
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Float32 elements per chunk: 4 MB keeps a chunk in the last-level cache between passes.
CHUNK_ELEMENTS = 1 << 20


def _row_chunks(rows: int, vocab: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(vocab, 1))
    return [(i, min(i + step, rows)) for i in range(0, rows, step)]


class SmoothedCrossEntropy(torch.autograd.Function):
    """(logits (N, V) any float dtype, target (N,) int64, keep (N,) bool, smoothing) ->
    (loss (N,) float32, nll (N,) float32), both 0 where ``keep`` is False. Only ``loss`` is
    differentiable; ``nll`` is for reporting."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, keep: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
        rows, vocab = logits.shape
        lse = logits.new_empty(rows, dtype=torch.float32)
        picked = logits.new_empty(rows, dtype=torch.float32)
        mean = logits.new_empty(rows, dtype=torch.float32)
        safe_target = target.clamp(0, vocab - 1)  # pad ids may be negative (classification uses -1)
        for a, b in _row_chunks(rows, vocab):
            x = logits[a:b].float()  # (n, V)
            lse[a:b] = torch.logsumexp(x, dim=-1)
            picked[a:b] = x.gather(1, safe_target[a:b, None]).squeeze(1)
            mean[a:b] = x.mean(dim=-1)
        keep_f = keep.to(torch.float32)
        nll = (lse - picked) * keep_f
        loss = (1 - smoothing) * nll + smoothing * (lse - mean) * keep_f
        ctx.save_for_backward(logits, safe_target, keep_f, lse)
        ctx.smoothing = smoothing
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor, None, None, None]:
        logits, target, keep_f, lse = ctx.saved_tensors
        rows, vocab = logits.shape
        eps = ctx.smoothing
        scale = grad_loss.float() * keep_f  # (N,): padding rows get no gradient
        grad = torch.empty_like(logits)
        for a, b in _row_chunks(rows, vocab):
            p = torch.exp(logits[a:b].float() - lse[a:b, None])  # softmax (n, V)
            if eps > 0:
                p.sub_(eps / vocab)
            p.scatter_add_(1, target[a:b, None], p.new_full((b - a, 1), -(1 - eps)))
            p.mul_(scale[a:b, None])
            grad[a:b] = p
        return grad, None, None, None


def smoothed_loss(logits: Tensor, target: Tensor, pad_id: int, smoothing: float) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed loss and summed NLL over non-pad targets (float32 scalars).

    logits (N, V) in any float dtype (bf16 under autocast stays bf16), target (N,) int64.
    """
    keep = target != pad_id
    loss, nll = SmoothedCrossEntropy.apply(logits, target, keep, float(smoothing))
    return loss.sum(), nll.sum()


def coverage_loss(attention: Tensor, keep: Tensor) -> Tensor:
    """See et al. (2017)'s coverage loss, summed over the kept target positions: attention (B, T, S),
    keep (B, T) bool -> sum_t sum_i min(a_t,i, cov_t,i) with cov_t = sum_{t' < t} a_t' (float32)."""
    weights = attention.float()
    cov = weights.cumsum(dim=1) - weights  # (B, T, S): what steps before t attended
    return (torch.minimum(weights, cov).sum(dim=-1) * keep.float()).sum()
