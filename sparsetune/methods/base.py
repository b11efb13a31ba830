"""The method interface. A method = one file here + one YAML in conf/method/ + one contract-test entry.

`run()` only talks to this interface: it never branches on the method's name.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from ..layers.base import TargetLinear
from ..method_schemas import MethodConfig
from ..targets import find_targets, fused_splits, replace_module, weight_out_in


@dataclass
class MethodContext:
    """What a method may use while it is applied."""

    cfg: DictConfig  # the whole composed config
    total_steps: int
    dry_run: bool = False
    # batches(n, batch_size=None, seed=None) yields n training batches (dicts of tensors on the model's
    # device), for salience / calibration; another seed gives other batches
    batches: Callable[..., Iterable[dict]] | None = None
    tokenizer: Any = None
    extras: dict = field(default_factory=dict)


class Method:
    """Dense fine-tuning semantics by default; sparse methods override the hooks they need."""

    name = "base"
    Config = MethodConfig  # the schema (sparsetune/method_schemas.py): fields and the checks needing only the config

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.mcfg = cfg.method
        self.layers: dict[str, TargetLinear] = {}

    # ---- lifecycle --------------------------------------------------------------------
    def validate(self, cfg: DictConfig) -> None:
        """Raise ValueError with what is allowed, before anything heavy runs. Subclasses add the checks
        that need their libraries and call this first."""
        type(self).Config.check(cfg)

    def apply(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        return model

    def callbacks(self) -> list:
        return []

    def optimizer_groups(self, model: nn.Module) -> list[dict] | None:
        """Parameter groups with their own lr/weight decay; None lets the Trainer decide."""
        return None

    def merge(self, model: nn.Module) -> nn.Module:
        """Turn every method layer back into a plain module holding the merged weight."""
        for name, layer in list(self.layers.items()):
            replace_module(model, name, layer.to_plain())
        self.layers = {}
        return model

    def in_final_phase(self, step: int) -> bool:
        """Whether the model evaluated after `step` optimizer steps has the method's final form (train.select=best
        picks only among those); scheduled sparsity methods wait for the target sparsity."""
        return True

    def target_sparsity(self) -> float:
        return float(self.mcfg.get("sparsity", 0.0) or 0.0)

    def record(self) -> dict:
        """Method-specific facts for results.json (choices, provenance, per-layer counts)."""
        return {}

    def checkpoint_state(self) -> dict:
        """JSON-able state a checkpoint must carry besides tensors (e.g. the history of mask updates);
        written into every checkpoint, handed back to restore_checkpoint_state on resume."""
        return {}

    def restore_checkpoint_state(self, state: dict) -> None:
        """Called after apply() when the run resumes from a checkpoint that holds `state`."""

    def sparsity_not_applicable(self) -> dict:
        """For methods that prune nothing (target 0): a sweep may share method.sparsity with sparse methods;
        the record says it was ignored rather than letting the config suggest a sparse run."""
        given = self.mcfg.get("sparsity")
        if given is None:
            return {}
        return {"sparsity_note": f"method.sparsity={given} is not applicable to method={self.name}: "
                                 "it prunes nothing (target sparsity 0)"}

    # ---- helpers for subclasses ------------------------------------------------------
    def wrap_targets(self, model: nn.Module, factory: Callable[[str, nn.Module, tuple | None], TargetLinear]) -> None:
        for name, mod in model_targets(model, self.cfg).items():
            splits = fused_splits(name, weight_out_in(mod).shape[0], self.cfg.model.get("fused_modules"))
            layer = factory(name, mod, splits)
            replace_module(model, name, layer)
            self.layers[name] = layer

    def set_trainable(self, model: nn.Module, extra: Iterable[str] = ()) -> None:
        """Freeze everything, then unfreeze the method's own parameters, the task head and `extra` names.

        `method.train_head`: full = every head module, final = only the last projection, none.
        `method.train_bias`: also train the biases of the target matrices.
        """
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in self.layers.values():
            for pname, p in layer.named_parameters(recurse=False):
                if pname not in ("weight", "bias"):
                    p.requires_grad_(True)
            if self.mcfg.get("train_bias", False) and layer.bias is not None:
                layer.bias.requires_grad_(True)
        for prefix in list(head_modules(self.cfg)) + list(extra):
            for n, p in model.named_parameters():
                if n == prefix or n.startswith(prefix + "."):
                    p.requires_grad_(True)


def target_suffixes(cfg: DictConfig) -> list[str]:
    explicit = cfg.method.get("target_modules")
    if explicit is not None:
        return list(explicit)
    which = cfg.method.get("targets", "all")
    if which not in ("all", "attention"):
        raise ValueError(f"method.targets must be 'all' or 'attention', got {which!r}")
    names = cfg.model.attention_modules if which == "attention" else cfg.model.target_modules
    return list(names)


def model_targets(model: nn.Module, cfg: DictConfig) -> dict[str, nn.Module]:
    """The target matrices `cfg` names in `model` (method.targets over the model's lists, minus exclusions)."""
    return find_targets(model, target_suffixes(cfg), cfg.model.get("exclude_modules", []) or [])


def head_modules(cfg: DictConfig) -> list[str]:
    mode = cfg.method.get("train_head", "full")
    if mode not in ("full", "final", "none"):
        raise ValueError(f"method.train_head must be full, final or none, got {mode!r}")
    if mode == "none" or cfg.task.kind == "causal_lm":
        return []
    key = "head_final" if mode == "final" else "head_modules"
    return list(cfg.model.get(key) or cfg.model.get("head_modules") or [])


def trainable_breakdown(model: nn.Module) -> dict[str, int]:
    """Trainable counts by component: method tensors by their attribute name, the rest by module."""
    out: dict[str, int] = {}
    layer_names = {n for n, m in model.named_modules() if isinstance(m, TargetLinear)}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner, _, attr = n.rpartition(".")
        parts = n.split(".")
        adapter = next((p for p in parts if p.startswith("lora_")), None)  # peft LoRA / PiSSA factors
        if owner in layer_names:
            key = f"target.{attr}"
        elif adapter:
            key = f"adapter.{adapter}"
        elif _is_head(parts):
            key = "head"
        else:
            key = f"other.{attr}"
        out[key] = out.get(key, 0) + p.numel()
    return dict(sorted(out.items()))


def _is_head(parts: list[str]) -> bool:
    return any(p in ("classifier", "score", "lm_head", "qa_outputs") for p in parts)


@torch.no_grad()
def count_params(model: nn.Module) -> dict[str, Any]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    breakdown = trainable_breakdown(model)
    # the papers' "trainable %" counts the method's own parameters, not the task head trained beside them
    without_head = trainable - breakdown.get("head", 0)
    return {
        "total": total,
        "trainable": trainable,
        "trainable_percent": 100.0 * trainable / max(total, 1),
        "trainable_without_head": without_head,
        "trainable_without_head_percent": 100.0 * without_head / max(total, 1),
        "trainable_breakdown": breakdown,
    }
