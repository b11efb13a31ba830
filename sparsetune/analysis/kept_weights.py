"""PST Fig. 4(a): the distribution of the weights a sparse model kept (its non-zero entries), one series per run.

Kept = non-zero in the exported (merged) matrix: export writes the pruned entries as exact zeros. All runs share
one set of bin edges, so the series are directly comparable. The edges span the 0.1 %–99.9 % quantiles of the
kept values (all runs and matrices pooled, or a given range): a handful of large weights (MiniLM has
kept weights near 8 where the bulk lies within ±0.3) would otherwise squeeze the bulk into a few bins. Values
outside the span are counted in the outer bins and reported (clipped_below / clipped_above), so each series'
counts still add up to its number of non-zeros.
"""
from __future__ import annotations

import fnmatch

import numpy as np

from .runs import AnalysisRun

QUANTILES = (0.001, 0.999)
SAMPLE = 50_000


def select_matrices(keys: list[str], pattern: str) -> list[str]:
    """The target keys whose name (with or without `.weight`) matches the fnmatch `pattern`, e.g.
    '*layer.5.intermediate.dense' for one matrix, as the paper's Fig. 4 shows one layer."""
    return [k for k in keys if fnmatch.fnmatchcase(k, pattern) or fnmatch.fnmatchcase(k.removesuffix(".weight"), pattern)]


def kept_values(matrix: np.ndarray) -> np.ndarray:
    return matrix[matrix != 0]


def kept_span(runs: list[AnalysisRun], keys: list[str]) -> tuple[float, float]:
    """The 0.1 % and 99.9 % quantiles of the kept values of every run and matrix pooled, estimated from an evenly
    strided sample of at most SAMPLE values per matrix (a 7B model keeps too many to pool them all); taken as
    sample points (no interpolation), so a lone outlier never sets the span."""
    samples = []
    for key in keys:
        for r in runs:
            kept = kept_values(r.weights.matrix(key))
            samples.append(kept[:: max(1, kept.size // SAMPLE)])
    pooled = np.concatenate(samples) if samples else np.zeros(0)
    if not pooled.size:  # nothing kept anywhere
        return -1.0, 1.0
    lo = float(np.quantile(pooled, QUANTILES[0], method="higher"))
    hi = float(np.quantile(pooled, QUANTILES[1], method="lower"))
    return (lo, hi) if lo < hi else (lo - 0.5, hi + 0.5)


def kept_histograms(runs: list[AnalysisRun], keys: list[str], bins: int = 100,
                    span: tuple[float, float] | None = None) -> dict:
    """{"edges": [...], "series": [{"label", "counts", "kept", "total", "clipped_below", "clipped_above", ...}]}
    over the matrices `keys`. The span is found in a first pass, so no run's kept values are held all at once."""
    lo, hi = span or kept_span(runs, keys)
    edges = np.linspace(lo, hi, bins + 1)
    series = []
    for r in runs:
        counts, kept, total, below, above = np.zeros(bins, dtype=np.int64), 0, 0, 0, 0
        for key in keys:
            matrix = r.weights.matrix(key)
            values = kept_values(matrix).astype(np.float64)  # float32 would round the clip bounds past the edges
            below, above = below + int((values < lo).sum()), above + int((values > hi).sum())
            counts += np.histogram(np.clip(values, lo, hi), bins=edges)[0]
            kept, total = kept + values.size, total + matrix.size
        series.append({"run": str(r.path), "label": r.label, "method": r.method, "sparsity": r.sparsity,
                       "counts": counts.tolist(), "kept": kept, "total": total,
                       "clipped_below": below, "clipped_above": above})
    return {"edges": edges.tolist(), "span": [float(lo), float(hi)], "matrices": keys, "series": series}
