"""The straight-through estimator shared by movement pruning and PST: the forward multiplies by a top-k
keep-mask (masks.topk_mask) and the backward passes dL/dM to the scores unchanged.

With y = x (W ⊙ M)ᵀ and G = dL/d(W ⊙ M), the mask's gradient is dL/dM = G ⊙ W, so a score S with
M = TopK(S) receives G ⊙ W and, under SGD, accumulates -Σ_t (dL/dW ⊙ W)_t (Sanh et al. 2020; PST eq. 3-4).
"""
from __future__ import annotations

import torch

from ..masks import as_factor


class _MaskedWeightSTE(torch.autograd.Function):
    """W ⊙ M in the forward; dW = G ⊙ M (pruned weights get no gradient), dS = G ⊙ W (straight through)."""

    @staticmethod
    def forward(ctx, weight, scores, mask):
        ctx.save_for_backward(weight, mask)
        return weight * as_factor(mask)

    @staticmethod
    def backward(ctx, grad):
        weight, mask = ctx.saved_tensors
        g_weight = grad * as_factor(mask) if ctx.needs_input_grad[0] else None
        g_scores = grad * weight if ctx.needs_input_grad[1] else None
        return g_weight, g_scores, None


def masked_weight_ste(weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """W ⊙ M whose backward routes the mask's gradient G ⊙ W to `scores` (the mask was built from them)."""
    return _MaskedWeightSTE.apply(weight, scores, mask)
