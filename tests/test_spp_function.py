"""SPPLinearFunction (impl=blocked) against the reference formulas: outputs and every gradient equal the
explicit W~' = W~ * Repeat0(alpha) * beta through autograd and eq. 7's per-block form (the previous
implementation) under the same dropout draw, and backward keeps only x and a bool mask."""
import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sparsetune.layers.spp import SPPLinear
from sparsetune.layers.spp_function import SPPLinearFunction

torch.set_num_threads(1)
S = 2.0


def pruned_linear(m, n, bias=True, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n, m, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(m, n) > 0.5)
    return lin


def explicit_forward(x, x_drop, w, b, alpha, beta, r):
    """Eq. 4-5 as written: y = x W~^T + b + s x_d (W~ * Repeat0(alpha, m/r) * beta)^T, through autograd."""
    delta = w * alpha.repeat_interleave(w.shape[0] // r, dim=0) * beta
    return nn.functional.linear(x, w, b) + S * x_drop @ delta.t()


def eq7_forward(x, x_drop, w, b, alpha, beta, r):
    """Eq. 7 as the paper (and the previous impl=blocked) computes it: per row block k, (x_d * alpha_k) W~_k^T,
    concatenated, times beta; checkpointed as before."""
    m, n = w.shape
    blocks = w.view(r, m // r, n)

    def branch(xd):
        flat = xd.reshape(-1, n)
        out = torch.cat([nn.functional.linear(flat * alpha[k], blocks[k]) for k in range(r)], dim=-1)
        return (out * beta.view(1, -1)).view(*xd.shape[:-1], m)

    return nn.functional.linear(x, w, b) + S * checkpoint(branch, x_drop, use_reentrant=False)


def factors(r, n, m, use_beta, zero_init, seed=3):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(r, n) if zero_init in ("alpha", "both") else torch.randn(r, n, generator=g)
    beta = torch.zeros(m, 1) if zero_init in ("beta", "both") else torch.randn(m, 1, generator=g)
    return alpha, beta if use_beta else torch.ones(m, 1)


def grads_of(fn, x, p, w, b, alpha, beta, use_beta, r, train_weight=False, train_bias=False, seed=5):
    """Output and gradients (x, alpha, beta[, W, b]) of one forward/backward; the references draw
    Dropout(p) with nn.Dropout from `seed`, the Function its own mask from the same seed."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(train_weight)
    b = None if b is None else b.detach().clone().requires_grad_(train_bias)
    alpha = alpha.detach().clone().requires_grad_(True)
    beta = beta.detach().clone().requires_grad_(use_beta)
    torch.manual_seed(seed)
    if fn is SPPLinearFunction:
        y = SPPLinearFunction.apply(x, w, b, alpha, beta, S, p)
    else:
        y = fn(x, nn.Dropout(p)(x) if p > 0 else x, w, b, alpha, beta, r)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype)
    (y * g).sum().backward()
    out = {"y": y.detach(), "x": x.grad, "alpha": alpha.grad}
    if use_beta:
        out["beta"] = beta.grad
    if train_weight:
        out["weight"] = w.grad
    if train_bias:
        out["bias"] = b.grad
    return out


CASES = [  # (m, n, r, lead dims of x)
    (8, 6, 4, (5,)), (12, 5, 3, (2, 3)), (16, 8, 1, (4,)), (16, 8, 16, (2, 2, 3)), (24, 10, 8, (7,)),
]
INITS = [(True, "beta"), (True, "alpha"), (True, "none"), (True, "both"), (False, "alpha"), (False, "none")]


@pytest.mark.parametrize("m,n,r,lead", CASES)
@pytest.mark.parametrize("use_beta,zero_init", INITS)
@pytest.mark.parametrize("p", [0.05, 0.5, 0.0], ids=["dropout", "dropout-half", "no-dropout"])
def test_function_matches_explicit_and_eq7_outputs_and_gradients(m, n, r, lead, use_beta, zero_init, p):
    lin = pruned_linear(m, n, bias=m % 16 != 0)  # with and without bias
    w, b = lin.weight.detach(), None if lin.bias is None else lin.bias.detach()
    alpha, beta = factors(r, n, m, use_beta, zero_init)
    x = torch.randn(*lead, n, generator=torch.Generator().manual_seed(1))
    args = (x, p, w, b, alpha, beta, use_beta, r)
    new = grads_of(SPPLinearFunction, *args)
    for reference in (explicit_forward, eq7_forward):
        ref = grads_of(reference, *args)
        assert new.keys() == ref.keys()
        for key in ref:
            assert new[key].shape == ref[key].shape and new[key].dtype == ref[key].dtype, key
            torch.testing.assert_close(new[key], ref[key], atol=1e-5, rtol=1e-5, msg=f"{reference.__name__}: {key}")
    if zero_init == "both":  # a null update: no gradient reaches either factor
        assert not new["alpha"].any() and not new["beta"].any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.0])
def test_unfrozen_weight_and_bias_get_the_exact_gradients(p):
    lin = pruned_linear(12, 8)
    alpha, beta = factors(4, 8, 12, True, "none")
    args = (torch.randn(3, 5, 8), p, lin.weight, lin.bias, alpha, beta, True, 4)
    new = grads_of(SPPLinearFunction, *args, train_weight=True, train_bias=True)
    ref = grads_of(explicit_forward, *args, train_weight=True, train_bias=True)
    for key in ref:
        torch.testing.assert_close(new[key], ref[key], atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("dropout", [0.0, 0.05, 0.3])
def test_layer_blocked_equals_naive_in_train_and_eval_with_the_same_dropout_draw(dropout):
    lin = pruned_linear(16, 8)
    layers = {impl: SPPLinear(lin, r=4, scaling=S, dropout=dropout, impl=impl, zero_init="none") for impl in ("blocked", "naive")}
    layers["naive"].load_state_dict(layers["blocked"].state_dict())
    x = torch.randn(2, 5, 8)
    for train in (True, False):
        out = {}
        for impl, layer in layers.items():
            layer.train(train).zero_grad()
            torch.manual_seed(11)  # the same dropout mask for both
            xi = x.clone().requires_grad_(True)
            y = layer(xi)
            y.pow(2).sum().backward()
            out[impl] = (y.detach(), xi.grad, layer.alpha.grad, layer.beta.grad)
        for new, ref in zip(out["blocked"], out["naive"], strict=True):
            torch.testing.assert_close(new, ref, atol=1e-5, rtol=1e-5)


def test_backward_keeps_no_m_by_n_tensor_only_the_branch_input():
    m, n, tokens = 64, 48, 4  # tokens * n < m * n, so a saved weight-sized tensor would stand out
    layer = SPPLinear(pruned_linear(m, n), r=8, scaling=S, dropout=0.1, zero_init="none").train()
    params = {p.data_ptr() for p in layer.parameters()}
    saved = []

    def pack(t):
        if t.data_ptr() not in params:
            saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(torch.randn(tokens, n, requires_grad=True)).sum().backward()
    assert sorted((str(t.dtype), t.numel()) for t in saved) == [("torch.bool", tokens * n), ("torch.float32", tokens * n)]  # mask, x


def test_bf16_autocast_runs_in_bf16_and_matches_the_explicit_formula():
    lin = pruned_linear(16, 8)
    alpha, beta = factors(4, 8, 16, True, "none")
    args = (torch.randn(6, 8), 0.5, lin.weight, lin.bias, alpha, beta, True, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new = grads_of(SPPLinearFunction, *args)
    ref = grads_of(explicit_forward, *args)
    assert new["y"].dtype == torch.bfloat16  # as F.linear under autocast
    assert new["x"].dtype == new["alpha"].dtype == new["beta"].dtype == torch.float32  # the inputs' own dtypes
    for key in ref:
        torch.testing.assert_close(new[key].float(), ref[key], atol=0.1, rtol=0.05, msg=key)
