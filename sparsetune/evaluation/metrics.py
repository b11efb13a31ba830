"""GLUE metrics with scikit-learn / scipy (evaluate.load needs the hub)."""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _classes(preds: np.ndarray) -> np.ndarray:
    return preds.argmax(-1) if preds.ndim > 1 else preds


METRICS = {
    "accuracy": lambda p, y: float(accuracy_score(y, _classes(p))),
    "f1": lambda p, y: float(f1_score(y, _classes(p))),
    "matthews_correlation": lambda p, y: float(matthews_corrcoef(y, _classes(p))),
    "pearson": lambda p, y: float(pearsonr(p.reshape(-1), y)[0]),
    "spearmanr": lambda p, y: float(spearmanr(p.reshape(-1), y)[0]),
}


def compute(names: list[str], preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {sorted(METRICS)}")
    return {n: METRICS[n](np.asarray(preds), np.asarray(labels)) for n in names}


def metrics_fn(names: list[str]):
    def compute_metrics(eval_pred):
        preds = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return compute(names, preds, eval_pred.label_ids)

    return compute_metrics
