"""LoRA and PiSSA baselines through peft (the SPEFT paper's low-rank comparisons).

    python train.py method=lora  method.r=8 method.alpha=8
    python train.py method=pissa method.r=8

peft's `LoraConfig` on exactly the matrices the sparse methods target (our suffix matching resolved to
full module names, so the sets agree), `modules_to_save` = the task head, `merge_and_unload` for export.
Trainable count = sum over targets of r*(in+out) + head, which `method=speft match_lora_rank=r` matches.
PiSSA = `init_lora_weights="pissa"` (exact SVD) or "pissa_niter_K" (randomized, seed-dependent): the
base weight becomes the residual W - (alpha/r) B A, so merging restores W + update exactly, but a
pruned base would be densified (not a sparsity-preserving baseline).
"""
from __future__ import annotations

from peft import LoraConfig, get_peft_model
from transformers.pytorch_utils import Conv1D

from ..method_schemas import LoraMethodConfig, PissaMethodConfig
from ..registry import METHODS
from .base import Method, head_modules, model_targets, target_suffixes


@METHODS.register("lora")
class LoRA(Method):
    name = "lora"
    Config = LoraMethodConfig

    def validate(self, cfg):
        super().validate(cfg)
        target_suffixes(cfg)
        head_modules(cfg)

    def init_weights(self, dry_run: bool):
        return True  # peft default: Kaiming-uniform A, zero B (the adapted model starts equal to the base)

    def apply(self, model, ctx):
        targets = model_targets(model, self.cfg)
        heads = head_modules(self.cfg)
        self.adapter_numel = sum(self.mcfg.r * _in_plus_out(m) for m in targets.values())
        self.num_targets = len(targets)
        self.peft_config = LoraConfig(
            r=int(self.mcfg.r),
            lora_alpha=float(self.mcfg.alpha),
            lora_dropout=float(self.mcfg.dropout),
            target_modules=sorted(targets),
            modules_to_save=heads or None,
            bias="lora_only" if self.mcfg.get("train_bias", False) else "none",
            fan_in_fan_out=any(isinstance(m, Conv1D) for m in targets.values()),
            init_lora_weights=self.init_weights(ctx.dry_run),
        )
        self.heads = heads
        return get_peft_model(model, self.peft_config)

    def merge(self, model):
        return model.merge_and_unload(safe_merge=True)

    def target_sparsity(self) -> float:
        return 0.0

    def record(self) -> dict:
        return {
            "r": int(self.mcfg.r), "alpha": float(self.mcfg.alpha), "scaling": float(self.mcfg.alpha) / int(self.mcfg.r),
            "dropout": float(self.mcfg.dropout), "targets": str(self.mcfg.get("targets")),
            "target_matrices": getattr(self, "num_targets", None), "adapter_params": getattr(self, "adapter_numel", None),
            "init": _init_name(self.peft_config.init_lora_weights) if hasattr(self, "peft_config") else None,
            "modules_to_save": getattr(self, "heads", None),
            "choices": {"head": "trained via peft modules_to_save (the reference's task_type default adds none)"},
            **self.sparsity_not_applicable(),
        }


@METHODS.register("pissa")
class PiSSA(LoRA):
    name = "pissa"
    Config = PissaMethodConfig

    def init_weights(self, dry_run: bool):
        if dry_run:
            return True  # meta tensors: shapes only, no SVD
        niter = self.mcfg.get("pissa_niter")
        return "pissa" if niter is None else f"pissa_niter_{int(niter)}"

    def record(self) -> dict:
        rec = super().record()
        rec["choices"]["base"] = "base weights replaced by the residual W - scaling*B A (dense); merge is exact"
        return rec


def _init_name(init) -> str:
    return "kaiming_A_zero_B" if init is True else str(init)


def _in_plus_out(module) -> int:
    return sum(module.weight.shape)  # (out, in) for nn.Linear, (in, out) for Conv1D: the sum is the same
