"""The number the Hydra app returns, so a sweeper (Optuna) can optimise it.

`objective: auto` is the task's main dev metric (`metrics.eval.<task.main_metric>`, or `metrics.<main_metric>`
for generation tasks such as GSM8K), else the mean lm-eval accuracy, else WikiText perplexity (then minimise);
any other value is a dotted path into results.json (`metrics.perplexity.perplexity`); null returns nothing.
A run that did not complete, or whose record lacks the number, returns `failed` (NaN by default). Under a
sweeper with a direction (Optuna) the CLI passes the worst value for that direction instead: Hydra's Optuna
sweeper stops the whole search at a NaN, while a diverged trial at a too-large lr is an ordinary outcome.
"""
from __future__ import annotations

import math
import statistics

from .tables.columns import lookup as _at  # a finite number at a dotted path of a record, else None

AUTO = "auto"


def check_objective(value) -> None:
    """A config check: null, auto, or a dotted path under metrics."""
    if value is None or value == AUTO:
        return
    if not isinstance(value, str) or not value.startswith("metrics."):
        raise ValueError(f"objective must be auto, null or a dotted path into results.json under metrics. "
                         f"(e.g. metrics.eval.accuracy, metrics.perplexity.perplexity), got {value!r}")


def auto_path(record: dict) -> str | None:
    metric = ((record.get("config") or {}).get("task") or {}).get("main_metric")
    for path in (f"metrics.eval.{metric}", f"metrics.{metric}") if metric else ():
        if _at(record, path) is not None:
            return path
    if harness_accuracy(record) is not None:
        return "metrics.harness.*.acc"
    if _at(record, "metrics.perplexity.perplexity") is not None:
        return "metrics.perplexity.perplexity"
    return None


def harness_accuracy(record: dict) -> float | None:
    """The mean lm-eval `acc` over the record's tasks."""
    harness = (record.get("metrics") or {}).get("harness") or {}
    accs = [v["acc"] for v in harness.values() if isinstance(v, dict) and isinstance(v.get("acc"), (int, float))]
    return statistics.fmean(accs) if accs else None


def worst_for(direction) -> float:
    """The value a failed trial reports to a sweeper optimising in `direction` (NaN when there is none)."""
    return {"maximize": -math.inf, "minimize": math.inf}.get(str(direction), math.nan)


def objective_value(objective, record: dict | None, failed: float = math.nan) -> float | None:
    """The configured objective of a run record; `failed` when the run did not complete or lacks it."""
    if objective is None:
        return None
    if not record or record.get("status") != "completed":
        return failed
    path = auto_path(record) if objective == AUTO else str(objective)
    if path == "metrics.harness.*.acc":
        return harness_accuracy(record)
    value = _at(record, path) if path else None
    return failed if value is None else value
