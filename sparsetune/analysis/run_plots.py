"""Training curves of runs, from their dirs: loss, dev metric and sparsity schedule over steps (runs overlaid),
per-layer achieved sparsity, and the zero pattern of one exported matrix. matplotlib's Agg backend: no display.

Reads `<run dir>/history.jsonl` (sparsetune/history.py); a run without it falls back to results.json's `train_log`
(the last 20 losses) and its final `metrics.eval`. Each plot_* function writes one PNG and returns the data it drew.
`plot_runs` writes them all (scripts/plot_runs.py is its CLI).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from ..errors import ConfigError  # noqa: E402
from ..history import HISTORY_FILE, read_history  # noqa: E402
from .runs import find_run_dirs  # noqa: E402
from .weights import ExportedWeights, has_export  # noqa: E402

MASK_CELLS = 400  # the whole-matrix panel shows at most this many cells a side (each the kept fraction of a block)
MASK_CROP = 64  # the exact panel: the top-left corner, one pixel per weight
PNG = {"loss": "train_loss.png", "eval": "eval_metric.png", "sparsity": "sparsity_schedule.png",
       "per_layer": "per_layer_sparsity.png", "mask": "mask.png"}


@dataclass
class RunHistory:
    path: Path
    record: dict
    entries: list[dict]
    source: str  # history.jsonl, or results.json train_log where that file is missing
    label: str = ""

    def config(self, dotted: str, default=None):
        node = self.record.get("config") or {}
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def targets(self) -> list[str]:
        """Target matrices as results.json measured them (fused-block entries `name[i]` left out)."""
        return [n for n in (self.record.get("sparsity") or {}).get("per_layer") or {} if "[" not in n]


def load_run(run_dir: Path) -> RunHistory:
    try:
        record = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run_dir}: unreadable results.json ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{run_dir}/results.json: not a JSON object")
    entries = read_history(run_dir / HISTORY_FILE)
    if entries:
        return RunHistory(run_dir, record, entries, HISTORY_FILE)
    fallback = [{**e, "kind": "train"} for e in record.get("train_log") or []]
    eval_metrics = (record.get("metrics") or {}).get("eval")
    steps = (record.get("timing") or {}).get("steps")
    if isinstance(eval_metrics, dict) and steps is not None:
        fallback.append({"step": steps, "kind": "final_eval", **{f"eval_{k}": v for k, v in eval_metrics.items()}})
    return RunHistory(run_dir, record, fallback, "results.json train_log")


def _labels(runs: list[RunHistory]) -> None:
    """method and target sparsity; the run dir's name added where two runs would read the same."""
    base = []
    for r in runs:
        target = (r.record.get("sparsity") or {}).get("target")
        base.append(f"{r.config('method.name', '?')}" + (f" {target:.0%}" if target else ""))
    for r, b in zip(runs, base):
        r.label = f"{b} [{r.path.name}]" if base.count(b) > 1 else b


def load_runs(paths: list[str | Path]) -> list[RunHistory]:
    """Each path: a run dir, its results.json, or a directory searched for run dirs (a multirun)."""
    runs = [load_run(d) for d in find_run_dirs(paths)]
    _labels(runs)
    return runs


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- series ---------------------------------------------------------------------------------------------
def loss_series(run: RunHistory) -> dict:
    rows = [e for e in run.entries if e.get("kind") == "train" and _finite(e.get("loss"))]
    return {"step": [e["step"] for e in rows], "loss": [e["loss"] for e in rows]}


def metric_key(entry: dict, metric: str) -> str | None:
    """An eval entry's key for `metric`: eval_<metric> (final evaluations) or eval_<split>_<metric> (the first split
    during training)."""
    if f"eval_{metric}" in entry:
        return f"eval_{metric}"
    return next((k for k in entry if k.startswith("eval_") and k.endswith(f"_{metric}")), None)


def eval_series(run: RunHistory, metric: str) -> dict:
    """Evaluations during training, and the first final evaluation (the exported, merged model)."""
    out = {"step": [], "value": [], "final_step": None, "final_value": None, "key": None}
    for e in run.entries:
        kind = e.get("kind")
        key = metric_key(e, metric) if kind in ("eval", "final_eval") else None
        if key is None or not _finite(e[key]):
            continue
        if kind == "eval":
            out["key"] = out["key"] or key
            if key == out["key"]:  # the first split only
                out["step"].append(e["step"])
                out["value"].append(e[key])
        elif out["final_step"] is None:
            out["final_step"], out["final_value"] = e["step"], e[key]
    return out


