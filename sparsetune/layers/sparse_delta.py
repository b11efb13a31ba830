"""SparseDeltaLinear: θ = θ0 + θ_sp with θ_sp stored as (flat indices, values) — SPEFT's sparse adapter.

Only the selected entries exist as trainable state: a 1-D `values` parameter (zero at selection) and an
`indices` buffer of flat positions in the (out x in) weight, int32 whenever out*in fits (half the
reference's int64). Parameters, gradients and optimizer moments therefore scale with k, never with the
matrix. The base weight θ0 stays a frozen parameter so that merges of dynamic re-selections are saved
in checkpoints together with the indices.

Training forward/backward (`_SparseDeltaLinearFn`): the dense weight θ0 + scatter(values) is built as a
temporary for the matmul and rebuilt in backward instead of being kept alive; the weight gradient is
formed by one matmul — on the rows x columns that hold selected entries when that block is small,
densely otherwise — and immediately gathered at the indices. Only the input x is saved, as any linear
layer does. With θ0 differentiable (GraSP's Hessian-vector product) the plain autograd path is used
instead, which supports double backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import TargetLinear

INT32_MAX = 2**31 - 1
SUPPORT_FRACTION = 0.5  # form the weight gradient on the selected rows x cols only when that block is this small


def dense_weight(weight: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """θ0 + scatter(values) in the values' dtype (a new tensor; differentiable in both inputs)."""
    w = weight.to(values.dtype, copy=True)
    return w.view(-1).index_add_(0, indices, values).view_as(weight)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class _SparseDeltaLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, values, indices, bias, dtype, support):
        with torch.autocast(x.device.type, enabled=False):
            xc = x.to(dtype)
            w = dense_weight(weight, values, indices).to(dtype)
            out = F.linear(xc, w, None if bias is None else bias.to(dtype))
        ctx.save_for_backward(xc, weight, values, indices)
        ctx.x_dtype, ctx.bias_dtype, ctx.support = x.dtype, None if bias is None else bias.dtype, support
        return out

    @staticmethod
    def backward(ctx, grad_out):
        xc, weight, values, indices = ctx.saved_tensors
        grad_x = grad_values = grad_bias = None
        with torch.autocast(grad_out.device.type, enabled=False):
            g = grad_out.to(xc.dtype)
            if ctx.needs_input_grad[0]:
                grad_x = g.matmul(dense_weight(weight, values, indices).to(xc.dtype)).to(ctx.x_dtype)
            g2 = g.reshape(-1, g.shape[-1])
            if ctx.needs_input_grad[2]:
                grad_values = _values_grad(g2, xc.reshape(-1, xc.shape[-1]), indices, ctx.support).to(values.dtype)
            if ctx.bias_dtype is not None and ctx.needs_input_grad[4]:
                grad_bias = g2.sum(0).to(ctx.bias_dtype)
        return grad_x, None, grad_values, None, grad_bias, None, None


def _values_grad(g2: torch.Tensor, x2: torch.Tensor, indices: torch.Tensor, support) -> torch.Tensor:
    """(g^T x) at the selected entries. The weight gradient is formed only on the rows x columns that hold
    a selected entry when that block is small (a concentrated selection), else densely; never kept."""
    if indices.numel() == 0:
        return g2.new_zeros(0)
    if support is None:
        return g2.t().mm(x2).view(-1).index_select(0, indices)
    rows, cols, local = support
    block = g2.index_select(1, rows).t().mm(x2.index_select(1, cols))
    return block.view(-1).index_select(0, local)


