"""SPPLinear: SPP's sparsity-preserving adapter on a frozen, already pruned weight W~ (m x n).

    W~' = W~ * Repeat0(alpha, m/r) * beta        alpha in R^{r x n}, beta in R^{m x 1}
    Y   = X W~^T + s * Dropout(X) W~'^T           (paper eq. 4-5)

Row k of alpha scales output rows [k*m/r, (k+1)*m/r) (repeat_interleave order). Every term is a
product with W~, so zeros of W~ stay zero in training and after merging W~ + s*W~'.

`impl="blocked"` is the memory-efficient eq. 7: no m x n product is saved for backward, only x
and dropout's mask as bools. It runs as one autograd Function (spp_function.py) that rebuilds s W~'
from W~, alpha and beta in forward and in backward and computes alpha's and beta's gradients in
closed form: two full-size matmuls forward (x W~^T, Dropout(x) (s W~')^T) and three backward,
instead of eq. 7's r thin per-block matmuls plus a checkpointed recompute; without dropout (eval)
one matmul with W~ + s W~'. The reference's eq.-7 file keeps r scaled copies of x and needs 3-D
input. `impl="naive"` builds W~' explicitly through autograd (eq. 4-5 as written; kept for checks
and the benchmark).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..method_schemas import SPP_IMPLS as IMPLS
from ..method_schemas import check_spp_init
from .base import TargetLinear
from .spp_function import SPPLinearFunction


def check_rank(out_features: int, r: int, name: str = "a target matrix") -> None:
    if int(r) < 1 or out_features % int(r):
        raise ValueError(
            f"SPP rank r={r} must be >= 1 and divide the output dim of every target; "
            f"{name} has {out_features} output rows (choose r among the divisors, e.g. 16 for LLaMA)"
        )


class SPPLinear(TargetLinear):
    """`use_beta=False` and `zero_init` are the paper's ablations (Tables 4 and 8): without W_beta the
    update is W~ * Repeat0(alpha) (beta a constant 1, not trained); `zero_init` names the factors that
    start at 0 (default beta, so W~' = 0 at the start; both = no gradient ever reaches them)."""

    def __init__(self, base, splits=None, r: int = 16, scaling: float = 1.0, dropout: float = 0.0, impl: str = "blocked",
                 use_beta: bool = True, zero_init: str = "beta"):
        super().__init__(base, splits)
        check_rank(self.out_features, r)
        if impl not in IMPLS:
            raise ValueError(f"SPP impl must be one of {IMPLS}, got {impl!r}")
        check_spp_init(use_beta, zero_init)
        self.r, self.scaling, self.impl = int(r), float(scaling), impl
        self.use_beta, self.zero_init = bool(use_beta), zero_init
        self.weight.requires_grad_(False)
        w = self.weight
        # alpha/beta stay fp32 under a 16-bit base (as peft keeps adapters): a GradScaler cannot unscale fp16
        # gradients, and fp32 updates keep small steps; the forward casts them to the activations' dtype
        dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        self.alpha = nn.Parameter(torch.empty(self.r, self.in_features, device=w.device, dtype=dtype))
        beta = torch.empty(self.out_features, 1, device=w.device, dtype=dtype)
        if use_beta:
            self.beta = nn.Parameter(beta)
        else:
            self.register_buffer("beta", beta.fill_(1.0))
        # reference init: Kaiming-uniform with a=sqrt(5), i.e. U(+-1/sqrt(in)); beta = 0 so W~' = 0 at start
        for name in ("alpha", "beta") if use_beta else ("alpha",):
            t = getattr(self, name)
            with torch.no_grad():
                t.zero_() if zero_init in (name, "both") else nn.init.kaiming_uniform_(t, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    # -- the adapter term ------------------------------------------------------------------------
    def repeated_alpha(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.alpha.to(dtype or self.alpha.dtype).repeat_interleave(self.out_features // self.r, dim=0)

    def delta_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W~' = W~ * Repeat0(alpha) * beta (m x n) in `dtype` (default: the adapter's); for merging and
        the naive forward."""
        dtype = dtype or self.alpha.dtype
        return self.weight.to(dtype) * self.repeated_alpha(dtype) * self.beta.to(dtype)

    def delta_naive(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight(x.dtype))

    # -- TargetLinear interface ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "naive":
            return F.linear(x, self.weight, self.bias) + self.scaling * self.delta_naive(self.dropout(x))
        # the Function draws the dropout mask itself (as nn.Dropout would) to keep it as bools
        p = self.dropout.p if self.training and isinstance(self.dropout, nn.Dropout) else 0.0
        return SPPLinearFunction.apply(x, self.weight, self.bias, self.alpha, self.beta, self.scaling, p)

    def effective_weight(self) -> torch.Tensor:
        """W~ + s W~' computed in the adapter's precision, stored in the base weight's dtype."""
        return (self.weight.to(self.alpha.dtype) + self.scaling * self.delta_weight()).to(self.weight.dtype)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        return self.effective_weight().detach()

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, r={self.r}, scaling={self.scaling:g}, impl={self.impl}, "
                f"use_beta={self.use_beta}, zero_init={self.zero_init}")