def sparsity_series(run: RunHistory) -> dict:
    rows = [e for e in run.entries if e.get("kind") == "train" and _finite(e.get("sparsity"))]
    return {"step": [e["step"] for e in rows], "scheduled": [e["sparsity"] for e in rows],
            "measured": [e.get("sparsity_measured") for e in rows]}


# ---- plots ----------------------------------------------------------------------------------------------
def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _style(i: int) -> dict:
    # line styles differ too: runs with the same curve would otherwise hide each other
    return {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[i % 4], "linewidth": 2.2 - 0.4 * (i % 3)}


def plot_loss(runs: list[RunHistory], path: Path) -> dict:
    data = {r.label: loss_series(r) for r in runs}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, s) in enumerate(data.items()):
        ax.plot(s["step"], s["loss"], marker="o", markersize=3, label=label, **_style(i))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return data


def plot_eval(runs: list[RunHistory], path: Path, metric: str) -> dict:
    data = {r.label: eval_series(r, metric) for r in runs}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, s) in enumerate(data.items()):
        style = _style(i)
        ax.plot(s["step"], s["value"], marker="o", markersize=4, label=label, **style)
        if s["final_step"] is not None:
            # shrinking stars: equal final scores stay visible one inside the other
            ax.plot([s["final_step"]], [s["final_value"]], marker="*", markersize=max(18 - 4 * i, 6), color=style["color"],
                    markeredgecolor="black", markeredgewidth=0.5, linestyle="none", label=f"{label}: exported model")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"dev {metric} (lines: evaluations during training; stars: the exported model)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return data


