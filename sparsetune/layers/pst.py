"""PSTLinear: parameter-efficient sparse training (Li et al. 2022, eq. 6-8).

The frozen W0 (n x k) gets a low-rank update and a factored importance score:
    W = W0 + β·U·V                                  U: n x r2, V: r2 x k
    S = |W| + α1·A·B + α2·(R + C)                   A: n x r1, B: r1 x k, R: n x 1, C: 1 x k
    M = top-v of S,  forward uses W ⊙ M
Gradients follow the straight-through top-k (see ste.py): dL/dS = G ⊙ W with G = dL/d(W ⊙ M), so R and
C accumulate the row / column sums of -(dL/dW ⊙ W) (eq. 4), and W receives G ⊙ M through the masked
weight plus G ⊙ |W| through the |W| score term (as the reference code does).

Fused matrices (GPT-2 c_attn = q|k|v) get one set of factors per block: every factor carries a leading
block axis (U is blocks x n_b x r2, ...), so a fused matrix costs the same as separate q, k, v matrices,
(n_b + k)(r1 + r2 + 1) each. Unfused matrices have one block.

Initialisation follows the reference: U ~ N(0,1) unscaled and V = 0 (W starts at W0), A ~ N(0,1) and
B = 0, R = C = 0 (the data-driven score starts equal for every weight).
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..masks import as_factor
from ..method_schemas import SCORE_TERMS, check_score_terms  # noqa: F401  (re-exported)
from .base import TargetLinear
from .workspace import scratch


class _Hyper(NamedTuple):
    beta: float
    alpha1: float
    alpha2: float
    magnitude: bool  # |W| is in the score, so W also gets G ⊙ |W|
    shape3: tuple  # (blocks, n_b, k)
    dtype: torch.dtype  # W0 + βUV is formed in the factors' dtype



def factor_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    # factors and their optimizer state stay fp32 under a 16-bit base model (as peft does for adapters)
    return torch.float32 if weight_dtype in (torch.float16, torch.bfloat16) else weight_dtype


def _no_autocast(device: torch.device):
    # W0 + βUV must not be rounded to 16 bits before the mask multiplies it: casts are explicit below
    return contextlib.nullcontext() if device.type == "meta" else torch.autocast(device.type, enabled=False)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type == "meta" or not torch.is_autocast_enabled(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def _dense_weight(w0: torch.Tensor, U, V, beta: float, shape3: tuple[int, int, int], dtype, out=None) -> torch.Tensor:
    """A (blocks, n_b, k) tensor holding W0 + β·U·V: fresh, or `out` overwritten."""
    w = w0.reshape(shape3)
    if U is None:
        return w.to(dtype, copy=True) if out is None else out.copy_(w)
    return torch.baddbmm(w.to(dtype), U, V, alpha=beta, out=out)


def _mask_floats(mask: torch.Tensor, shape3, dtype) -> torch.Tensor:
    """The keep-mask as 0/1 in `dtype`, in a scratch buffer."""
    return scratch("mask", shape3, dtype, mask.device).copy_(as_factor(mask).reshape(shape3))


def _scaled(t: torch.Tensor, factor: float) -> torch.Tensor:
    return t if factor == 1.0 else t.mul_(factor)


def _times_t(big: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """big · smallᵀ for a (b, n, k) matrix and a (b, r, k) factor, computed as (small · bigᵀ)ᵀ: the
    same product, about 20 % faster on CPU BLAS when r is a handful of rows."""
    return torch.bmm(small, big.transpose(1, 2)).transpose(1, 2).contiguous()


def _factor_grads(g, w, mf, U, V, A, B, hp, need, spare=None) -> tuple:
    """Gradients of (U, V, A, B, R, C) from g = dL/d(W ⊙ M), w = W0 + βUV and the mask as floats mf, all
    shaped (blocks, n_b, k); `need` flags which of the six are wanted. w is consumed in place and
    `spare` (a free tensor of its shape) is reused, so no full-size temporary is allocated."""
    gU = gV = gA = gB = gR = gC = None
    if any(need[2:6]):
        g_score = torch.mul(g, w, out=spare) if spare is not None else g * w  # dL/dS: straight through
        if need[2]:
            gA = _scaled(_times_t(g_score, B), hp.alpha1)
        if need[3]:
            gB = _scaled(torch.bmm(A.transpose(1, 2), g_score), hp.alpha1)
        if need[4]:
            gR = _scaled(g_score.sum(2, keepdim=True), hp.alpha2)
        if need[5]:
            gC = _scaled(g_score.sum(1, keepdim=True), hp.alpha2)
        del g_score
    if need[0] or need[1]:
        # dL/dW = G ⊙ M (masked weight) + sign(W) ⊙ G ⊙ W = G ⊙ (|W| + M) (the |W| score term), in place
        g_w = (w.abs_().add_(mf) if hp.magnitude else w.copy_(mf)).mul_(g)
        if need[0]:
            gU = _scaled(_times_t(g_w, V), hp.beta)
        if need[1]:
            gV = _scaled(torch.bmm(U.transpose(1, 2), g_w), hp.beta)
    return gU, gV, gA, gB, gR, gC


class _PSTLinearFn(torch.autograd.Function):
    """y = x ((W0 + βUV) ⊙ M)ᵀ + b with the STE gradients of eq. 6-8. Only x and the small factors are
    saved: the dense masked weight is rebuilt in the backward instead of being kept alive per layer
    between the passes (340 MB fp32 for BERT-base). Under autocast the matmuls run in its dtype. The dense
    temporaries live in reused scratch buffers (see workspace.py); only the returned gradients are fresh."""

    @staticmethod
    def forward(ctx, x, w0, bias, U, V, A, B, R, C, mask, hp):
        shape3, dtype = hp.shape3, hp.dtype
        mm_dtype = _autocast_dtype(x.device) or x.dtype
        with _no_autocast(x.device):
            w = _dense_weight(w0, U, V, hp.beta, shape3, dtype, out=scratch("w", shape3, dtype, x.device))
            w.mul_(_mask_floats(mask, shape3, dtype))
            b = None if bias is None else bias.to(mm_dtype)
            y = F.linear(x.to(mm_dtype), w.reshape(w0.shape).to(mm_dtype), b)
        ctx.save_for_backward(x, w0, U, V, A, B, mask)
        ctx.hp, ctx.mm_dtype = hp, mm_dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, w0, U, V, A, B, mask = ctx.saved_tensors
        hp, mm_dtype, need = ctx.hp, ctx.mm_dtype, ctx.needs_input_grad  # x, w0, bias, U, V, A, B, R, C, ...
        shape3, dtype = hp.shape3, hp.dtype
        gy = grad_y.reshape(-1, grad_y.shape[-1]).to(mm_dtype)
        w = _dense_weight(w0, U, V, hp.beta, shape3, dtype, out=scratch("w", shape3, dtype, x.device))
        mf = _mask_floats(mask, shape3, dtype)  # one conversion shared by both uses below
        wm = torch.mul(w, mf, out=scratch("wm", shape3, dtype, x.device))  # W ⊙ M, later reused for dL/dS
        g_x = g_bias = None
        if need[0]:
            g_x = (gy @ wm.reshape(w0.shape).to(mm_dtype)).reshape(x.shape).to(x.dtype)
        if need[2]:
            g_bias = gy.sum(0).to(ctx.bias_dtype)
        grads = (None,) * 6
        if any(need[3:9]):
            x2 = x.reshape(-1, x.shape[-1]).to(mm_dtype)
            if mm_dtype == dtype:  # dL/d(W ⊙ M)
                g = torch.mm(gy.t(), x2, out=scratch("g", w0.shape, dtype, x.device)).view(shape3)
            else:
                g = (gy.t() @ x2).to(dtype).reshape(shape3)
            grads = _factor_grads(g, w, mf, U, V, A, B, hp, need[3:9], spare=wm)
        return g_x, None, g_bias, *grads, None, None


class _PSTMaskedWeight(torch.autograd.Function):
    """(W0 + βUV) ⊙ M alone, with the same gradients (for callers that need the weight itself)."""

    @staticmethod
    def forward(ctx, w0, U, V, A, B, R, C, mask, hp):
        shape3, dtype = hp.shape3, hp.dtype
        with _no_autocast(w0.device):
            w = _dense_weight(w0, U, V, hp.beta, shape3, dtype).mul_(_mask_floats(mask, shape3, dtype))
        ctx.save_for_backward(w0, U, V, A, B, mask)
        ctx.hp = hp
        return w.reshape(w0.shape).to(w0.dtype)

    @staticmethod
    def backward(ctx, grad):
        w0, U, V, A, B, mask = ctx.saved_tensors
        hp = ctx.hp
        shape3, dtype = hp.shape3, hp.dtype
        w = _dense_weight(w0, U, V, hp.beta, shape3, dtype)
        g = grad.reshape(shape3).to(dtype)
        grads = _factor_grads(g, w, _mask_floats(mask, shape3, dtype), U, V, A, B, hp, ctx.needs_input_grad[1:7])
        return None, *grads, None, None


class PSTLinear(TargetLinear):
    def __init__(self, base: nn.Module, splits=None, r1: int = 8, r2: int = 8, beta: float = 1.0,
                 alpha1: float = 1.0, alpha2: float = 1.0, score_terms=SCORE_TERMS):
        super().__init__(base, splits)
        self.score_terms = check_score_terms(score_terms)
        if int(r2) < 0 or ("lowrank" in self.score_terms and int(r1) < 1):
            raise ValueError(f"PST needs r2 >= 0 and, with the lowrank score term, r1 >= 1; got r1={r1}, r2={r2}")
        if len(set(self.splits)) != 1:
            raise ValueError(f"PST factors need equal fused blocks, got splits {self.splits}")
        self.r1 = int(r1) if "lowrank" in self.score_terms else 0
        self.r2 = int(r2)
        self.beta, self.alpha1, self.alpha2 = float(beta), float(alpha1), float(alpha2)
        nb, k, blocks = self.splits[0], self.in_features, len(self.splits)
        self.shape3 = (blocks, nb, k)
        kw = {"device": self.weight.device, "dtype": factor_dtype(self.weight.dtype)}

        def param(*shape, gaussian=False):
            t = torch.empty(*shape, **kw)
            return nn.Parameter(t.normal_() if gaussian else t.zero_())

        # None-valued parameters keep the attribute (and the autograd argument list) uniform across ablations
        self.U = param(blocks, nb, self.r2, gaussian=True) if self.r2 else None
        self.V = param(blocks, self.r2, k) if self.r2 else None
        self.A = param(blocks, nb, self.r1, gaussian=True) if self.r1 else None
        self.B = param(blocks, self.r1, k) if self.r1 else None
        structured = "structured" in self.score_terms
        self.R = param(blocks, nb, 1) if structured else None
        self.C = param(blocks, 1, k) if structured else None
        # state that must survive a checkpoint: the mask the forward uses and the sparsity it was built at
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))
        self.register_buffer("current_sparsity", torch.zeros((), dtype=torch.float32, device=self.weight.device))

    @property
    def compute_dtype(self) -> torch.dtype:
        """The factors' dtype: W0 + βUV is formed in it (fp32 under a 16-bit base weight)."""
        factor = next((t for t in (self.U, self.A, self.R) if t is not None), None)
        return factor.dtype if factor is not None else factor_dtype(self.weight.dtype)

    def _hp(self) -> _Hyper:
        magnitude = "magnitude" in self.score_terms
        return _Hyper(self.beta, self.alpha1, self.alpha2, magnitude, self.shape3, self.compute_dtype)

    def _dense3(self, out=None) -> torch.Tensor:
        return _dense_weight(self.weight, self.U, self.V, self.beta, self.shape3, self.compute_dtype, out)

    @torch.no_grad()
    def dense_weight(self) -> torch.Tensor:
        """W0 + βUV (out x in), unmasked."""
        return self._dense3().reshape(self.weight.shape)

    @torch.no_grad()
    def importance(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """S = |W0 + βUV| + α1·A·B + α2·(R + C) (only the configured terms), out x in; written into `out`
        (numel-sized, compute dtype) when given, so one workspace serves every layer's mask update.

        R + C is R·1ᵀ + 1·C, so both data-driven terms are one product [α1·A | α2·R | α2]·[B ; 1 ; C],
        added in a single pass over the dense score."""
        blocks, n, k = self.shape3
        left, right = [], []
        if self.A is not None:
            left += [self.A * self.alpha1]
            right += [self.B]
        if self.R is not None:
            left += [self.R * self.alpha2, self.R.new_full((blocks, n, 1), self.alpha2)]
            right += [self.C.new_ones(blocks, 1, k), self.C]
        out = None if out is None else out.view(self.shape3)
        if "magnitude" in self.score_terms:
            s = self._dense3(out).abs_()
            if left:
                s.baddbmm_(torch.cat(left, dim=2), torch.cat(right, dim=1))
        else:
            s = torch.bmm(torch.cat(left, dim=2), torch.cat(right, dim=1), out=out)
        return s.reshape(self.weight.shape)

    def _factors(self) -> tuple:
        return self.U, self.V, self.A, self.B, self.R, self.C

    def effective_weight(self) -> torch.Tensor:
        return _PSTMaskedWeight.apply(self.weight, *self._factors(), self.mask, self._hp())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the fused function, not F.linear(x, effective_weight()): it keeps no dense weight for the backward
        return _PSTLinearFn.apply(x, self.weight, self.bias, *self._factors(), self.mask, self._hp())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r1={self.r1}, r2={self.r2}, score={'+'.join(self.score_terms)}"
