"""The salience registry: a metric = a pure score function + the statistics it reads.

A metric is registered in `sparsetune.registry.SALIENCE` as a `SalienceMetric`: `score(weight, stats)`
maps one target matrix (out x in, float32) and its statistics (a dict of tensors shaped like it, e.g.
`grad` = mean gradient) to a score tensor of the same shape; larger = more salient. Statistics are
produced by collectors registered here with the keys they provide, so a new metric that needs a new
statistic (activation norms, a Hessian diagonal, ...) registers one collector and one metric and
touches nothing else.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..registry import SALIENCE

ScoreFn = Callable[[torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]
# collect(model, layers, batches, options, keys) -> {layer name: {statistic key: tensor (out x in)}}
Collector = Callable[..., dict]


@dataclass(frozen=True)
class SalienceMetric:
    name: str
    score: ScoreFn
    needs: tuple[str, ...] = ()  # statistic keys, see STATISTICS
    options: Mapping[str, Any] = field(default_factory=dict)  # allowed salience.options and their defaults

    @property
    def data_aware(self) -> bool:
        return any(STATISTICS[k].needs_data for k in self.needs)

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            allowed = sorted(self.options) or "none"
            raise ValueError(f"unknown salience.options {unknown} for salience={self.name}; allowed: {allowed}")
        return {**self.options, **given}


@dataclass(frozen=True)
class Statistic:
    collect: Collector
    needs_data: bool


STATISTICS: dict[str, Statistic] = {}


def register_statistic(*keys: str, needs_data: bool = True) -> Callable[[Collector], Collector]:
    """Register a collector that provides `keys` (called once with the subset of keys a metric needs)."""

    def deco(fn: Collector) -> Collector:
        for k in keys:
            if k in STATISTICS and STATISTICS[k].collect is not fn:
                raise ValueError(f"statistic {k!r} registered twice")
            STATISTICS[k] = Statistic(fn, needs_data)
        return fn

    return deco


def register_salience(name: str, needs: Iterable[str] = (), options: Mapping[str, Any] | None = None):
    def deco(fn: ScoreFn) -> ScoreFn:
        missing = [k for k in needs if k not in STATISTICS]
        if missing:
            raise ValueError(f"salience {name!r} needs statistics {missing} that no collector provides")
        SALIENCE.register(name)(SalienceMetric(name, fn, tuple(needs), dict(options or {})))
        return fn

    return deco


def get_metric(name: str) -> SalienceMetric:
    metric = SALIENCE.get(name)
    if not isinstance(metric, SalienceMetric):
        raise ValueError(f"salience={name!r} is not a score metric (it is used by the post-training pruners)")
    return metric
