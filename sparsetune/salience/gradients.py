"""Data-aware statistics: mean gradient, mean per-example squared gradient, Hessian-gradient product.

All are expectations over the salience batches (salience.num_batches x salience.batch_size examples),
averaged per example. Gradients are taken w.r.t. each target layer's effective weight (for SPEFT, whose
sparse values are merged and zero while scoring, that is the weight itself).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..bars import bar
from .base import register_statistic
from .capture import LayerIO, analysis_mode, per_example_grad_sq, weight_grad
from .losses import logits_of, per_example_loss, split_batch


def _add(acc: dict, key: str, value: torch.Tensor) -> None:
    acc[key] = acc[key] + value if key in acc else value


@register_statistic("grad", "grad_sq")
def gradient_moments(model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[dict], options: dict,
                     keys: set[str]) -> dict:
    """`grad` = (1/N) sum_n g_n (the signed mean gradient, as the reference averages it),
    `grad_sq` = (1/N) sum_n g_n^2 (empirical Fisher diagonal), g_n = gradient of example n's loss."""
    sums: dict[str, dict] = {}
    count = 0
    with analysis_mode(model, layers):
        for batch in bar(batches, "salience gradients", unit="batch"):
            inputs, labels = split_batch(batch)
            with LayerIO(layers) as io:
                losses = per_example_loss(logits_of(model(**inputs)), labels)
                calls = io.backprop(losses.sum())
            for name, pairs in calls.items():
                acc = sums.setdefault(name, {})
                if "grad_sq" in keys and len(pairs) > 1:
                    raise ValueError(f"{name} runs {len(pairs)} times per forward: per-example gradients of shared "
                                     "weights are not supported")
                for x, delta in pairs:
                    if "grad" in keys:
                        _add(acc, "grad", weight_grad(x, delta))
                    if "grad_sq" in keys:
                        _add(acc, "grad_sq", per_example_grad_sq(x, delta, options.get("chunk_elements", 1 << 24)))
            count += losses.numel()
    return {name: {k: v / count for k, v in acc.items()} for name, acc in sums.items()}


@contextmanager
def _double_backward_attention() -> Iterator[None]:
    """Fused SDPA kernels (flash / memory-efficient) have no double backward: use the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


@register_statistic("hvp")
def hessian_gradient_product(model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[dict],
                             options: dict, keys: set[str]) -> dict:
    """`hvp` = H g for the mean tempered loss L_T (logits / temperature, GraSP's T = 200):
    pass 1 computes g = grad L_T, pass 2 differentiates <stop_grad(g), grad L_T> once more, over the same
    batches (twice the gradient evaluations of the first-order metrics)."""
    temperature = float(options.get("temperature", 1.0))
    names = list(layers)
    weights = [layers[n].weight for n in names]
    count = sum(split_batch(b)[1].shape[0] for b in batches)

    def batch_grads(batch, create_graph):
        inputs, labels = split_batch(batch)
        losses = per_example_loss(logits_of(model(**inputs)), labels, temperature)
        return torch.autograd.grad(losses.sum(), weights, create_graph=create_graph, allow_unused=True)

    with analysis_mode(model, layers, differentiable_weights=True), _double_backward_attention():
        g_mean = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
        for batch in bar(batches, "GraSP mean gradient", unit="batch"):
            for acc, g in zip(g_mean, batch_grads(batch, create_graph=False)):
                if g is not None:
                    acc += g.float() / count
        hv = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
        for batch in bar(batches, "GraSP Hessian-gradient product", unit="batch"):
            grads = batch_grads(batch, create_graph=True)
            inner = sum((g.float() * gm).sum() for g, gm in zip(grads, g_mean) if g is not None)
            for acc, h in zip(hv, torch.autograd.grad(inner, weights, allow_unused=True)):
                if h is not None:
                    acc += h.float() / count
    return {n: {"hvp": h} for n, h in zip(names, hv)}
