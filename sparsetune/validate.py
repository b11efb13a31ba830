"""Checks of the composed config: clear messages, before any model or data is loaded.

`preflight(cfg)` needs only the config and the local data files (no torch, no transformers), so
`python train.py` with bad input fails in about a second; `checked_method(cfg)` adds the checks that need the method's libraries.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import fields, is_dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig, open_dict

from . import fsdp_config
from .distributed import launch
from .errors import ConfigError
from .evaluation.schema import EvalConfig
from .method_schemas import METHOD_SCHEMAS
from .model_dir import model_dir_problem
from .objective import AUTO, check_objective
from .schema import (
    HardwareConfig,
    LoggerConfig,
    ModelConfig,
    PathsConfig,
    RootConfig,
    SalienceConfig,
    ScheduleConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = ["ConfigError", "preflight", "checked_method", "check", "unknown_keys"]

CHOICES = {
    "task.kind": ("classification", "regression", "causal_lm"),
    "hardware.device": ("cpu", "cuda", "auto"),
    "hardware.precision": ("fp32", "bf16", "fp16"),
    "train.eval_strategy": ("epoch", "steps", "no"),
    "train.select": ("last", "best"),
    "model.source": ("hub", "embedded", "tiny"),
    "model.dtype": ("auto", "fp32", "bf16", "fp16"),
    "task.missing_labels": ("drop", "error"),
    "export_compressed": ("auto", True, False),
}
GROUP_SCHEMAS = {"train": TrainConfig, "model": ModelConfig, "task": TaskConfig, "salience": SalienceConfig,
                 "mask_schedule": ScheduleConfig, "hardware": HardwareConfig, "eval": EvalConfig,
                 "logger": LoggerConfig, "paths": PathsConfig}


def invalid(errors: list[str]) -> ConfigError:
    """One problem on one line; several as a list, so each can be fixed at once."""
    if len(errors) == 1:
        return ConfigError(f"invalid configuration: {errors[0]}")
    return ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _unknown_in(node, schema, prefix: str) -> list[str]:
    known = {f.name: f for f in fields(schema)}
    errors = []
    for key in node.keys():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}.{close[0]}? " if close else ""
            errors.append(f"{prefix}.{key} is not a config key ({hint}valid keys of {prefix}: {', '.join(sorted(known))})")
            continue
        nested = known[key].default_factory
        if is_dataclass(nested) and isinstance(node[key], DictConfig):
            errors += _unknown_in(node[key], nested, f"{prefix}.{key}")
    return errors


def unknown_keys(cfg: DictConfig) -> list[str]:
    """Keys the schemas do not know. Hydra's `+key=value` adds keys even to struct configs, so a
    misspelt `+method.sparsty=0.5` would otherwise be accepted and ignored."""
    root = {f.name for f in fields(RootConfig)} | {"hydra", "debug", "experiment", "local"}
    errors = [f"{k} is not a config key (valid top-level keys: {', '.join(sorted(root - {'hydra'}))})"
              for k in cfg.keys() if k not in root]
    for group, schema in {**GROUP_SCHEMAS, "method": METHOD_SCHEMAS.get(str(cfg.method.name))}.items():
        if schema is not None and isinstance(cfg.get(group), DictConfig):
            errors += _unknown_in(cfg[group], schema, group)
    return errors


def non_finite_numbers(node, prefix: str = "") -> list[str]:
    """nan / inf given anywhere (OmegaConf's float type accepts them)."""
    out = []
    items = node.items() if isinstance(node, DictConfig) else enumerate(node) if isinstance(node, ListConfig) else ()
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (DictConfig, ListConfig)):
            out += non_finite_numbers(value, path)
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(f"{path}={value} is not a finite number")
    return out


def _train_errors(cfg: DictConfig) -> list[str]:
    t, errors = cfg.train, []
    positive = {"train.batch_size": t.batch_size, "train.eval_batch_size": t.eval_batch_size, "train.grad_accum": t.grad_accum,
                "train.lr": t.lr, "train.save_steps": t.save_steps, "train.logging_steps": t.logging_steps,
                "task.max_length": cfg.task.max_length}
    errors += [f"{k}={v} must be > 0" for k, v in positive.items() if v is None or v <= 0]
    if t.max_steps is None or t.max_steps < -1:
        errors.append(f"train.max_steps={t.max_steps} must be a step count (0 = evaluate only, no training), "
                      "or -1 to train for train.epochs")
    elif t.max_steps == -1 and (not t.epochs or t.epochs <= 0):
        errors.append(f"train.epochs={t.epochs} must be > 0 (or set train.max_steps > 0)")
    if not (0.0 <= t.warmup_ratio < 1.0):
        errors.append(f"train.warmup_ratio={t.warmup_ratio} must be in [0, 1)")
    if t.warmup_steps < 0:
        errors.append(f"train.warmup_steps={t.warmup_steps} must be >= 0 (0 = use train.warmup_ratio)")
    if not (0.0 <= t.label_smoothing < 1.0):
        errors.append(f"train.label_smoothing={t.label_smoothing} must be in [0, 1)")
    if t.weight_decay < 0 or t.max_grad_norm < 0 or t.adam_epsilon <= 0:
        errors.append(f"train.weight_decay={t.weight_decay} and train.max_grad_norm={t.max_grad_norm} must be >= 0, "
                      f"train.adam_epsilon={t.adam_epsilon} > 0")
    if t.eval_strategy == "steps" and not t.eval_steps:
        errors.append("train.eval_strategy=steps needs train.eval_steps > 0")
    if t.select == "best" and t.eval_strategy == "no":
        errors.append("train.select=best picks among dev evaluations: set train.eval_strategy=epoch or steps")
    if t.save_total_limit is not None and t.save_total_limit < 1:
        errors.append(f"train.save_total_limit={t.save_total_limit} must be >= 1 or null (keep all)")
    return errors


