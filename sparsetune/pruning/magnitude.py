"""Magnitude pruning per matrix, and the pattern -> keep-mask selection every pruner shares.

Sparsity patterns (`method.pattern`):
- `unstructured`: floor(numel * s) entries pruned per matrix (magnitude, SparseGPT) or floor(in * s)
  per output row (Wanda's comparison group). The reference magnitude baseline prunes `|W| <= threshold`
  at sorted index floor(numel*s), i.e. one entry too many plus ties; here the count is exact.
- `N:M`: in every group of M consecutive input columns of a row, N entries are KEPT (the standard
  meaning, and the SPP paper's: "2:8" is its 75% setting). The Wanda/SparseGPT scripts read "N:M" as
  "prune N of M"; both readings agree for 2:4 and 4:8 (50%), only 2:8-style patterns differ.
"""
from __future__ import annotations

import torch

from ..masks import nm_mask, row_mask, topk_mask
from ..method_schemas import parse_pattern as parse_keep_pattern  # noqa: F401  (re-exported)
from ..method_schemas import pattern_sparsity  # noqa: F401  (re-exported)


def select_mask(scores: torch.Tensor, sparsity: float, nm: tuple[int, int] | None, granularity: str) -> torch.Tensor:
    """Keep-mask from scores (out x in): N:M groups, or per-row / per-matrix lowest-score pruning."""
    if nm is not None:
        return nm_mask(scores, *nm)
    if granularity == "row":
        return row_mask(scores, sparsity)
    if granularity == "matrix":
        return topk_mask(scores, sparsity)
    raise ValueError(f"mask granularity must be 'row' or 'matrix', got {granularity!r}")


def magnitude_mask(weight: torch.Tensor, sparsity: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """Keep-mask of the largest |W| of the matrix (exactly floor(numel*s) pruned), or N:M on |W|."""
    return select_mask(weight.detach().float().abs(), sparsity, nm, granularity="matrix")