class SparseDeltaLinear(TargetLinear):
    def __init__(self, base: nn.Module, splits=None):
        super().__init__(base, splits)
        numel = self.out_features * self.in_features
        self.index_dtype = torch.int32 if numel <= INT32_MAX else torch.int64
        device = self.weight.device
        values_dtype = self.weight.dtype if self.weight.dtype == torch.float64 else torch.float32
        # fp32 values even on a bf16/fp16 base: Adam on half-precision values loses small updates
        self.values = nn.Parameter(torch.zeros(0, dtype=values_dtype, device=device))
        self.register_buffer("indices", torch.zeros(0, dtype=self.index_dtype, device=device))
        self._support_cache = None

    @property
    def num_selected(self) -> int:
        return self.values.numel()

    # -- selection ------------------------------------------------------------------------
    @torch.no_grad()
    def select_(self, indices: torch.Tensor) -> None:
        """Adapt exactly these flat positions from now on; values restart at zero. The `values` Parameter
        object is kept (its storage resized), so an optimizer holding it keeps working."""
        indices = indices.reshape(-1)
        if indices.numel():
            if int(indices.min()) < 0 or int(indices.max()) >= self.weight.numel():
                raise ValueError(f"indices out of range for a {tuple(self.weight.shape)} weight")
            if indices.unique().numel() != indices.numel():
                raise ValueError("indices must be unique")
        self.allocate_(indices.numel())
        self.indices.copy_(indices)

    @torch.no_grad()
    def allocate_(self, k: int) -> None:
        """k zero values and k (unset) indices: the shapes alone, for dry runs and checkpoint loading."""
        device, dtype = self.weight.device, self.values.dtype
        self.indices = torch.zeros(k, dtype=self.index_dtype, device=device)
        self._support_cache = None
        if k != self.values.numel():
            # `param.data = t` keeps the parameter's cached gradient accumulator, whose expected shape is the
            # old one, unless the dtype changes: pass through another dtype so a graph still alive from
            # before the resize cannot pin the old shape on the next forward
            self.values.data = torch.empty(0, dtype=torch.float16 if dtype != torch.float16 else torch.float32,
                                           device=device)
        self.values.data = torch.zeros(k, dtype=dtype, device=device)
        self.values.grad = None

    @torch.no_grad()
    def merge_values_(self) -> int:
        """θ0 <- θ0 + θ_sp, values <- 0 (the paper's Algorithm 1 line 5). Returns how many entries moved."""
        moved = int((self.values != 0).sum())
        merged = dense_weight(self.weight, self.values, self.indices)
        self.weight.copy_(merged.to(self.weight.dtype))
        self.values.zero_()
        return moved

    # -- TargetLinear ---------------------------------------------------------------------
    def effective_weight(self) -> torch.Tensor:
        return dense_weight(self.weight, self.values, self.indices)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        return self.effective_weight().to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not self.weight.requires_grad:
            return _SparseDeltaLinearFn.apply(x, self.weight, self.values, self.indices, self.bias, _compute_dtype(x),
                                              self._support())
        w = self.effective_weight()
        return F.linear(x, w if torch.is_autocast_enabled(x.device.type) else w.to(x.dtype), self.bias)

    def _support(self):
        """(rows, cols, position of each entry in the rows x cols block) when that block is at most half the
        matrix, else None; cached per index tensor and version (any in-place change invalidates it)."""
        key = (id(self.indices), self.indices._version, self.indices.device)
        if self._support_cache is None or self._support_cache[0] != key:
            support = None
            if self.indices.numel():
                idx = self.indices.long()
                rows, row_pos = torch.unique(idx // self.in_features, return_inverse=True)
                cols, col_pos = torch.unique(idx % self.in_features, return_inverse=True)
                if rows.numel() * cols.numel() <= SUPPORT_FRACTION * self.weight.numel():
                    support = (rows, cols, row_pos * cols.numel() + col_pos)
            self._support_cache = (key, support)
        return self._support_cache[1]

    # -- checkpoints ----------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint may hold a different number of selected entries (global ranking, dynamic
        re-selection): take its size before the copy."""
        idx = state_dict.get(prefix + "indices")
        if idx is not None and idx.numel() != self.indices.numel():
            self.allocate_(idx.numel())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._support_cache = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, selected={self.num_selected}, index_dtype={self.index_dtype}"
