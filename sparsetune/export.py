"""Measured sparsity of the merged model, save_pretrained (safetensors), reload and compare."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from .masks import num_pruned
from .methods.base import model_targets
from .models import auto_class
from .targets import fused_splits, weight_out_in


@torch.no_grad()
def sparsity_report(model: nn.Module, cfg: DictConfig, target: float) -> dict:
    """Zeros counted in the plain (merged) target matrices; fused matrices are reported per block too."""
    targets = model_targets(model, cfg)
    per_layer, zeros, total, worst = {}, 0, 0, 0
    for name, mod in targets.items():
        w = weight_out_in(mod)
        z = int((w == 0).sum())
        per_layer[name] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
        splits = fused_splits(name, w.shape[0], cfg.model.get("fused_modules")) or (w.shape[0],)
        for i, block in enumerate(torch.split(w, list(splits), dim=0)):
            if len(splits) > 1:
                per_layer[f"{name}[{i}]"] = float((block == 0).sum()) / block.numel()
            # how far from the exact per-matrix count floor(numel * target)
            worst = max(worst, abs(int((block == 0).sum()) - num_pruned(block.numel(), target)))
    return {"target": target, "achieved": zeros / max(total, 1), "zeros": zeros, "total": total,
            "max_abs_count_error_per_matrix": worst, "per_layer": per_layer}


@torch.no_grad()
def save_and_verify(model: nn.Module, tokenizer, cfg: DictConfig, out_dir: Path, probe: dict | None) -> dict:
    """Save the merged model and check the reload: same zeros in every target, same outputs on a probe batch."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for mod in model_targets(model, cfg).values():
        # w x mask leaves -0.0 where w < 0; sparse formats store zeros without a sign, so export +0.0 and the
        # compressed export decompresses to these exact bits (x + 0.0 changes no other value)
        mod.weight.add_(0.0)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    reloaded = auto_class(cfg.task).from_pretrained(out_dir, dtype=next(model.parameters()).dtype)
    reloaded.to(next(model.parameters()).device).eval()
    model.eval()
    a, b = model_targets(model, cfg), model_targets(reloaded, cfg)
    same_zeros = all(torch.equal(weight_out_in(a[n]) == 0, weight_out_in(b[n]) == 0) for n in a)
    rec = {"dir": str(out_dir), "format": "safetensors", "reload_same_zeros": bool(same_zeros)}
    if probe is not None:
        o1 = model(**probe).logits.float()
        o2 = reloaded(**probe).logits.float()
        rec["reload_max_abs_diff"] = float((o1 - o2).abs().max())
    del reloaded
    return rec
