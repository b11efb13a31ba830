"""SPP's layer as one autograd Function with closed-form gradients for alpha and beta.

    y = x W~^T + b + x_d (s W~')^T        W~' = W~ * Repeat0(alpha, m/r) * beta,  x_d = Dropout(x)

Why: autograd through W~' keeps m x n tensors per layer until backward (impl=naive), and eq. 7's
per-block loop runs r thin matmuls and, checkpointed, a second forward (the old impl=blocked). Here
s W~' is rebuilt in forward and again in backward (m*n elementwise work, small next to the
tokens*m*n matmuls). Saved for backward: x (often shared: q/k/v, gate/up read the same tensor) and
dropout's keep-mask as bools; x_d is rebuilt from them, where nn.Dropout would keep x_d and a float
mask per layer. Backward, with g the output gradient and H = (g^T x_d) * W~ (m x n, transient):

    dx = g W~ + Dropout'(g (s W~'))      dalpha_k = s * sum_{i in block k} beta_i H_i
                                         dbeta_i  = s * sum_j H_ij alpha_{k(i), j}

Without dropout (eval, p = 0) x_d is x and both terms share one matmul with W~ + s W~' each way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def scaled_delta_weight(weight: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, scaling: float) -> torch.Tensor:
    """s W~' (m x n): each of the r row blocks of W~ scaled by its alpha row and, per row, by s*beta."""
    r, n = alpha.shape
    m = weight.shape[0]
    blocks = weight.view(r, m // r, n) * alpha.view(r, 1, n)
    return (blocks * (scaling * beta).view(r, m // r, 1)).view(m, n)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype F.linear would run in: autocast's lower precision when it is on and applies to x."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return torch.get_autocast_dtype(device)
    return x.dtype


def dropout_keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Which entries Dropout(p) keeps, drawn exactly as nn.Dropout draws them for x (same RNG use)."""
    if x.device.type == "cpu":  # ATen's CPU dropout draws empty_like(x).bernoulli_(1 - p); the draws do not depend on dtype
        return torch.empty_like(x, dtype=torch.bool).bernoulli_(1 - p)
    return F.dropout(torch.ones_like(x), p, training=True) != 0


def kept(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """x with the dropped entries zeroed (a product with the bools: faster than where / masked_fill on CPU)."""
    return x if keep is None else x * keep


class SPPLinearFunction(torch.autograd.Function):
    """Inputs: x (..., n); weight (m x n); bias (m) or None; alpha (r x n); beta (m x 1); scaling s;
    dropout p on the branch input (0 = none, as in eval).

    Everything runs in one dtype, x's or autocast's (as F.linear would), with autocast off inside, so
    backward sees the same dtypes; each gradient comes back in its input's dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, alpha, beta, scaling, dropout):
        dtype, device = compute_dtype(x), x.device.type
        n = x.shape[-1]
        keep = dropout_keep_mask(x, dropout).reshape(-1, n) if dropout > 0 else None
        keep_scale = 1.0 / (1.0 - dropout)  # x_d = keep_scale * x where kept (1 without dropout)
        with torch.autocast(device, enabled=False):
            flat = x.reshape(-1, n).to(dtype)
            w, a, b = weight.to(dtype), alpha.to(dtype), beta.to(dtype)
            delta = scaled_delta_weight(w, a, b, scaling)
            bias_c = None if bias is None else bias.to(dtype)
            if keep is None:
                y = F.linear(flat, w + delta, bias_c)
            else:
                y = F.linear(flat, w, bias_c).addmm_(kept(flat, keep), delta.t(), alpha=keep_scale)
        need_w, need_a, need_b = (ctx.needs_input_grad[i] for i in (1, 3, 4))
        # the inputs as given (W~, alpha, beta are parameters; x is often shared), not their autocast
        # copies, and x only when a factor (or W~) trains
        ctx.save_for_backward(x.reshape(-1, n) if need_a or need_b or need_w else None, keep, weight, alpha, beta)
        ctx.scaling, ctx.keep_scale, ctx.dtype, ctx.device = scaling, keep_scale, dtype, device
        ctx.x_shape = x.shape
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, keep, weight, alpha, beta = ctx.saved_tensors
        need_x, need_w, need_bias, need_a, need_b = ctx.needs_input_grad[:5]
        s, k = ctx.scaling, ctx.keep_scale
        m, n = weight.shape
        r = alpha.shape[0]
        dx = dw = dbias = da = db = None
        with torch.autocast(ctx.device, enabled=False):
            g = grad_out.reshape(-1, m).to(ctx.dtype)
            x = None if x is None else x.to(ctx.dtype)
            w, a, b = weight.to(ctx.dtype), alpha.to(ctx.dtype), beta.to(ctx.dtype)
            delta = scaled_delta_weight(w, a, b, s)
            if need_x and keep is None:
                dx = g @ (w + delta)
            elif need_x:
                dx = (g @ w).add_((g @ delta).mul_(keep), alpha=k)
            if need_a or need_b or need_w:
                # dL/d(s W~') = g^T x_d = k g^T (x where kept), m x n; k folded into the scalars
                grad_delta = g.t() @ kept(x, keep)
                h = (grad_delta * w).view(r, m // r, n)
                if need_a:
                    da = (s * k) * torch.bmm(b.view(r, 1, m // r), h).view(r, n)
                if need_b:
                    db = (s * k) * torch.bmm(h, a.view(r, n, 1)).view(m, 1)
                if need_w:  # W~ is frozen in SPP; exact anyway for callers that unfreeze it
                    factor = ((s * k) * a.view(r, 1, n) * b.view(r, m // r, 1)).view(m, n)
                    dw = grad_delta * factor + (grad_delta if keep is None else g.t() @ x)
            if need_bias:
                dbias = g.sum(0)
        # autograd casts each gradient to its input's dtype (fp32 alpha/beta under a 16-bit base)
        return None if dx is None else dx.view(ctx.x_shape), dw, dbias, da, db, None, None
