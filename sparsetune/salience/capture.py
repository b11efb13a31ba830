"""Reading gradients at the target layers without touching `.grad`.

Forward hooks record each target layer's input x and output y's gradient edge; `torch.autograd.grad`
on those edges returns the output gradients delta, and the gradient of the layer's (effective) weight is
delta^T x summed over every leading dimension. Nothing accumulates into `.grad` (no dense weight
gradient is left behind, unlike the reference), and per-example gradients come from the same x and
delta by keeping the batch dimension.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.autograd.graph import get_gradient_edge


@contextmanager
def analysis_mode(model: nn.Module, layers: Mapping[str, nn.Module], differentiable_weights: bool = False
                  ) -> Iterator[None]:
    """Eval mode (no dropout: scores depend on weights and data only) with gradients enabled; with
    `differentiable_weights` the target weights require grad (second-order metrics). Flags are restored."""
    training = {m: m.training for m in model.modules()}
    flags = {layer: layer.weight.requires_grad for layer in layers.values()}
    model.eval()
    if differentiable_weights:
        for layer in layers.values():
            layer.weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for layer, flag in flags.items():
            layer.weight.requires_grad_(flag)
        for m, mode in training.items():
            m.training = mode


class LayerIO:
    """Context manager recording, for every call of the given layers during a forward, the input x and
    the gradient edge of the output y (the edge, not y: no output is kept alive for the backward)."""

    def __init__(self, layers: Mapping[str, nn.Module]):
        self.layers = layers
        self.calls: dict[str, list] = {}
        self._handles: list = []

    def __enter__(self) -> LayerIO:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._recorder(name)))
        return self

    def _recorder(self, name: str):
        def hook(module, args, output):
            if not output.requires_grad:  # frozen layer fed by frozen layers: its output becomes the leaf
                output.requires_grad_(True)
            self.calls.setdefault(name, []).append((args[0].detach(), get_gradient_edge(output)))

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def backprop(self, objective: torch.Tensor) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        """{layer: [(x, d objective / d y) per call]}; calls that do not reach the objective are dropped."""
        flat = [(name, x, edge) for name, calls in self.calls.items() for x, edge in calls]
        if not flat:
            raise RuntimeError("no target layer ran in the forward: nothing to score")
        deltas = torch.autograd.grad(objective, [edge for _, _, edge in flat], allow_unused=True)
        out: dict[str, list] = {}
        for (name, x, _), d in zip(flat, deltas):
            if d is not None:
                out.setdefault(name, []).append((x, d))
        self.calls.clear()
        return out


def weight_grad(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """d objective / d W for y = x W^T + b: delta^T x over every leading dim, in float32 (out x in)."""
    d2 = delta.reshape(-1, delta.shape[-1]).float()
    x2 = x.reshape(-1, x.shape[-1]).float()
    return d2.t().mm(x2)


def per_example_grad_sq(x: torch.Tensor, delta: torch.Tensor, chunk_elements: int) -> torch.Tensor:
    """sum over examples n of (delta_n^T x_n)^2, the batch being dim 0; examples are processed in chunks
    of at most `chunk_elements` gradient entries so memory stays bounded."""
    b = x.shape[0]
    xb = x.reshape(b, -1, x.shape[-1]).float()
    db = delta.reshape(b, -1, delta.shape[-1]).float()
    out_f, in_f = db.shape[-1], xb.shape[-1]
    step = max(1, int(chunk_elements) // (out_f * in_f))
    acc = torch.zeros(out_f, in_f, device=x.device)
    for i in range(0, b, step):
        g = torch.bmm(db[i : i + step].transpose(1, 2), xb[i : i + step])
        acc += g.pow_(2).sum(0)
    return acc
