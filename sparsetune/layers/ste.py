"""The top-k binarizer shared by movement pruning and PST: the mask keeps the largest scores, and the
straight-through estimator passes dL/dM to the scores unchanged.

With y = x (W ⊙ M)ᵀ and G = dL/d(W ⊙ M), the mask's gradient is dL/dM = G ⊙ W, so a score S with
M = TopK(S) receives G ⊙ W and, under SGD, accumulates -Σ_t (dL/dW ⊙ W)_t (Sanh et al. 2020; PST eq. 3-4).
"""
from __future__ import annotations

import numpy as np
import torch

from ..masks import as_factor, num_pruned


@torch.no_grad()
def binarize_topk(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool keep-mask pruning exactly floor(numel * sparsity) of the smallest scores (masks.topk_mask's
    contract). MvP/PST rebuild every mask on every step, so the selection is tuned per device: one topk
    with no host sync on accelerators; on CPU numpy's introselect, compare and count, each several
    times faster than torch's CPU kernels for the same job (about 5x faster than topk overall)."""
    n = scores.numel()
    n_prune = num_pruned(n, sparsity)
    if n_prune == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    flat = scores.detach().reshape(-1)
    mask = _exact_keep(flat, n_prune) if flat.device.type == "cpu" else _topk_select(flat, n_prune)
    return mask.view_as(scores)


def _topk_select(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    """topk over whichever side (kept or pruned) is smaller; ties broken by topk's order."""
    keep = flat.numel() - n_prune
    if keep <= n_prune:
        mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        mask[torch.topk(flat, keep, largest=True, sorted=False).indices] = True
    else:
        mask = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
        mask[torch.topk(flat, n_prune, largest=False, sorted=False).indices] = False
    return mask


def _exact_keep(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    """CPU keep-mask pruning exactly the n_prune smallest; ties at the threshold pruned last-in-index-order."""
    if flat.dtype not in (torch.float16, torch.float32, torch.float64):
        flat = flat.float()  # bfloat16 has no numpy dtype; widening keeps the order
    a = flat.numpy()
    threshold = np.partition(a, n_prune)[n_prune]  # the (n_prune + 1)-th smallest; NaN sorts last
    mask = a >= threshold
    extra = int(np.count_nonzero(mask)) - (a.size - n_prune)
    if extra < 0:  # only NaN scores compare false everywhere
        raise ValueError("cannot rank non-finite (NaN) scores: the training diverged")
    if extra > 0:
        mask[np.flatnonzero(a == threshold)[-extra:]] = False
    return torch.from_numpy(mask)


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
