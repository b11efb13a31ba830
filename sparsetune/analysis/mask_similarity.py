"""PST Fig. 5: the similarity of the binary masks of two runs, per target matrix, against layer index.

A mask is the set of kept (non-zero) entries of the exported matrix. The paper "use[s] the Hamming distance to
compute the similarity of binary mask M", so the plotted similarity is 1 − Hamming(M1, M2) / n: the fraction of
the n positions on which both masks agree (kept in both or pruned in both). Beside it the records give
kept_overlap = |M1 ∧ M2| / |M1| (and / |M2|): the share of one run's kept weights the other also keeps, and
chance_similarity = d1·d2 + (1 − d1)(1 − d2): the expected Hamming similarity of independent random masks with
the same densities d (0.82 at 90 % sparsity), the level that says "no more alike than chance".
"""
from __future__ import annotations

import itertools
import re

import numpy as np

from .runs import AnalysisRun

_INDEX = re.compile(r"\.(\d+)\.")


def layer_position(key: str) -> tuple[str, int | None]:
    """('attention.self.query', 3) for 'bert.encoder.layer.3.attention.self.query.weight': the matrix kind is the
    name after the first numeric component (the block index); names without one are their own kind."""
    name = key.removesuffix(".weight")
    m = _INDEX.search(name)
    return (name[m.end():], int(m.group(1))) if m else (name, None)


def hamming_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - np.count_nonzero(a != b) / a.size


def kept_overlap(a: np.ndarray, b: np.ndarray) -> float | None:
    """|a ∧ b| / |a|; None when a keeps nothing."""
    kept = np.count_nonzero(a)
    return np.count_nonzero(a & b) / kept if kept else None


def chance_similarity(density_a: float, density_b: float) -> float:
    return density_a * density_b + (1 - density_a) * (1 - density_b)


def pair_label(a: AnalysisRun, b: AnalysisRun) -> str:
    return f"{a.label} vs {b.label}"


def similarity_rows(runs: list[AnalysisRun], keys: list[str]) -> list[dict]:
    """One row per (run pair, target matrix); every pair of runs, in the order given."""
    pairs = list(itertools.combinations(runs, 2))
    rows = []
    for key in keys:
        masks = {r.path: r.weights.matrix(key) != 0 for r in runs}
        kind, layer = layer_position(key)
        for a, b in pairs:
            ma, mb = masks[a.path], masks[b.path]
            da, db = np.count_nonzero(ma) / ma.size, np.count_nonzero(mb) / mb.size
            rows.append({"pair": pair_label(a, b), "run_a": str(a.path), "run_b": str(b.path), "matrix": key,
                         "kind": kind, "layer": layer, "numel": int(ma.size),
                         "kept_a": int(np.count_nonzero(ma)), "kept_b": int(np.count_nonzero(mb)),
                         "hamming_similarity": hamming_similarity(ma, mb),
                         "kept_overlap_a": kept_overlap(ma, mb), "kept_overlap_b": kept_overlap(mb, ma),
                         "chance_similarity": chance_similarity(da, db)})
    return rows


def pair_means(rows: list[dict]) -> dict[str, dict]:
    """Per pair: the unweighted mean over matrices of each measure (a matrix counts once whatever its size)."""
    out: dict[str, dict] = {}
    for pair in dict.fromkeys(r["pair"] for r in rows):
        mine = [r for r in rows if r["pair"] == pair]
        out[pair] = {"matrices": len(mine)}
        for field in ("hamming_similarity", "kept_overlap_a", "kept_overlap_b", "chance_similarity"):
            values = [r[field] for r in mine if r[field] is not None]
            out[pair][field] = float(np.mean(values)) if values else None
    return out
