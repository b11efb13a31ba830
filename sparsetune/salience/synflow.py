"""SynFlow (Tanaka et al. 2020): data-free synaptic flow, R = 1^T (prod_l |theta_l|) 1.

The network is linearised for the duration of one forward/backward, and everything is restored after:
- every parameter is replaced by its absolute value (signs saved as bit masks and restored exactly);
- element-wise activation modules become the identity and LayerNorms keep only their affine part
  (x * weight + bias): an all-ones input would make LayerNorm's centred input zero and cut the flow;
  this is done with forward hooks on those module instances, not by patching torch globally. RMSNorm does not
  centre, so it stays a normaliser, as in the reference (which linearises activations only): that also keeps
  a gated MLP's flow finite (see below) and Gemma's (1 + weight) scale right;
- the model runs in float64 (salience.options.dtype), since the product of |theta| over a deep
  network overflows float32; eval mode, so dropout is off. A gated MLP (SwiGLU in LLaMA / SmolLM2 / Qwen,
  GeGLU in Gemma) linearised is the product of two linear paths, so without a normaliser between blocks the
  flow's degree doubles per layer and overflows even float64: that is a clear error, not an inf-ranked mask;
- attention runs eager: torch's sdpa backward on CPU returns query/key gradients of +-1e102 on MiniLM-L6's
  linearised float64 network where the exact value is 0 (a single token attends only to itself), which swamps
  every real score (and overflowed to inf in real runs); eager attention gives the exact 0.
Input: all-ones `inputs_embeds` of shape (1, seq_len, hidden) for transformers (all-ones features for
a plain module). R = sum of the outputs (logits). Note: with identical tokens, softmax attention is
constant in the query/key weights, so those get zero flow (as in the reference, which also feeds ones).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from .base import register_statistic
from .capture import LayerIO, analysis_mode
from .losses import logits_of

DTYPES = {"float64": torch.float64, "float32": torch.float32}

_TORCH_ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus,
                      nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU)


def is_activation(m: nn.Module) -> bool:
    return isinstance(m, _TORCH_ACTIVATIONS) or type(m).__module__ == "transformers.activations"


def is_centring_norm(m: nn.Module) -> bool:
    return isinstance(m, nn.LayerNorm) or type(m).__name__.endswith("LayerNorm")


@contextmanager
def positive_parameters(model: nn.Module) -> Iterator[None]:
    negative = {}
    with torch.no_grad():
        for p in model.parameters():
            neg = torch.signbit(p)
            if neg.any():
                negative[p] = neg
            p.abs_()
    try:
        yield
    finally:
        with torch.no_grad():
            for p, neg in negative.items():
                p.copy_(torch.where(neg, -p, p))


@contextmanager
def cast_floating(model: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Cast floating parameters and buffers in place (same Parameter objects), restoring each dtype."""
    params = [(p, p.dtype) for p in model.parameters() if p.is_floating_point()]
    buffers = [(m, n, b.dtype) for m in model.modules() for n, b in m._buffers.items()
               if b is not None and b.is_floating_point()]
    for p, _ in params:
        p.data = p.data.to(dtype)
    for m, n, _ in buffers:
        m._buffers[n] = m._buffers[n].to(dtype)
    try:
        yield
    finally:
        for p, dt in params:
            p.data = p.data.to(dt)
        for m, n, dt in buffers:
            m._buffers[n] = m._buffers[n].to(dt)


@contextmanager
def linearised(model: nn.Module) -> Iterator[None]:
    def identity(module, args, output):
        return args[0]

    def affine(module, args, output):
        x = args[0]
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        x = x * weight if weight is not None else x
        return x + bias if bias is not None else x

    handles = [m.register_forward_hook(identity) for m in model.modules() if is_activation(m)]
    handles += [m.register_forward_hook(affine) for m in model.modules() if is_centring_norm(m)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Switch a transformers model to eager attention for the duration (public set_attn_implementation), then back."""
    current = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if switch is None or current in (None, "eager"):
        yield
        return
    switch("eager")
    try:
        yield
    finally:
        switch(current)


def ones_forward(model: nn.Module, dtype: torch.dtype, seq_len: int) -> torch.Tensor:
    device = next(model.parameters()).device
    embeddings = None
    if hasattr(model, "get_input_embeddings"):
        try:
            embeddings = model.get_input_embeddings()
        except NotImplementedError:
            embeddings = None
    if embeddings is not None:
        hidden = embeddings.weight.shape[1]
        return logits_of(model(inputs_embeds=torch.ones(1, seq_len, hidden, dtype=dtype, device=device)))
    first = next(m for m in model.modules() if hasattr(m, "in_features"))  # nn.Linear or a wrapped target
    return logits_of(model(torch.ones(1, first.in_features, dtype=dtype, device=device)))


@register_statistic("synflow_grad", needs_data=False)
def synaptic_flow(model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[dict] | None,
                  options: dict, keys: set[str]) -> dict:
    """`synflow_grad` = dR/dW at |theta|, divided by its largest magnitude over all target layers (one positive
    constant for all layers, so every ranking is unchanged and the float32 result cannot overflow)."""
    dtype = DTYPES[options.get("dtype", "float64")]
    grads: dict[str, torch.Tensor] = {}
    with ExitStack() as stack:
        stack.enter_context(analysis_mode(model, layers))
        stack.enter_context(positive_parameters(model))
        stack.enter_context(cast_floating(model, dtype))
        stack.enter_context(linearised(model))
        stack.enter_context(eager_attention(model))
        with LayerIO(layers) as io:
            flow = ones_forward(model, dtype, int(options.get("seq_len", 1))).sum()
            calls = io.backprop(flow)
        for name, pairs in calls.items():
            grads[name] = sum(_grad64(x, d) for x, d in pairs)
    if not grads:
        return {}
    peak = max(float(g.abs().max()) for g in grads.values())  # signed: a kept RMSNorm's Jacobian can be negative
    if not torch.isfinite(torch.tensor(peak)):
        hint = ("use salience.options.dtype=float64" if dtype != torch.float64 else
                "float64 is the widest: with activations linearised a gated MLP (SwiGLU, GeGLU) multiplies two linear "
                "paths, so the flow's degree doubles at every layer and a deep gated model has no finite SynFlow score")
        raise ValueError(f"synflow overflowed in {dtype}; {hint}")
    scale = peak if peak > 0 else 1.0
    return {name: {"synflow_grad": (g / scale).float()} for name, g in grads.items()}


def _grad64(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    d2 = delta.reshape(-1, delta.shape[-1]).double()
    return d2.t().mm(x.reshape(-1, x.shape[-1]).double())
