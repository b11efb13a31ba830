"""TargetLinear: the one base class every method's layer derives from.

It owns the base weight in (out, in) layout whatever the original module was (nn.Linear or GPT-2's
transposed Conv1D), the bias, and the optional output-row split of fused matrices (GPT-2's c_attn is
q|k|v: masks and factors are per block, as the PST reference splits it). Subclasses override
`effective_weight()` (what the forward uses) and `merged_weight()` (what export writes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D


class TargetLinear(nn.Module):
    def __init__(self, base: nn.Module, splits: tuple[int, ...] | None = None):
        super().__init__()
        self.transposed = isinstance(base, Conv1D)
        w = base.weight.detach()
        w = w.t().contiguous() if self.transposed else w
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = base.bias
        self.out_features, self.in_features = self.weight.shape
        self.splits = tuple(splits) if splits else (self.out_features,)

    # -- overridden by methods -------------------------------------------------------------
    def effective_weight(self) -> torch.Tensor:
        return self.weight

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        return self.effective_weight().detach()

    # ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def blocks(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Views of `t` (out x ...) per fused block."""
        return list(torch.split(t, list(self.splits), dim=0))

    @torch.no_grad()
    def to_plain(self) -> nn.Module:
        """A module of the original type holding the merged weight (for export)."""
        w = self.merged_weight().to(self.weight.dtype)
        bias = self.bias is not None
        if self.transposed:
            plain = Conv1D(self.out_features, self.in_features)
            plain.weight = nn.Parameter(w.t().contiguous())
        else:
            plain = nn.Linear(self.in_features, self.out_features, bias=bias, device=w.device, dtype=w.dtype)
            plain.weight = nn.Parameter(w.clone())
        if bias:
            plain.bias = nn.Parameter(self.bias.detach().clone())
        return plain.to(device=w.device, dtype=w.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, blocks={len(self.splits)}"
