"""MovementLinear: movement pruning (Sanh et al. 2020), top-k variant.

The full weight W trains, next to a score matrix S of the same shape. The forward uses W ⊙ M with
M = top-k of S; through the straight-through estimator S receives G ⊙ W, so under SGD it accumulates
-Σ_t (dL/dW ⊙ W)_t: weights moving away from zero gain importance. Pruned weights get no gradient and
are not re-zeroed (the mask is in the forward; the merged export is exactly sparse).
"""
from __future__ import annotations

import torch
from torch import nn

from ..method_schemas import SCORE_INITS
from .masked import MaskedLinear
from .ste import masked_weight_ste


class MovementLinear(MaskedLinear):
    def __init__(self, base: nn.Module, splits=None, score_init: str = "magnitude"):
        super().__init__(base, splits)
        if score_init not in SCORE_INITS:
            raise ValueError(f"movement score_init must be one of {list(SCORE_INITS)}, got {score_init!r}")
        # magnitude: S = |W| (the PST paper's MvP baseline, so the first masks equal MaP's);
        # constant: S = 0 (the HF example's default mask_scale)
        init = self.weight.detach().abs() if score_init == "magnitude" else torch.zeros_like(self.weight)
        self.scores = nn.Parameter(init.clone())

    def effective_weight(self) -> torch.Tensor:
        return masked_weight_ste(self.weight, self.scores, self.mask)
