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

import torch

from ..layers.pst import PSTLinear
from ..layers.workspace import scratch
from ..method_schemas import PSTConfig
from ..registry import METHODS
from .masked_base import ScheduledMaskMethod


@METHODS.register("pst")
class PST(ScheduledMaskMethod):
    name = "pst"
    Config = PSTConfig
    rescore_every_step = True

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
