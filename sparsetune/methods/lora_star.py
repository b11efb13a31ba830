"""LoRA* (SPP paper's baseline): LoRA (peft) on a one-shot pruned model, then the pruning mask applied
again to the merged weights W~ + s*BA, which LoRA made dense.

    python train.py method=lora_star salience=wanda mask_schedule=oneshot ...
    method.remask=false: plain LoRA on the pruned model; the export is dense and reported as such.

LoRA layers are injected in place (`peft.inject_adapter_in_model`), so the model stays a plain HF model
and Trainer checkpoints hold everything, including each layer's keep-mask (buffer `prune_mask`). At the
end of training the adapters are merged and the mask re-applied (so the final evaluation sees the
LoRA* model); `merge()` then swaps each LoRA layer for its plain base module. The density of the merged
weights before re-masking is recorded.
"""
from __future__ import annotations

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from transformers import TrainerCallback

from ..method_schemas import LoraStarConfig
from ..pruning.driver import prune_for_method, validate_oneshot
from ..pruning.magnitude import pattern_sparsity
from ..registry import METHODS
from ..targets import replace_module, weight_out_in
from .base import Method, head_modules, model_targets, target_suffixes
from .spp import check_already_pruned

MASK_BUFFER = "prune_mask"



class RemaskAtTrainEnd(TrainerCallback):
    def __init__(self, method: LoraStar):
        self.method = method

    def on_train_end(self, args, state, control, **kw):
        self.method.merge_and_remask()


@METHODS.register("lora_star")
class LoraStar(Method):
    name = "lora_star"
    Config = LoraStarConfig

    def validate(self, cfg):
        super().validate(cfg)
        validate_oneshot(cfg)

    def apply(self, model, ctx):
        self.model = model
        self.prune_record: dict = {"prune": bool(self.mcfg.prune)}
        self.merge_record: dict = {}
        targets = model_targets(model, self.cfg)
        masks = {}
        if ctx.dry_run:
            masks = {n: torch.ones_like(weight_out_in(m), dtype=torch.bool) for n, m in targets.items()}
        elif self.mcfg.prune:
            result = prune_for_method(model, self.cfg, ctx, target_suffixes(self.cfg))
            self.prune_record.update(result.record())
            masks = result.masks
        else:
            self.prune_record["measured_sparsity"] = check_already_pruned(model, self.cfg, self.target_sparsity())
            masks = {n: weight_out_in(m) != 0 for n, m in targets.items()}
        lora = LoraConfig(
            r=int(self.mcfg.r), lora_alpha=float(self.mcfg.lora_alpha), lora_dropout=float(self.mcfg.dropout),
            target_modules=sorted(targets), bias="none",
        )
        inject_adapter_in_model(lora, model)
        self.lora_layers: dict[str, LoraLayer] = {}
        for name in targets:
            layer = model.get_submodule(name)
            layer.register_buffer(MASK_BUFFER, masks[name].to(weight_out_in(layer.get_base_layer()).device))
            self.lora_layers[name] = layer
        self._set_trainable(model)
        return model

    def _set_trainable(self, model) -> None:
        for n, p in model.named_parameters():
            p.requires_grad_(".lora_A." in n or ".lora_B." in n)
        for prefix in head_modules(self.cfg):
            for n, p in model.named_parameters():
                if n == prefix or n.startswith(prefix + "."):
                    p.requires_grad_(True)

    def callbacks(self):
        return [RemaskAtTrainEnd(self)]

    @torch.no_grad()
    def merge_and_remask(self) -> None:
        """Merge every adapter into its base weight, then (remask) zero the pruned entries again."""
        zeros_before = zeros_after = total = 0
        for layer in self.lora_layers.values():
            if layer.merged:
                continue
            layer.merge()
            w = weight_out_in(layer.get_base_layer())  # a view: in-place ops reach the stored weight
            zeros_before += int((w == 0).sum())
            if self.mcfg.remask:
                w.mul_(getattr(layer, MASK_BUFFER).to(w.dtype))
            zeros_after += int((w == 0).sum())
            total += w.numel()
        if total:
            self.merge_record = {
                "density_before_remask": 1.0 - zeros_before / total,
                "sparsity_after_merge": zeros_after / total,
                "remask": bool(self.mcfg.remask),
            }

    def merge(self, model):
        self.merge_and_remask()
        for name, layer in list(self.lora_layers.items()):
            replace_module(model, name, layer.get_base_layer())
        self.lora_layers = {}
        return model

    def target_sparsity(self) -> float:
        if not self.mcfg.remask:
            return 0.0  # plain LoRA on a pruned model exports dense weights
        return pattern_sparsity(str(self.mcfg.pattern), self.mcfg.get("sparsity"))

    def record(self):
        return {
            "pruning": self.prune_record,
            "merge": self.merge_record,
            "lora": {"r": int(self.mcfg.r), "lora_alpha": float(self.mcfg.lora_alpha), "dropout": float(self.mcfg.dropout)},
        }
