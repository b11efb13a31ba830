"""Dense full fine-tuning: every parameter trains, nothing is pruned."""
from __future__ import annotations

from ..registry import METHODS
from .base import Method


@METHODS.register("full")
class FullFineTuning(Method):
    name = "full"

    def apply(self, model, ctx):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def target_sparsity(self) -> float:
        return 0.0

    def record(self) -> dict:
        return self.sparsity_not_applicable()
