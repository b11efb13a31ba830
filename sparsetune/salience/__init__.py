"""Salience metrics for choosing which weights to adapt (SPEFT) — a registry of pure score functions.

    from sparsetune.salience import compute_salience, topk_indices
    scores = compute_salience(model, layers, cfg.salience, ctx.batches)   # {layer: out x in scores}

Metrics live in `sparsetune.registry.SALIENCE` (magnitude, gradient, snip, force, taylor_fo, synflow,
grasp, fisher); add one with `register_salience(name, needs=(...))` and, if it needs a new statistic,
a collector with `register_statistic(key)`.
"""
from . import metrics  # noqa: F401  (registers the metrics)
from .base import STATISTICS, SalienceMetric, get_metric, register_salience, register_statistic
from .compute import compute_salience
from .select import order_keys, split_budget, topk_indices

__all__ = ["STATISTICS", "SalienceMetric", "compute_salience", "get_metric", "order_keys", "register_salience",
           "register_statistic", "split_budget", "topk_indices"]
