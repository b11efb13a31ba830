"""Scratch buffers: one storage per role, reused across requests, and PST layers of different shapes
sharing them in one forward/backward still produce the explicit formula's gradients."""
from __future__ import annotations

import torch
from test_pst import explicit_forward, linear

from sparsetune.layers import workspace
from sparsetune.layers.pst import PSTLinear
from sparsetune.masks import topk_mask


def test_scratch_reuses_one_buffer_per_role():
    workspace.release()
    a = workspace.scratch("t", (4, 5), torch.float32, torch.device("cpu"))
    b = workspace.scratch("t", (2, 3), torch.float32, torch.device("cpu"))
    assert a.data_ptr() == b.data_ptr() and b.shape == (2, 3)
    other = workspace.scratch("u", (2, 3), torch.float32, torch.device("cpu"))
    assert other.data_ptr() != a.data_ptr()
    grown = workspace.scratch("t", (10, 10), torch.float32, torch.device("cpu"))
    assert grown.numel() == 100  # a larger request replaces the buffer
    workspace.release()


def test_stacked_layers_sharing_scratch_match_the_explicit_formula():
    torch.manual_seed(4)
    shapes = [(6, 5), (9, 6), (4, 9)]  # each layer's input is the previous one's output
    layers, refs = [], []
    for out_f, in_f in shapes:
        layer = PSTLinear(linear(torch.randn(out_f, in_f, dtype=torch.float64)), r1=2, r2=3)
        with torch.no_grad():
            for n in ("U", "V", "A", "B", "R", "C"):
                getattr(layer, n).normal_()
            layer.mask.copy_(topk_mask(layer.importance(), 0.5))
        layers.append(layer)
        refs.append({n: getattr(layer, n).detach().clone().requires_grad_(True) for n in ("U", "V", "A", "B", "R", "C")})
    x = torch.randn(3, 5, dtype=torch.float64)
    y = x
    for layer in layers:
        y = torch.tanh(layer(y))
    y.sum().backward()
    y_ref = x
    for layer, ref in zip(layers, refs):
        w0, bias = layer.weight.detach(), layer.bias.detach()
        y_ref = torch.tanh(explicit_forward(w0, ref, layer.mask, 1.0, 1.0, 1.0, ("magnitude", "lowrank", "structured"),
                                            1, y_ref, bias))
    y_ref.sum().backward()
    assert torch.allclose(y, y_ref)
    for layer, ref in zip(layers, refs):
        for n, p in ref.items():
            assert torch.allclose(getattr(layer, n).grad, p.grad, atol=1e-10), n
