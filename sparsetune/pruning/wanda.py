"""Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2, compared within each output row.

||X_j||^2 is accumulated over every calibration token and divided by the number of *sequences*, as the
reference's running mean does; the per-column scale cancels in a per-row comparison, so only the
ranking matters.
"""
from __future__ import annotations

import torch

from .magnitude import select_mask


class InputNormStats:
    """Running sum of squared input activations per input column (fp32)."""

    def __init__(self, columns: int, device: torch.device):
        self.sq_sum = torch.zeros(columns, dtype=torch.float32, device=device)
        self.nsequences = 0

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        # x: (batch, seq, in) or (tokens, in); a 2-D input counts as one sequence
        sequences = x.shape[0] if x.dim() == 3 else 1
        flat = x.reshape(-1, x.shape[-1]).float()
        self.sq_sum += flat.pow(2).sum(dim=0)
        self.nsequences += sequences

    def mean_sq_norm(self) -> torch.Tensor:
        if self.nsequences == 0:
            raise RuntimeError("Wanda statistics are empty: the layer never saw calibration data")
        return self.sq_sum / self.nsequences


def wanda_scores(weight: torch.Tensor, mean_sq_norm: torch.Tensor) -> torch.Tensor:
    """|W| * sqrt(mean ||X_j||^2), W in (out, in) layout."""
    return weight.detach().float().abs() * mean_sq_norm.float().sqrt().unsqueeze(0)


def wanda_mask(weight: torch.Tensor, mean_sq_norm: torch.Tensor, sparsity: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """Keep-mask: per row floor(in*s) smallest scores pruned, or N:M groups along the input dim."""
    return select_mask(wanda_scores(weight, mean_sq_norm), sparsity, nm, granularity="row")
