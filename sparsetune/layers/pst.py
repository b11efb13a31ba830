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

from .base import TargetLinear

SCORE_TERMS = ("magnitude", "lowrank", "structured")  # |W0 + βUV|, α1·A·B, α2·(R + C)


class _Hyper(NamedTuple):
    beta: float
    alpha1: float
    alpha2: float
    magnitude: bool  # |W| is in the score, so W also gets G ⊙ |W|
    shape3: tuple  # (blocks, n_b, k)
    dtype: torch.dtype  # W0 + βUV is formed in the factors' dtype


def check_score_terms(terms) -> tuple[str, ...]:
    terms = tuple(terms)
    bad = [t for t in terms if t not in SCORE_TERMS]
    if bad or not terms or len(set(terms)) != len(terms):
        raise ValueError(
            f"PST score_terms must be a non-empty subset of {list(SCORE_TERMS)} without repeats, got {list(terms)}")
    return terms


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


def _dense_weight(w0: torch.Tensor, U, V, beta: float, shape3: tuple[int, int, int], dtype) -> torch.Tensor:
    """A fresh (blocks, n_b, k) tensor holding W0 + β·U·V."""
    w = w0.reshape(shape3)
    if U is None:
        return w.to(dtype, copy=True)
    return torch.baddbmm(w.to(dtype), U, V, alpha=beta)


def _scaled(t: torch.Tensor, factor: float) -> torch.Tensor:
    return t if factor == 1.0 else t.mul_(factor)


def _factor_grads(g, w, U, V, A, B, m, hp, need) -> tuple:
    """Gradients of (U, V, A, B, R, C) from g = dL/d(W ⊙ M) and w = W0 + βUV (consumed in place), all
    shaped (blocks, n_b, k); `need` flags which of the six are wanted."""
    beta, alpha1, alpha2, magnitude = hp.beta, hp.alpha1, hp.alpha2, hp.magnitude
    gU = gV = gA = gB = gR = gC = None
    if any(need[2:6]):
        g_score = g * w  # dL/dS: straight through the top-k
        if need[2]:
            gA = _scaled(torch.bmm(g_score, B.transpose(1, 2)), alpha1)
        if need[3]:
            gB = _scaled(torch.bmm(A.transpose(1, 2), g_score), alpha1)
        if need[4]:
            gR = _scaled(g_score.sum(2, keepdim=True), alpha2)
        if need[5]:
            gC = _scaled(g_score.sum(1, keepdim=True), alpha2)
        del g_score
    if need[0] or need[1]:
        # dL/dW = G ⊙ M (masked weight) + sign(W) ⊙ G ⊙ W = G ⊙ |W| (the |W| score term), built in place
        g_w = (w.abs_().add_(m) if magnitude else w.copy_(m)).mul_(g)
        if need[0]:
            gU = _scaled(torch.bmm(g_w, V.transpose(1, 2)), beta)
        if need[1]:
            gV = _scaled(torch.bmm(U.transpose(1, 2), g_w), beta)
    return gU, gV, gA, gB, gR, gC


class _PSTLinearFn(torch.autograd.Function):
    """y = x ((W0 + βUV) ⊙ M)ᵀ + b with the STE gradients of eq. 6-8. Only x and the small factors are
    saved: the dense masked weight is rebuilt in the backward instead of being kept alive per layer
    between the passes (340 MB fp32 for BERT-base). Under autocast the matmuls run in its dtype."""

    @staticmethod
    def forward(ctx, x, w0, bias, U, V, A, B, R, C, mask, hp):
        shape3, dtype = hp.shape3, hp.dtype
        mm_dtype = _autocast_dtype(x.device) or x.dtype
        with _no_autocast(x.device):
            w = _dense_weight(w0, U, V, hp.beta, shape3, dtype).mul_(mask.reshape(shape3))
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
        m = mask.reshape(shape3)
        gy = grad_y.reshape(-1, grad_y.shape[-1]).to(mm_dtype)
        w = _dense_weight(w0, U, V, hp.beta, shape3, dtype)
        g_x = g_bias = None
        if need[0]:
            g_x = (gy @ (w * m).reshape(w0.shape).to(mm_dtype)).reshape(x.shape).to(x.dtype)
        if need[2]:
            g_bias = gy.sum(0).to(ctx.bias_dtype)
        grads = (None,) * 6
        if any(need[3:9]):
            g = (gy.t() @ x.reshape(-1, x.shape[-1]).to(mm_dtype)).to(dtype).reshape(shape3)  # dL/d(W ⊙ M)
            grads = _factor_grads(g, w, U, V, A, B, m, hp, need[3:9])
        return g_x, None, g_bias, *grads, None, None


class _PSTMaskedWeight(torch.autograd.Function):
    """(W0 + βUV) ⊙ M alone, with the same gradients (for callers that need the weight itself)."""

    @staticmethod
    def forward(ctx, w0, U, V, A, B, R, C, mask, hp):
        shape3, dtype = hp.shape3, hp.dtype
        with _no_autocast(w0.device):
            w = _dense_weight(w0, U, V, hp.beta, shape3, dtype).mul_(mask.reshape(shape3))
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
        grads = _factor_grads(g, w, U, V, A, B, mask.reshape(shape3), hp, ctx.needs_input_grad[1:7])
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

    def _dense3(self) -> torch.Tensor:
        return _dense_weight(self.weight, self.U, self.V, self.beta, self.shape3, self.compute_dtype)

    @torch.no_grad()
    def dense_weight(self) -> torch.Tensor:
        """W0 + βUV (out x in), unmasked."""
        return self._dense3().reshape(self.weight.shape)

    @torch.no_grad()
    def importance(self) -> torch.Tensor:
        """S = |W0 + βUV| + α1·A·B + α2·(R + C) (only the configured terms), out x in."""
        s = self._dense3().abs_() if "magnitude" in self.score_terms else None
        if self.A is not None:
            s = torch.bmm(self.A, self.B).mul_(self.alpha1) if s is None else s.baddbmm_(self.A, self.B, alpha=self.alpha1)
        if self.R is not None:
            if s is None:
                s = torch.add(self.R, self.C).mul_(self.alpha2)  # (blocks, n_b, k) by broadcasting
            else:  # in place: no second dense temporary
                s.add_(self.R, alpha=self.alpha2).add_(self.C, alpha=self.alpha2)
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
