"""Shared machinery for methods whose forward applies a scheduled top-k mask (MaP, MvP, PST)."""
from __future__ import annotations

import torch

from ..callbacks import SparsityScheduleCallback
from ..masks import count_kept, global_topk_masks, topk_mask
from ..method_schemas import ScheduledMaskConfig
from ..schedules import sparsity_at, validate_cubic
from .base import Method


class ScheduledMaskMethod(Method):
    """Subclasses provide `scores(layer)` (the importance to rank) and a layer factory."""

    Config = ScheduledMaskConfig

    def apply(self, model, ctx):
        self.total_steps = ctx.total_steps
        if self.cfg.mask_schedule.name == "cubic" and not ctx.dry_run:
            validate_cubic(ctx.total_steps, self.cfg.mask_schedule.warmup, self.cfg.mask_schedule.cooldown)
        self.history: list[dict] = []
        return model

    def scheduled(self, step: int) -> float:
        return sparsity_at(self.cfg.mask_schedule, step, self.total_steps, self.target_sparsity())

    def in_final_phase(self, step: int) -> bool:
        # the evaluation after `step` steps used the mask set before the last of them, at scheduled(step - 1)
        return self.scheduled(max(step - 1, 0)) >= self.target_sparsity() - 1e-9

    def scores(self, layer) -> torch.Tensor:
        """The importance to rank (out x in); may be a view of a workspace that the next call overwrites."""
        raise NotImplementedError

    @torch.no_grad()
    def update_masks(self, step: int) -> None:
        s = self.scheduled(step)
        every = int(self.cfg.mask_schedule.get("update_every", 1))
        first = next(iter(self.layers.values()))
        unchanged = abs(float(first.current_sparsity) - s) < 1e-6  # buffer is float32
        # at sparsity 0 every mask is all-ones whatever the scores, so rescoring methods skip the warm-up too
        if (unchanged and (not self.rescore_every_step or s == 0.0)) or (step % every and s < self.target_sparsity()):
            return
        self.set_masks(s)
        self.history.append({"step": step, "scheduled": s, "achieved": self.achieved()})

    rescore_every_step = False  # MvP/PST scores change each step, so their masks are recomputed each step

    @torch.no_grad()
    def set_masks(self, s: float) -> None:
        # one score per fused block; global ranking concatenates every block of every layer
        if self.mcfg.get("scope", "local") == "global":
            scored = {(n, i): sc for n, l in self.layers.items() for i, sc in enumerate(l.blocks(self.scores(l).clone()))}
            masks = global_topk_masks(scored, s)
            for n, layer in self.layers.items():
                layer.mask.copy_(torch.cat([masks[(n, i)] for i in range(len(layer.splits))], dim=0))
        else:
            # layer by layer, so only one layer's dense score exists at a time
            for layer in self.layers.values():
                blocks = [topk_mask(b, s) for b in layer.blocks(self.scores(layer))]
                layer.mask.copy_(blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=0))
        for layer in self.layers.values():
            layer.current_sparsity.fill_(s)
            self.after_mask_update(layer)

    def after_mask_update(self, layer) -> None:
        pass

    def achieved(self) -> float:
        # counted on the bool masks: a plain sum would widen 85M flags to int64 on every step
        total = sum(l.mask.numel() for l in self.layers.values())
        return (total - sum(count_kept(l.mask) for l in self.layers.values())) / max(total, 1)

    def callbacks(self):
        return [SparsityScheduleCallback(self.update_masks, self.after_optimizer_step)]

    def after_optimizer_step(self) -> None:
        pass

    def record(self):
        return {"mask_history": self.history[-50:], "scope": self.mcfg.get("scope", "local")}

    def checkpoint_state(self):
        return {"history": self.history}

    def restore_checkpoint_state(self, state):
        self.history = list(state.get("history", self.history))
