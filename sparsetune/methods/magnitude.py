"""MaP: gradual magnitude pruning (Zhu & Gupta) of the target matrices, full weights trainable.

At each scheduled step the mask keeps the largest |W| (per matrix, or globally with method.scope=global).
Pruned weights are re-zeroed after every optimizer step, so they stay exactly zero and, being the
smallest magnitudes, stay pruned as the schedule tightens.
"""
from __future__ import annotations

import torch

from ..layers.masked import MaskedLinear
from ..registry import METHODS
from .masked_base import ScheduledMaskMethod


@METHODS.register("magnitude")
class MagnitudePruning(ScheduledMaskMethod):
    name = "magnitude"

    def apply(self, model, ctx):
        super().apply(model, ctx)
        for p in model.parameters():
            p.requires_grad_(True)
        self.wrap_targets(model, lambda name, mod, splits: MaskedLinear(mod, splits))
        if not ctx.dry_run:
            self.update_masks(0)
        return model

    def scores(self, layer) -> torch.Tensor:
        return (layer.weight * layer.mask).abs()

    def after_mask_update(self, layer) -> None:
        layer.zero_pruned_()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        for layer in self.layers.values():
            layer.zero_pruned_()
