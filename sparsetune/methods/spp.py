"""SPP (Lu et al. 2024): prune once (magnitude / Wanda / SparseGPT), then train only the
sparsity-preserving factors alpha (r x n) and beta (m x 1) of every target matrix.

    python train.py method=spp salience=wanda mask_schedule=oneshot method.pattern=2:4 ...

Scaling: s = method.scaling if set, else lora_alpha / r. The reference hard-codes the alpha rank to 16
and computes s = lora_alpha / (config r) = 16 / 8 = 2, so its config r changes only s. Here r *is* the
rank (paper r = 16, Table 1 counts r*n + m parameters per matrix) and the default lora_alpha = 32
keeps the reference's effective s = 2 at r = 16.
"""
from __future__ import annotations

import torch

from ..layers.spp import SPPLinear, check_rank
from ..method_schemas import SPPConfig
from ..pruning.driver import prune_for_method, validate_oneshot
from ..pruning.magnitude import pattern_sparsity
from ..registry import METHODS
from ..targets import weight_out_in
from .base import Method, model_targets, target_suffixes

REFERENCE_NOTES = [
    "alpha rank = config r (reference: hard-coded 16, config r only enters s = lora_alpha/r)",
    "beta stored as (m, 1) (the reference's eq.7 file uses (1, m))",
    "merge is one-way (reference unmerge references a missing lora_B and would fail)",
    "merged in the model dtype, not forced to fp16 as the reference export",
]


@METHODS.register("spp")
class SPP(Method):
    name = "spp"
    Config = SPPConfig

    def validate(self, cfg):
        super().validate(cfg)
        validate_oneshot(cfg)
        m = cfg.method
        for name, out in (target_out_features(cfg) or {}).items():
            check_rank(out, int(m.r), name)

    def scaling(self) -> float:
        s = self.mcfg.get("scaling")
        return float(s) if s is not None else float(self.mcfg.lora_alpha) / int(self.mcfg.r)

    def apply(self, model, ctx):
        self.prune_record: dict = {"prune": bool(self.mcfg.prune)}
        if not ctx.dry_run:
            if self.mcfg.prune:
                self.prune_record.update(prune_for_method(model, self.cfg, ctx, target_suffixes(self.cfg)).record())
            else:
                self.prune_record["measured_sparsity"] = check_already_pruned(model, self.cfg, self.target_sparsity())
        m = self.mcfg
        self.wrap_targets(
            model, lambda name, mod, splits: SPPLinear(mod, splits, int(m.r), self.scaling(), float(m.dropout), m.impl,
                                                       use_beta=bool(m.use_beta), zero_init=str(m.zero_init))
        )
        self.set_trainable(model)
        return model

    def target_sparsity(self) -> float:
        return pattern_sparsity(str(self.mcfg.pattern), self.mcfg.get("sparsity"))

    def record(self):
        return {
            "pruning": self.prune_record,
            "r": int(self.mcfg.r),
            "scaling": self.scaling(),
            "scaling_rule": "method.scaling" if self.mcfg.get("scaling") is not None else "lora_alpha / r",
            "impl": self.mcfg.impl,
            "use_beta": bool(self.mcfg.use_beta),
            "zero_init": str(self.mcfg.zero_init),
            "reference_deviations": REFERENCE_NOTES,
        }


@torch.no_grad()
def check_already_pruned(model, cfg, target: float) -> float:
    """With method.prune=false the checkpoint must already carry the stated sparsity."""
    targets = model_targets(model, cfg)
    zeros = sum(int((weight_out_in(m) == 0).sum()) for m in targets.values())
    total = sum(weight_out_in(m).numel() for m in targets.values())
    measured = zeros / max(total, 1)
    if measured + 1e-6 < target:
        raise ValueError(
            f"method.prune=false but the target matrices are only {measured:.4f} sparse (< {target:.4f}): "
            "load a pruned checkpoint (model.path) or set method.prune=true"
        )
    return measured


def target_out_features(cfg) -> dict[str, int] | None:
    """Output dims of the targets from the model config's `arch`, on a meta skeleton (no weights).

    Best effort: None when the arch cannot be built here; SPPLinear checks again when it wraps.
    """
    arch = cfg.model.get("arch") or {}
    if not arch.get("model_type"):
        return None
    from transformers import AutoModel

    from ..models import arch_config

    vocab = int(arch.get("vocab_size", 0) or 0)  # tiny test models take it from their tokenizer later
    try:
        with torch.device("meta"):
            skeleton = AutoModel.from_config(arch_config(cfg, vocab_size=vocab if vocab > 0 else 8))
    except (ValueError, KeyError, TypeError, ImportError, RuntimeError):
        return None
    targets = model_targets(skeleton, cfg)
    return {name: weight_out_in(mod).shape[0] for name, mod in targets.items()}
