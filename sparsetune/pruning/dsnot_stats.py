"""Calibration statistics of DSnoT, per input column j of a matrix, over every calibration token:

- Wanda's sum ||x_j||^2 / N_sequences (inherited from `InputNormStats`): the base mask and the order in
  which retained weights are offered for pruning;
- the token sum per sequence, sum_t x_tj / N_sequences = seqlen * E[x_j]: the reference's `sum_metric_row`,
  the E[x_j] of its metric d_ij = W_ij * E[x_j]. Its scale (tokens per sequence) is the scale of
  `update_threshold`, as in the reference;
- Var[x_j] over all tokens (population variance), merged across micro-batches exactly (Chan et al.);
- optionally X X^T (SparseGPT's Hessian) when the base mask is SparseGPT's.
"""
from __future__ import annotations

import torch

from .sparsegpt import HessianStats
from .wanda import InputNormStats


class DSnoTStats(InputNormStats):
    def __init__(self, columns: int, device: torch.device, hessian: bool = False):
        super().__init__(columns, device)
        self.ntokens = 0
        self.mean = torch.zeros(columns, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(columns, dtype=torch.float64, device=device)  # sum of squared deviations
        self.hessian_stats = HessianStats(columns, device) if hessian else None

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        super().add_batch(x)
        if self.hessian_stats is not None:
            self.hessian_stats.add_batch(x)
        flat = x.reshape(-1, x.shape[-1]).float()
        n_b = flat.shape[0]
        if n_b == 0:
            return
        mean_b = flat.mean(dim=0)
        m2_b = (flat - mean_b).pow(2).sum(dim=0).double()
        mean_b = mean_b.double()
        n_a, n = self.ntokens, self.ntokens + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / n)
        self.m2 += m2_b + delta.pow(2) * (n_a * n_b / n)
        self.ntokens = n

    def _check(self) -> None:
        if self.ntokens == 0 or self.nsequences == 0:
            raise RuntimeError("DSnoT statistics are empty: the layer never saw calibration data")

    def token_sum_per_sequence(self) -> torch.Tensor:
        """sum over tokens of x_j / number of sequences (= tokens per sequence * E[x_j])."""
        self._check()
        return (self.mean * (self.ntokens / self.nsequences)).float()

    def variance(self) -> torch.Tensor:
        self._check()
        return (self.m2 / self.ntokens).float()

    def hessian(self) -> torch.Tensor:
        if self.hessian_stats is None:
            raise RuntimeError("DSnoT statistics were collected without the Hessian (base is not sparsegpt)")
        return self.hessian_stats.hessian()
