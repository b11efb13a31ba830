"""SPPLinear: SPP's sparsity-preserving adapter on a frozen, already pruned weight W~ (m x n).

    W~' = W~ * Repeat0(alpha, m/r) * beta        alpha in R^{r x n}, beta in R^{m x 1}
    Y   = X W~^T + s * Dropout(X) W~'^T           (paper eq. 4-5)

Row k of alpha scales output rows [k*m/r, (k+1)*m/r) (repeat_interleave order). Every term is a
product with W~, so zeros of W~ stay zero in training and after merging W~ + s*W~'.

`impl="blocked"` is the memory-efficient eq. 7: W~ is viewed as r row blocks W~_k (m/r x n); for
each block the input is scaled by alpha_k and multiplied by W~_k^T; the r outputs are concatenated
and multiplied by beta. No m x n product is formed or saved. Saved for backward: x and the
(tokens x m) output; the naive form keeps x and three m x n tensors, so eq. 7 saves memory when
tokens < 3n per forward (REFERENCES §3.4.4). The reference's eq.-7 file keeps r scaled copies of
x and needs 3-D input. `impl="naive"` builds W~' explicitly (eq. 4-5 as written; kept for checks and the benchmark).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch import nn

from .base import TargetLinear

IMPLS = ("blocked", "naive")


def check_rank(out_features: int, r: int, name: str = "a target matrix") -> None:
    if int(r) < 1 or out_features % int(r):
        raise ValueError(
            f"SPP rank r={r} must be >= 1 and divide the output dim of every target; "
            f"{name} has {out_features} output rows (choose r among the divisors, e.g. 16 for LLaMA)"
        )


class SPPLinear(TargetLinear):
    def __init__(self, base, splits=None, r: int = 16, scaling: float = 1.0, dropout: float = 0.0, impl: str = "blocked"):
        super().__init__(base, splits)
        check_rank(self.out_features, r)
        if impl not in IMPLS:
            raise ValueError(f"SPP impl must be one of {IMPLS}, got {impl!r}")
        self.r, self.scaling, self.impl = int(r), float(scaling), impl
        self.weight.requires_grad_(False)
        w = self.weight
        self.alpha = nn.Parameter(torch.empty(self.r, self.in_features, device=w.device, dtype=w.dtype))
        self.beta = nn.Parameter(torch.zeros(self.out_features, 1, device=w.device, dtype=w.dtype))
        # reference init: Kaiming-uniform with a=sqrt(5), i.e. U(+-1/sqrt(in)); beta = 0 so W~' = 0 at start
        nn.init.kaiming_uniform_(self.alpha, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    # -- the adapter term ------------------------------------------------------------------------
    def repeated_alpha(self) -> torch.Tensor:
        return self.alpha.repeat_interleave(self.out_features // self.r, dim=0)

    def delta_weight(self) -> torch.Tensor:
        """W~' = W~ * Repeat0(alpha) * beta (m x n); only for merging and the naive forward."""
        return self.weight * self.repeated_alpha() * self.beta

    def delta_naive(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight())

    def delta_blocked(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)  # any number of leading dims (the reference needs 3-D)
        blocks = self.weight.view(self.r, self.out_features // self.r, self.in_features)
        # one block at a time: only a (tokens x n) scaled input exists at once; W~ needs no gradient, so
        # no copy of it is saved (forward() checkpoints this branch, so only its input is kept)
        out = torch.cat([F.linear(flat * self.alpha[k], blocks[k]) for k in range(self.r)], dim=-1)
        return (out * self.beta.view(1, -1)).view(*lead, self.out_features)

    # -- TargetLinear interface ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)
        x_drop = self.dropout(x)
        if self.impl == "naive":
            delta = self.delta_naive(x_drop)
        elif torch.is_grad_enabled() and self.alpha.requires_grad:
            # recompute the branch in backward (as the reference's torch.utils.checkpoint does): beta's
            # gradient would otherwise keep a tokens x out activation per layer alive until backward
            delta = checkpoint(self.delta_blocked, x_drop, use_reentrant=False)
        else:
            delta = self.delta_blocked(x_drop)
        return base + self.scaling * delta

    def effective_weight(self) -> torch.Tensor:
        return self.weight + self.scaling * self.delta_weight()

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        return self.effective_weight().detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, scaling={self.scaling:g}, impl={self.impl}"
