"""Finding and replacing the target weight matrices of a model.

Targets are named by suffixes of qualified module names (model config `target_modules`), so one list
covers every layer: BERT `query` matches `bert.encoder.layer.3.attention.self.query`. Both nn.Linear and
transformers' Conv1D (GPT-2, weight stored in x out) are accepted.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

LINEAR_TYPES = (nn.Linear, Conv1D)


def _matches(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def find_targets(model: nn.Module, suffixes: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, nn.Module]:
    suffixes, exclude = list(suffixes), list(exclude)
    found = {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, LINEAR_TYPES)
        and any(_matches(name, s) for s in suffixes)
        and not any(_matches(name, e) or name.startswith(e + ".") for e in exclude)
    }
    if not found:
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)})
        raise ValueError(f"target_modules {suffixes} matched no Linear/Conv1D layer; linear layer names here: {linear}")
    return found


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in) whatever the module type: a view, so in-place ops reach the module."""
    return module.weight.t() if isinstance(module, Conv1D) else module.weight


@torch.no_grad()
def set_weight_out_in(module: nn.Module, value: torch.Tensor) -> None:
    value = value.to(module.weight.dtype)
    module.weight.copy_(value.t() if isinstance(module, Conv1D) else value)


def replace_module(model: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, child = qualified_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fused_splits(name: str, out_features: int, fused: dict | None) -> tuple[int, ...] | None:
    """Output-row split of a fused matrix (GPT-2 c_attn = q|k|v), from model config `fused_modules`."""
    for suffix, parts in (fused or {}).items():
        if _matches(name, suffix):
            if out_features % int(parts):
                raise ValueError(f"{name}: {out_features} output rows do not split into {parts} equal parts")
            return (out_features // int(parts),) * int(parts)
    return None
