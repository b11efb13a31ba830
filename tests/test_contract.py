"""The contract every method passes, on a tiny model: trainable parameters are exactly the method's,
sparsity follows the schedule at every step and hits the target, zeros stay zero after optimizer steps,
resume equals an uninterrupted run, and the exported model reloads with the same zeros and outputs.

A new method adds one entry to CONTRACT: its test overrides and its expected trainable count.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from sparsetune.layers.base import TargetLinear
from sparsetune.masks import num_pruned
from sparsetune.registry import METHODS
from sparsetune.run import run
from sparsetune.schedules import sparsity_at


def _targets(model):
    """(out, in, fused parts) of every target matrix of the tiny model."""
    from sparsetune.methods.base import model_targets
    from sparsetune.targets import fused_splits, weight_out_in

    found = model_targets(model, CFG[0])
    shapes = {n: weight_out_in(m).shape for n, m in found.items()}
    return [(o, i, len(fused_splits(n, o, CFG[0].model.fused_modules) or (o,))) for n, (o, i) in shapes.items()]


def total(model):
    return sum(p.numel() for p in model.parameters())


def head(model):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(("classifier", "score")))


def lora_like(r):
    """r*(in+out) per target matrix + the head: LoRA, PiSSA, and SPEFT matched to LoRA's rank."""
    return lambda model: sum(r * (o + i) for o, i, _ in _targets(model)) + head(model)


def pst(r1, r2):
    """(n+k)(r1+r2+1) per logical matrix (fused q|k|v counts as three) + target biases + the head."""
    return lambda model: sum(p * (o // p + i) * (r1 + r2 + 1) + o for o, i, p in _targets(model)) + head(model)


def movement(model):
    """every weight trains, plus one score per target weight"""
    return total(model) + sum(o * i for o, i, _ in _targets(model))


def spp(r):
    return lambda model: sum(r * i + o for o, i, _ in _targets(model)) + head(model)


CFG: list = [None]  # the composed config of the running test (target lists for _targets)

# method -> (test overrides, expected trainable count from the *plain* tiny model, fixed zero pattern during training)
CONTRACT = {
    "full": ([], total, False),
    "magnitude": (["method.sparsity=0.5"], total, False),
    "magnitude-constant": (["method=magnitude", "method.sparsity=0.6", "mask_schedule=constant"], total, True),
    "pst": (["method.sparsity=0.5"], pst(8, 8), False),
    "pst-gpt2": (["method=pst", "model=tiny-gpt2", "method.sparsity=0.5", "method.r1=4", "method.r2=2"], pst(4, 2), False),
    "movement": (["method.sparsity=0.5"], movement, False),
    "movement-gpt2": (["method=movement", "model=tiny-gpt2", "method.sparsity=0.7"], movement, False),
    "lora": (["method.r=8"], lora_like(8), False),
    "pissa": (["method.r=8"], lora_like(8), False),
    "speft": (["method.match_lora_rank=8", "salience=gradient", "salience.num_batches=2"], lora_like(8), False),
    "speft-dynamic": (["method=speft", "method.match_lora_rank=8", "mask_schedule=dynamic", "mask_schedule.update_every=3",
                       "salience=gradient", "salience.num_batches=2"], lora_like(8), False),
    "spp": (["salience=magnitude"], spp(16), True),
    "spp-2:4": (["method=spp", "salience=magnitude", "method.pattern=2:4", "method.sparsity=null"], spp(16), True),
    "lora_star": (["salience=magnitude", "method.r=8"], lora_like(8), True),
}


def plain_tiny_model(cfg):
    from sparsetune import models

    torch.manual_seed(0)
    model, _, _ = models.load(cfg)
    return model


class StepChecks(TrainerCallback):
    """After every optimizer step: each target's merged weight has at least the scheduled number of zeros,
    and (for fixed-pattern methods) every weight that was zero stays zero."""

    def __init__(self, model_ref, cfg, method_target, fixed):
        self.model_ref, self.cfg, self.target, self.fixed = model_ref, cfg, method_target, fixed
        self.prev: dict = {}
        self.checked = 0

    def on_step_end(self, args, state, control, model=None, **kw):
        # the step just taken ran with the masks set for step t-1 (masks update before each step)
        s = sparsity_at(self.cfg.mask_schedule, state.global_step - 1, state.max_steps, self.target)
        for name, layer in model.named_modules():
            if not isinstance(layer, TargetLinear):
                continue
            w = layer.merged_weight()
            for block in layer.blocks(w):
                assert int((block == 0).sum()) >= num_pruned(block.numel(), s) - 0, (name, state.global_step, s)
            zeros = w == 0
            if self.fixed and name in self.prev:
                assert not (self.prev[name] & ~zeros).any(), f"{name}: a zero became non-zero at step {state.global_step}"
            self.prev[name] = zeros
        self.checked += 1


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated kill at step {self.step}")


def method_overrides(entry):
    overrides = CONTRACT[entry][0]
    return overrides if any(o.startswith("method=") for o in overrides) else [f"method={entry}", *overrides]


def test_every_registered_method_has_a_contract_entry():
    covered = {method_overrides(e)[0].split("=", 1)[1] for e in CONTRACT}
    assert set(METHODS.names()) <= covered, f"add CONTRACT entries for {set(METHODS.names()) - covered}"


@pytest.mark.parametrize("entry", sorted(CONTRACT))
def test_contract(entry, tiny_cfg, tmp_path):
    cfg = tiny_cfg(*method_overrides(entry))
    CFG[0] = cfg
    _, expected_trainable, fixed = CONTRACT[entry]
    method = METHODS.get(cfg.method.name)(cfg)
    checks = StepChecks(None, cfg, method.target_sparsity(), fixed)

    res = run(cfg, tmp_path / "a", callbacks=[checks])
    assert checks.checked == 8
    # 1. trainable parameters are exactly the method's
    assert res["params"]["trainable"] == expected_trainable(plain_tiny_model(cfg))
    # 2. sparsity of the exported matrices: exact per matrix (floor(numel * target) zeros)
    sp = res["sparsity"]
    assert sp["max_abs_count_error_per_matrix"] == 0, sp
    # 3. export reloads with the same zeros and outputs
    assert res["export"]["reload_same_zeros"] and res["export"]["reload_max_abs_diff"] < 1e-5

    # 4. resume after a kill equals the uninterrupted run, bit for bit
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "b", callbacks=[KillAt(6)])
    assert json.loads((tmp_path / "b" / "results.json").read_text())["status"] == "interrupted"
    cfg.resume = "auto"
    resumed = run(cfg, tmp_path / "b")
    assert resumed["timing"]["resumed_from"].endswith("checkpoint-4")
    a = load_file(tmp_path / "a" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["metrics"]["eval"]["loss"] == res["metrics"]["eval"]["loss"]