def _schedule_errors(cfg: DictConfig) -> list[str]:
    s = cfg.mask_schedule
    if s.name != "cubic":
        return []
    if s.warmup < 0 or s.cooldown < 0:
        return [f"mask_schedule.warmup={s.warmup} and mask_schedule.cooldown={s.cooldown} must be >= 0"]
    if s.warmup < 1 and s.cooldown < 1 and s.warmup + s.cooldown >= 1:
        return [f"mask_schedule.warmup + mask_schedule.cooldown = {s.warmup + s.cooldown:g} of the run leaves no steps "
                "to prune in; their sum must be < 1 (e.g. 0.1 and 0.3)"]
    return []


def _hardware_errors(cfg: DictConfig) -> list[str]:
    hw = cfg.hardware
    errors = fsdp_config.errors(cfg, launch().world_size)
    if hw.device == "cpu" and hw.precision != "fp32":
        errors.append(f"hardware.precision={hw.precision} needs hardware.device=cuda: CPU runs train in fp32 here "
                      "(use hardware.precision=fp32, or hardware=gpu on a GPU machine)")
    return errors


def check(cfg: DictConfig) -> None:
    """Every check that needs only the config. Raises ConfigError listing all problems."""
    errors = unknown_keys(cfg) + non_finite_numbers(cfg)
    if errors:  # the remaining checks may trip over unknown or non-finite values
        raise invalid(errors)
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            errors.append(f"{key}={_get(cfg, key)!r} is not one of {list(allowed)}")
    errors += _train_errors(cfg) + _schedule_errors(cfg) + _hardware_errors(cfg)
    for key in ("max_train_samples", "max_eval_samples"):
        v = cfg.task[key]
        if v is not None and v <= 0:
            errors.append(f"task.{key}={v} must be a positive count or null")
    try:
        check_objective(cfg.get("objective", AUTO))
    except ValueError as e:
        errors.append(str(e))
    if cfg.resume not in (None, "auto") and not Path(str(cfg.resume)).exists():
        errors.append(f"resume={cfg.resume!r}: must be null, 'auto' or an existing checkpoint/run directory")
    if cfg.task.data_dir and not Path(cfg.task.data_dir).expanduser().is_dir():
        errors.append(f"task.data_dir={cfg.task.data_dir} is not a directory")
    if cfg.model.path and (problem := model_dir_problem(str(cfg.model.path))):
        errors.append(problem)
    schema = METHOD_SCHEMAS.get(str(cfg.method.name))
    if schema is None:
        errors.append(f"unknown method {cfg.method.name!r}; valid options: {', '.join(sorted(METHOD_SCHEMAS))}")
    else:
        try:
            schema.check(cfg)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise invalid(errors)


def preflight(cfg: DictConfig) -> None:
    """What the CLI checks before torch and transformers are imported: the config, then the task's local data
    files (read with the standard library and kept for the loader, so a run reads them once)."""
    from .tasks.preflight import check_data

    check(cfg)
    check_data(cfg)


def checked_method(cfg: DictConfig):
    """Every config check, then the method object; raises ConfigError."""
    check(cfg)
    import torch

    from .evaluation.suite import check_eval_config
    from .registry import METHODS, TASK_LOADERS

    if cfg.hardware.device == "auto":  # the GPU when one is visible; on CPU the run trains in fp32 (training.py)
        with open_dict(cfg):
            cfg.hardware.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        if cfg.hardware.device == "cuda" and not torch.cuda.is_available() and not cfg.dry_run:
            raise ValueError("hardware=gpu asks for CUDA but no GPU is visible; use hardware=cpu")
        TASK_LOADERS.get(cfg.task.loader)
        method = METHODS.get(cfg.method.name)(cfg)
        method.validate(cfg)
        check_eval_config(cfg)
        _check_compressed_export(cfg)
    except ValueError as e:
        raise invalid([str(e)]) from None
    return method


def _check_compressed_export(cfg: DictConfig) -> None:
    """export_compressed=true insists on compressed-tensors: said before training, not after it."""
    if cfg.export and cfg.get("export_compressed") is True:
        from .compressed_export import library_problem

        if problem := library_problem():
            raise ValueError(f"export_compressed=true: {problem}")
