"""compute_salience: statistics once, then the metric's pure score per target layer."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from .base import STATISTICS, SalienceMetric, get_metric

BatchFn = Callable[[int], Iterable[dict]]


def gather_statistics(model: nn.Module, layers: Mapping[str, nn.Module], metric: SalienceMetric, options: dict,
                      batches: list[dict] | None) -> dict[str, dict[str, torch.Tensor]]:
    by_collector: dict = {}
    for key in metric.needs:
        by_collector.setdefault(STATISTICS[key].collect, set()).add(key)
    stats: dict[str, dict[str, torch.Tensor]] = {name: {} for name in layers}
    for collect, keys in by_collector.items():
        for name, found in collect(model, layers, batches, options, keys).items():
            stats[name].update(found)
    return stats


def compute_salience(model: nn.Module, layers: Mapping[str, nn.Module], salience_cfg,
                     batches: BatchFn | None = None) -> dict[str, torch.Tensor]:
    """{layer name: float32 score shaped like its (out x in) weight}.

    `salience_cfg` has name, num_batches, batch_size (used by `batches`) and options; `batches(n)` yields
    n training batches (dicts with labels), needed by data-aware metrics only.
    """
    metric = get_metric(str(salience_cfg.name))
    options = metric.resolve_options(salience_cfg.get("options"))
    data = None
    if metric.data_aware:
        if batches is None:
            raise ValueError(f"salience={metric.name} needs training batches (data-aware metric)")
        data = list(batches(int(salience_cfg.num_batches)))
        if not data:
            raise ValueError(f"salience={metric.name}: the training data gave no batches")
    stats = gather_statistics(model, layers, metric, options, data)
    scores = {}
    for name, layer in layers.items():
        missing = [k for k in metric.needs if k not in stats[name]]
        if missing:
            raise RuntimeError(f"{name}: no {missing} statistic (the layer did not take part in the forward)")
        with torch.no_grad():
            weight = layer.effective_weight().detach().float()
            score = metric.score(weight, stats.pop(name)).float()
        if not torch.isfinite(score).all():
            raise ValueError(f"salience={metric.name} gave non-finite scores for {name}")
        scores[name] = score
    return scores