def plot_sparsity(runs: list[RunHistory], path: Path) -> dict:
    data = {r.label: sparsity_series(r) for r in runs}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, s) in enumerate(data.items()):
        style = _style(i)
        ax.plot(s["step"], s["scheduled"], label=f"{label}: scheduled", **style)
        measured = [(x, y) for x, y in zip(s["step"], s["measured"]) if _finite(y)]
        if measured:
            ax.plot(*zip(*measured), marker="x", markersize=6, linestyle="none", color=style["color"],
                    label=f"{label}: measured zeros in the masks")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("sparsity of the target matrices")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("sparsity schedule (the masks in effect at each logged step)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return data


def _short_names(names: list[str]) -> list[str]:
    """Names without the prefix they all share (e.g. `bert.encoder.layer.`), up to a dot."""
    if len(names) < 2:
        return names
    prefix = names[0]
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    cut = prefix.rfind(".") + 1
    return [n[cut:] for n in names]


def plot_per_layer(runs: list[RunHistory], path: Path) -> dict:
    """Horizontal bars, one group per target matrix (the first run's order), one bar per run; dashed: targets."""
    data = {r.label: {n: (r.record["sparsity"]["per_layer"][n]) for n in r.targets} for r in runs if r.targets}
    names = list(dict.fromkeys(n for layers in data.values() for n in layers))
    height = 0.8 / max(len(data), 1)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.22 * len(names) * max(1, len(data) ** 0.5)))
    y = np.arange(len(names))
    for i, (label, layers) in enumerate(data.items()):
        values = [layers.get(n, np.nan) for n in names]
        ax.barh(y + i * height, values, height=height, color=f"C{i % 10}", label=label)
    for i, r in enumerate(r for r in runs if r.targets):
        target = (r.record.get("sparsity") or {}).get("target")
        if target:
            ax.axvline(target, color=f"C{i % 10}", linestyle="--", linewidth=1)
    ax.set_yticks(y + height * (len(data) - 1) / 2, _short_names(names), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("achieved sparsity (zeros / weights, exported model; dashed: target)")
    ax.set_title("per-layer sparsity (results.json sparsity.per_layer)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return data


def pooled_kept(kept: np.ndarray, cells: int = MASK_CELLS) -> tuple[np.ndarray, tuple[int, int]]:
    """The kept fraction of each block of a (rows x cols) bool matrix, at most `cells` blocks a side."""
    rows, cols = kept.shape
    bh, bw = math.ceil(rows / cells), math.ceil(cols / cells)
    padded = np.full((math.ceil(rows / bh) * bh, math.ceil(cols / bw) * bw), np.nan)
    padded[:rows, :cols] = kept
    blocks = padded.reshape(padded.shape[0] // bh, bh, padded.shape[1] // bw, bw)
    return np.nanmean(blocks, axis=(1, 3)), (bh, bw)


def _weight_key(matrix: str) -> str:
    return matrix if matrix.endswith(".weight") else f"{matrix}.weight"


def plot_mask(runs: list[RunHistory], path: Path, matrix: str | None = None) -> dict | None:
    """One row per run with an exported model/: the whole matrix (kept fraction per block) and its exact top-left
    corner. `matrix`: a target's module name (or state-dict key); default the first run's first target. None when
    no run has an export."""
    exported = [r for r in runs if has_export(r.path / "model")]
    if not exported:
        return None
    if matrix is None:
        matrix = next((t for r in exported for t in r.targets), None)
        if matrix is None:
            return None
    key = _weight_key(matrix)
    weights = {r.label: ExportedWeights(r.path / "model") for r in exported}
    shown = [r for r in exported if key in weights[r.label]]
    if not shown:
        names = list(dict.fromkeys(t for r in exported for t in r.targets))
        raise ConfigError(f"no exported model has matrix {matrix!r}; targets: {', '.join(names[:8])}"
                          + (f", ... ({len(names)} in all)" if len(names) > 8 else ""))
    data = {}
    fig, axes = plt.subplots(len(shown), 2, figsize=(10, 3.6 * len(shown)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1.3]})
    for (whole, corner), r in zip(axes, shown):
        kept = weights[r.label].matrix(key) != 0
        pooled, (bh, bw) = pooled_kept(kept)
        zeros = 1.0 - float(kept.mean())
        data[r.label] = {"matrix": key, "shape": list(kept.shape), "sparsity": zeros, "block": [bh, bw]}
        im = whole.imshow(pooled, cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        pooling = f", each cell {bh}x{bw} weights" if bh * bw > 1 else ""
        whole.set_title(f"{r.label}: {key} {kept.shape[0]}x{kept.shape[1]}, {zeros:.1%} zeros{pooling}", fontsize=8)
        whole.set_xlabel("column (stored layout)")
        whole.set_ylabel("row")
        fig.colorbar(im, ax=whole, fraction=0.04, label="kept fraction (black = kept, white = zero)")
        crop = kept[:MASK_CROP, :MASK_CROP]
        corner.imshow(crop, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        corner.set_title(f"top-left {crop.shape[0]}x{crop.shape[1]}, exact", fontsize=8)
    _save(fig, path)
    return data


def plot_runs(paths: list[str | Path], out_dir: str | Path, matrix: str | None = None,
              metric: str | None = None) -> dict:
    """Every plot that has data into out_dir. Returns {plot: {"png": path, "data": what it drew}}, "skipped":
    {plot: why} and "runs": {label: {"path", "source"}}."""
    runs = load_runs(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = metric or runs[0].config("task.main_metric") or "loss"
    result: dict = {"runs": {r.label: {"path": str(r.path), "source": r.source} for r in runs}, "skipped": {}}
    plots = {
        "loss": (any(loss_series(r)["step"] for r in runs), lambda p: plot_loss(runs, p), "no logged training loss"),
        "eval": (any(s["step"] or s["final_step"] is not None for s in (eval_series(r, metric) for r in runs)),
                 lambda p: plot_eval(runs, p, metric), f"no evaluation with metric {metric!r}"),
        "sparsity": (any(sparsity_series(r)["step"] for r in runs), lambda p: plot_sparsity(runs, p),
                     f"no sparsity logged (no {HISTORY_FILE})"),
        "per_layer": (any(r.targets for r in runs), lambda p: plot_per_layer(runs, p),
                      "no results.json lists sparsity.per_layer (not completed?)"),
        "mask": (True, lambda p: plot_mask(runs, p, matrix), "no run has an exported model/ with a target matrix"),
    }
    for name, (has_data, draw, why) in plots.items():
        data = draw(out / PNG[name]) if has_data else None
        if data is None:
            result["skipped"][name] = why
        else:
            result[name] = {"png": str(out / PNG[name]), "data": data}
    return result
