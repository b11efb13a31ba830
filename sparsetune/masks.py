"""Mask construction: pure functions from scores to boolean keep-masks.

Conventions shared by every method: a mask is a bool tensor shaped like the score, True = kept.
`sparsity` is the fraction of zeros; the number pruned in a matrix is floor(numel * sparsity),
as the PST reference does, so achieved sparsity is exact to one weight per matrix.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .method_schemas import check_sparsity, parse_pattern  # noqa: F401  (re-exported: one definition)


def num_pruned(numel: int, sparsity: float) -> int:
    return int(math.floor(numel * check_sparsity(sparsity)))


def as_factor(mask: torch.Tensor) -> torch.Tensor:
    """A keep-mask as a 0/1 multiplier. Its uint8 view, because PyTorch converts uint8 to float with a
    vectorized CPU kernel and bool without one (0.26 ms vs 1.5 ms per 2.4M weights), and every masked
    forward / backward multiplies by the mask."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def count_kept(mask: torch.Tensor) -> int:
    """Number of True flags; numpy's count on CPU is about 6x faster than torch.count_nonzero there."""
    if mask.device.type == "cpu":
        return int(np.count_nonzero(mask.detach().numpy()))
    return int(torch.count_nonzero(mask))


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the numel - floor(numel*sparsity) largest scores of the whole tensor."""
    n_prune = num_pruned(scores.numel(), sparsity)
    return keep_largest(scores, scores.numel() - n_prune)


@torch.no_grad()
def keep_largest(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of exactly `keep` largest entries. MvP/PST rebuild every mask on every step, so the
    selection is tuned per device: one topk with no host sync on accelerators; on CPU numpy's
    introselect, compare and count (each several times faster than torch's CPU kernels; about 5x
    faster than topk overall), with ties at the threshold pruned last-in-index-order."""
    flat = scores.detach().reshape(-1)
    n_prune = flat.numel() - keep
    if n_prune <= 0 or keep <= 0:
        return torch.full_like(scores, keep > 0, dtype=torch.bool)
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
    # the distinct keys pack float32 bits beside the index in an int64; float64 keeps the plain path
    if a.dtype != np.float64 and _has_tie_block(a):
        return torch.from_numpy(_keep_by_distinct_keys(a.astype(np.float32, copy=False), n_prune))
    threshold = np.partition(a, n_prune)[n_prune]  # the (n_prune + 1)-th smallest; NaN sorts last
    mask = a >= threshold
    extra = int(np.count_nonzero(mask)) - (a.size - n_prune)
    if extra < 0:  # only NaN scores compare false everywhere
        _diverged()
    if extra > 0:
        mask[np.flatnonzero(a == threshold)[-extra:]] = False
    return torch.from_numpy(mask)


def _diverged():
    from .divergence import Diverged  # here, not at the top: it imports transformers, masks.py stays light

    raise Diverged("non-finite (NaN) mask scores: the weights diverged")  # the Trainer fills in the step


def _has_tie_block(a: np.ndarray) -> bool:
    """Whether one value fills over 1 % of a strided sample (e.g. MaP's pruned zeros): numpy's
    introselect slows down some 30x on such blocks of equal values."""
    _, counts = np.unique(a[:: max(1, a.size // 4096)], return_counts=True)
    return counts.max() > 0.01 * counts.sum()


def _keep_by_distinct_keys(a: np.ndarray, n_prune: int) -> np.ndarray:
    """The same selection through all-distinct int64 keys (order-preserving float32 bits, then the
    reversed index), so no two keys tie and ties in `a` go last-index-first."""
    if np.isnan(a).any():
        _diverged()
    bits = (a + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into +0.0, which compares equal
    keys = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits).astype(np.int64) << 32
    keys |= np.arange(a.size - 1, -1, -1, dtype=np.int64)
    return keys >= np.partition(keys, n_prune)[n_prune]


def global_topk_masks(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One ranking over all matrices: floor(total*sparsity) smallest scores pruned overall."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).float() for n in names])
    keep = flat.numel() - num_pruned(flat.numel(), sparsity)
    mask_flat = keep_largest(flat, keep)
    out, offset = {}, 0
    for n in names:
        k = scores[n].numel()
        out[n] = mask_flat[offset : offset + k].view_as(scores[n])
        offset += k
    return out


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Per output row (dim 0): prune floor(in*sparsity) smallest of each row (Wanda's comparison group)."""
    rows, cols = scores.shape
    n_prune = num_pruned(cols, sparsity)
    mask = torch.ones_like(scores, dtype=torch.bool)
    if n_prune:
        idx = torch.topk(scores.float(), n_prune, dim=1, largest=False, sorted=False).indices
        mask.scatter_(1, idx, False)
    return mask


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M along the input dim: in every group of m consecutive columns keep the n largest.

    N:M means N non-zeros per M (NVIDIA's and the SPP paper's reading: 2:8 is 75 % sparse)."""
    if not (0 < n < m):
        raise ValueError(f"N:M pattern needs 0 < N < M, got {n}:{m}")
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M pattern {n}:{m} needs the input dim ({cols}) divisible by {m}")
    groups = scores.float().reshape(rows, cols // m, m)
    idx = torch.topk(groups, m - n, dim=2, largest=False, sorted=False).indices
    mask = torch.ones_like(groups, dtype=torch.bool).scatter_(2, idx, False)
    return mask.reshape(rows, cols)




def sparsity_of(t: torch.Tensor) -> float:
    return float((t == 0).sum()) / max(t.numel(), 1)
