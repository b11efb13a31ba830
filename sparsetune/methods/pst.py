"""PST: parameter-efficient sparse training (Li et al., IJCAI 2022).

Every target matrix becomes a PSTLinear (frozen W0, trainable U, V, A, B, R, C); its mask is the top-v of
S = |W0 + βUV| + α1·AB + α2·(R + C), recomputed from the current factors before every optimizer step at
the cubic schedule's sparsity (per matrix by default, as the reference; method.scope=global ranks all).
Trainable: the factors, the target biases and the head's last projection, which is the parameter count
of the paper's Table 2 (BERT-base 2.91M, RoBERTa-large 7.77M).

Reference behaviours (REFERENCES.md §1.4): the head IS trained here (the reference leaves it out of the
optimizer by mistake while counting it); masks use top-k instead of a full argsort (same mask up to tie
order); the number pruned per matrix is floor(numel·s); mid-training evaluations use the mask built at the
start of the last step (the reference rebuilds it on every forward); the final mask is rebuilt at the end
of training, so the final evaluation and the export use the trained factors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch

from ..layers.pst import SCORE_TERMS, PSTLinear, check_score_terms
from ..layers.workspace import scratch
from ..registry import METHODS
from ..schema import SparseMethodConfig
from .masked_base import ScheduledMaskMethod


@dataclass
class PSTConfig(SparseMethodConfig):
    train_head: str = "final"  # the head's last projection trains (counted in the paper's 2.91M / 7.77M)
    train_bias: bool = True  # target biases train (also in those counts)
    r1: int = 8  # rank of the low-rank score A·B
    r2: int = 8  # rank of the weight update U·V (0 = W stays W0, only the mask learns)
    beta: float = 1.0  # W = W0 + beta·U·V
    alpha1: float = 1.0  # weight of A·B in the score
    alpha2: float = 1.0  # weight of R + C in the score
    # which terms S sums (Table 5 ablations): magnitude = |W0+βUV|, lowrank = α1·AB, structured = α2·(R+C)
    score_terms: List[str] = field(default_factory=lambda: list(SCORE_TERMS))


@METHODS.register("pst")
class PST(ScheduledMaskMethod):
    name = "pst"
    Config = PSTConfig
    rescore_every_step = True

    def validate(self, cfg):
        super().validate(cfg)
        m = cfg.method
        terms = check_score_terms(m.score_terms)
        if int(m.r2) < 0:
            raise ValueError(f"method.r2 must be >= 0 (0 freezes W at W0), got {m.r2}")
        if "lowrank" in terms and int(m.r1) < 1:
            raise ValueError(f"method.r1 must be >= 1 while score_terms has 'lowrank', got {m.r1}")

    def apply(self, model, ctx):
        super().apply(model, ctx)
        m = self.mcfg
        hp = dict(r1=m.r1, r2=m.r2, beta=m.beta, alpha1=m.alpha1, alpha2=m.alpha2, score_terms=list(m.score_terms))
        self.wrap_targets(model, lambda name, mod, splits: PSTLinear(mod, splits, **hp))
        self.set_trainable(model)
        if not ctx.dry_run:
            self.update_masks(0)
        return model

    def scores(self, layer: PSTLinear) -> torch.Tensor:
        # one scratch buffer for every layer's dense score (a fresh 340 MB per step for BERT-base otherwise)
        return layer.importance(out=scratch("score", (layer.weight.numel(),), layer.compute_dtype, layer.weight.device))

    def record(self):
        m = self.mcfg
        return {
            **super().record(),
            "r1": int(m.r1) if "lowrank" in m.score_terms else 0,
            "r2": int(m.r2),
            "beta": float(m.beta),
            "alpha1": float(m.alpha1),
            "alpha2": float(m.alpha2),
            "score_terms": list(m.score_terms),
            "init": "U~N(0,1) unscaled, V=0, A~N(0,1), B=0, R=C=0 (as the reference)",
            "reference_deviations": [
                "classification head trained (reference builds its optimizer without it)",
                "top-k selection instead of argsort: same mask up to tie order",
                "mask rebuilt once per optimizer step (reference: every forward); final mask rebuilt at train end",
            ],
        }
