"""MaskedLinear: a trainable weight with a binary mask that the forward applies (MaP, the base of MvP)."""
from __future__ import annotations

import torch

from ..masks import as_factor
from .base import TargetLinear


class MaskedLinear(TargetLinear):
    def __init__(self, base, splits=None):
        super().__init__(base, splits)
        self.weight.requires_grad_(True)
        # buffers are part of the state dict, so Trainer checkpoints carry the mask and its sparsity
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))
        self.register_buffer("current_sparsity", torch.zeros((), dtype=torch.float32))

    def effective_weight(self) -> torch.Tensor:
        return self.weight * as_factor(self.mask)

    @torch.no_grad()
    def zero_pruned_(self) -> None:
        """Re-zero pruned weights: Adam moments from before pruning would otherwise move them."""
        self.weight.mul_(as_factor(self.mask))
