"""The top-k binarizer shared by movement pruning and PST: the mask keeps the largest scores, and the
straight-through estimator passes dL/dM to the scores unchanged.

With y = x (W ⊙ M)ᵀ and G = dL/d(W ⊙ M), the mask's gradient is dL/dM = G ⊙ W, so a score S with
M = TopK(S) receives G ⊙ W and, under SGD, accumulates -Σ_t (dL/dW ⊙ W)_t (Sanh et al. 2020; PST eq. 3-4).
"""
from __future__ import annotations

import math

import torch

from ..masks import num_pruned


@torch.no_grad()
def binarize_topk(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool keep-mask pruning exactly floor(numel * sparsity) of the smallest scores (masks.topk_mask's
    contract). MvP/PST rebuild every mask on every step, so the selection is tuned per device: one topk
    with no host sync on accelerators, a sampled threshold search on CPU (about 2.5x faster than topk)."""
    n = scores.numel()
    n_prune = num_pruned(n, sparsity)
    if n_prune == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    select = _topk_select if scores.is_cuda else _threshold_select
    return select(scores.detach().reshape(-1), n_prune).view_as(scores)


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


def _threshold_select(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep the scores >= the (n_prune+1)-th smallest; among scores equal to it, prune the last ones in
    index order, so exactly n_prune are pruned and ties are broken deterministically.

    Fast path: a strided sample brackets the threshold; everything above the bracket is kept, everything
    below pruned, and only the few in between are ranked: two comparisons over the scores instead of a
    full k-th value search, which matters because PST / MvP re-mask every matrix on every step."""
    bracket = sample_bracket(flat, n_prune + 1)
    if bracket is not None:
        lo, hi = bracket
        below, above = flat < lo, flat > hi
        in_band = ~(below | above)
        k_band = n_prune - int(torch.count_nonzero(below))  # how many of the band to prune
        if 0 <= k_band < int(torch.count_nonzero(in_band)):
            vals = flat[in_band]  # index order, so ties are broken as in the exact path
            if torch.isnan(vals).any():
                raise ValueError("cannot rank non-finite (NaN) scores: the training diverged")
            return above.masked_scatter_(in_band, _exact_keep(vals, k_band))
    return _exact_keep(flat, n_prune)


def _exact_keep(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep-mask pruning exactly the n_prune smallest; ties at the threshold pruned last-in-index-order."""
    keep = flat.numel() - n_prune
    threshold = torch.kthvalue(flat, n_prune + 1).values
    mask = flat >= threshold
    extra = int(mask.sum()) - keep
    if extra < 0:  # only NaN scores compare false everywhere
        raise ValueError("cannot rank non-finite (NaN) scores: the training diverged")
    if extra > 0:
        ties = (flat == threshold).nonzero().squeeze(1)
        mask[ties[ties.numel() - extra :]] = False
    return mask


def sample_bracket(flat: torch.Tensor, j: int, sample_size: int = 16384) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Two values bracketing the j-th smallest (1-based) with high probability: sample quantiles
    ±4 standard errors of the rank around j/n. None for tensors too small to sample."""
    n = flat.numel()
    stride = n // sample_size
    if stride < 2:
        return None
    # a stride coprime to typical row lengths (powers of two times small factors) visits every column
    while math.gcd(stride, 2 * 3 * 5 * 7) != 1:
        stride += 1
    sample = flat[::stride]
    m = sample.numel()
    rank = j / n * m
    slack = 4.0 * math.sqrt(m) + 2.0
    lo = torch.kthvalue(sample, max(int(rank - slack), 1)).values
    hi = torch.kthvalue(sample, min(int(rank + slack) + 1, m)).values
    return lo, hi


class _MaskedWeightSTE(torch.autograd.Function):
    """W ⊙ M in the forward; dW = G ⊙ M (pruned weights get no gradient), dS = G ⊙ W (straight through)."""

    @staticmethod
    def forward(ctx, weight, scores, mask):
        ctx.save_for_backward(weight, mask)
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        weight, mask = ctx.saved_tensors
        g_weight = grad * mask if ctx.needs_input_grad[0] else None
        g_scores = grad * weight if ctx.needs_input_grad[1] else None
        return g_weight, g_scores, None


def masked_weight_ste(weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """W ⊙ M whose backward routes the mask's gradient G ⊙ W to `scores` (the mask was built from them)."""
    return _MaskedWeightSTE.apply(weight, scores, mask)
