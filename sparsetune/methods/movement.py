"""MvP: movement pruning (Sanh et al. 2020), top-k variant, the PST paper's baseline.

Every parameter trains as in full fine-tuning, plus one score per target weight (initialised to |W| as
the PST paper did, §4.2). Before every optimizer step the mask becomes the top-k of the scores at the
cubic schedule's sparsity (per matrix; method.scope=global ranks all). Scores get their own learning rate
(`score_lr`, 1e-2 as the HF example's mask_scores_learning_rate) and no weight decay; the other parameters
use the Trainer's lr, with decay except on biases and norms. Trainable count for BERT-base: 109.5M weights
+ 84.9M scores = 194.4M (the paper's 194.93M counts the model as 110.00M).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from ..layers.movement import MovementLinear
from ..method_schemas import MovementConfig
from ..registry import METHODS
from .masked_base import ScheduledMaskMethod


@METHODS.register("movement")
class MovementPruning(ScheduledMaskMethod):
    name = "movement"
    Config = MovementConfig
    rescore_every_step = True

    def apply(self, model, ctx):
        super().apply(model, ctx)
        init = self.mcfg.score_init
        self.wrap_targets(model, lambda name, mod, splits: MovementLinear(mod, splits, score_init=init))
        for p in model.parameters():
            p.requires_grad_(True)
        if not ctx.dry_run:
            self.update_masks(0)
        return model

    def scores(self, layer: MovementLinear) -> torch.Tensor:
        return layer.scores.detach()

    def optimizer_groups(self, model: nn.Module) -> list[dict]:
        """Scores (own lr, no decay) | decayed weights | biases and norms (no decay); lr/decay left out of
        the last two take the optimizer's defaults (train.lr, train.weight_decay)."""
        score_ids = {id(layer.scores) for layer in self.layers.values()}
        decay_names = set(Trainer.get_decay_parameter_names(None, model))  # the Trainer's rule; it uses no state
        scores, decay, no_decay = [], [], []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in score_ids:
                scores.append(p)
            else:
                (decay if n in decay_names else no_decay).append(p)
        groups = [
            {"params": scores, "lr": float(self.mcfg.score_lr), "weight_decay": 0.0},
            {"params": decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]

    def record(self):
        return {**super().record(), "score_lr": float(self.mcfg.score_lr), "score_init": self.mcfg.score_init}
