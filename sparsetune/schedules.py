"""Sparsity schedules: pure functions (step, total) -> sparsity.

The cubic ramp is Zhu & Gupta's form as PST uses it: warm-up and cool-down are fractions of the total
number of optimizer steps (values >= 1 are taken as absolute step counts), sparsity is s_i during warm-up,
s_f during cool-down, and s_f + (s_i - s_f)(1 - progress)^3 between.
"""
from __future__ import annotations


def _steps(span: float, total: int) -> float:
    return float(span) if span >= 1 else float(span) * total


def validate_cubic(total: int, warmup: float, cooldown: float) -> None:
    if warmup < 0 or cooldown < 0:
        raise ValueError(f"mask_schedule warmup/cooldown must be >= 0, got {warmup}/{cooldown}")
    w, c = _steps(warmup, total), _steps(cooldown, total)
    if total > 0 and w + c >= total:
        raise ValueError(
            f"mask_schedule warmup ({w:g} steps) + cooldown ({c:g} steps) must be < total steps ({total}); "
            "give them as fractions of the run (e.g. 0.1 / 0.3)"
        )


def cubic(step: int, total: int, initial: float, final: float, warmup: float = 0.1, cooldown: float = 0.3) -> float:
    w, c = _steps(warmup, total), _steps(cooldown, total)
    if step <= w:
        return float(initial)
    if step > total - c:
        return float(final)
    progress = (step - w) / max(total - w - c, 1e-12)
    return float(final + (initial - final) * (1.0 - progress) ** 3)


def constant(step: int, total: int, initial: float, final: float, **_: float) -> float:
    return float(final)


def oneshot(step: int, total: int, initial: float, final: float, **_: float) -> float:
    """Pruned once before training and kept: same value as constant, named for post-training pruning."""
    return float(final)


SCHEDULES = {"cubic": cubic, "constant": constant, "oneshot": oneshot, "static": constant, "dynamic": constant}


def sparsity_at(schedule_cfg, step: int, total: int, final: float) -> float:
    kind = schedule_cfg.name
    if kind not in SCHEDULES:
        raise ValueError(f"unknown mask_schedule {kind!r}; valid: {sorted(SCHEDULES)}")
    return SCHEDULES[kind](
        step, total, schedule_cfg.get("initial_sparsity", 0.0), final,
        warmup=schedule_cfg.get("warmup", 0.1), cooldown=schedule_cfg.get("cooldown", 0.3),
    )
