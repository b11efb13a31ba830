"""Early checks of the composed config: clear messages, before any model or data is loaded."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from .evaluation.suite import check_eval_config
from .registry import METHODS, TASK_LOADERS

CHOICES = {
    "task.kind": ("classification", "regression", "causal_lm"),
    "hardware.device": ("cpu", "cuda"),
    "hardware.precision": ("fp32", "bf16", "fp16"),
    "train.eval_strategy": ("epoch", "steps", "no"),
    "model.source": ("hub", "embedded", "tiny"),
    "model.dtype": ("auto", "fp32", "bf16", "fp16"),
}


class ConfigError(ValueError):
    """Bad user input: reported as one clear message, without a traceback."""


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def check(cfg: DictConfig) -> None:
    errors = []
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            errors.append(f"{key}={_get(cfg, key)!r} is not one of {list(allowed)}")
    t = cfg.train
    positive = {"train.batch_size": t.batch_size, "train.eval_batch_size": t.eval_batch_size, "train.grad_accum": t.grad_accum,
                "train.lr": t.lr, "train.save_steps": t.save_steps, "train.logging_steps": t.logging_steps,
                "task.max_length": cfg.task.max_length}
    errors += [f"{k}={v} must be > 0" for k, v in positive.items() if not v or v <= 0]
    if (t.max_steps is None or t.max_steps <= 0) and (not t.epochs or t.epochs <= 0):
        errors.append(f"train.epochs={t.epochs} must be > 0 (or set train.max_steps > 0)")
    if not (0.0 <= t.warmup_ratio < 1.0):
        errors.append(f"train.warmup_ratio={t.warmup_ratio} must be in [0, 1)")
    if t.weight_decay < 0:
        errors.append(f"train.weight_decay={t.weight_decay} must be >= 0")
    if t.eval_strategy == "steps" and not t.eval_steps:
        errors.append("train.eval_strategy=steps needs train.eval_steps > 0")
    for key in ("max_train_samples", "max_eval_samples"):
        v = cfg.task[key]
        if v is not None and v <= 0:
            errors.append(f"task.{key}={v} must be a positive count or null")
    if cfg.hardware.device == "cuda" and not torch.cuda.is_available() and not cfg.dry_run:
        errors.append("hardware=gpu asks for CUDA but no GPU is visible; use hardware=cpu")
    if cfg.resume not in (None, "auto") and not Path(str(cfg.resume)).exists():
        errors.append(f"resume={cfg.resume!r}: must be null, 'auto' or an existing checkpoint/run directory")
    if cfg.task.data_dir and not Path(cfg.task.data_dir).expanduser().is_dir():
        errors.append(f"task.data_dir={cfg.task.data_dir} is not a directory")
    if cfg.model.path and not Path(cfg.model.path).expanduser().is_dir():
        errors.append(f"model.path={cfg.model.path} is not a directory")
    try:
        TASK_LOADERS.get(cfg.task.loader)
        METHODS.get(cfg.method.name)
    except ValueError as e:
        errors.append(str(e))
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))


def checked_method(cfg: DictConfig):
    """Run every config check and return the method object, or raise ConfigError."""
    check(cfg)
    try:
        method = METHODS.get(cfg.method.name)(cfg)
        method.validate(cfg)
        check_eval_config(cfg)
    except ValueError as e:
        raise ConfigError(f"invalid configuration:\n  - {e}") from None
    return method
