"""The eight SPEFT salience metrics (paper §3.2) as pure functions score(weight, stats) -> tensor.

`grad` is the signed gradient averaged over the salience examples (the reference's ḡ: the abs of the
mean, not the mean of the abs), `grad_sq` the per-example squared gradient averaged (empirical Fisher),
`hvp` the Hessian-gradient product of the tempered loss, `synflow_grad` dR/dθ of the linearised
all-positive network. Larger score = more salient = selected first.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from . import gradients, synflow  # noqa: F401  (register the collectors the metrics need)
from .base import register_salience

Stats = Mapping[str, torch.Tensor]


@register_salience("magnitude")
def magnitude(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return weight.abs()


@register_salience("gradient", needs=("grad",))
def gradient(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return stats["grad"].abs()


@register_salience("snip", needs=("grad",))
def snip(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return (stats["grad"] * weight).abs()


@register_salience("force", needs=("grad",))
def force(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return -(stats["grad"] * weight)


@register_salience("taylor_fo", needs=("grad",))
def taylor_fo(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return (stats["grad"] * weight) ** 2


@register_salience("synflow", needs=("synflow_grad",), options={"dtype": "float64", "seq_len": 1})
def synflow_score(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return (weight * stats["synflow_grad"]).abs()


@register_salience("grasp", needs=("hvp",), options={"temperature": 200.0})
def grasp(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    """-(H g) ⊙ θ as the paper writes it (the reference code ranks +θ ⊙ H g, the opposite sign)."""
    return -(stats["hvp"] * weight)


@register_salience("fisher", needs=("grad_sq",), options={"chunk_elements": 1 << 24})
def fisher(weight: torch.Tensor, stats: Stats) -> torch.Tensor:
    return stats["grad_sq"]
