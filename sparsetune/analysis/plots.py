"""Drawing Fig. 4 and Fig. 5 with matplotlib's Agg backend (no display needed): data in, PNG out."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402


def plot_kept_histograms(hist: dict, path: Path, title: str, log_y: bool = False) -> Path:
    """One step histogram per run over the shared bin edges."""
    edges = np.asarray(hist["edges"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, s in enumerate(hist["series"]):
        counts = np.asarray(s["counts"])
        ax.stairs(counts, edges, fill=True, alpha=0.15, color=f"C{i}")
        # line styles and widths differ: runs with the same distribution would otherwise hide each other
        ax.stairs(counts, edges, label=f"{s['label']} ({s['kept']:,} kept)", color=f"C{i}",
                  linestyle=("-", "--", ":", "-.")[i % 4], linewidth=2.4 - 0.5 * (i % 3))
    ax.set_xlabel("weight value (kept entries only; values beyond the axis counted in the end bins)")
    ax.set_ylabel("count")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_mask_similarity(rows: list[dict], path: Path, title: str) -> Path:
    """One panel per matrix kind (query, ..., FFN in / out), similarity against layer index, one line per pair; the
    dashed line of the same colour is the pair's chance level (independent masks of the same densities)."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    colors = {p: f"C{i}" for i, p in enumerate(pairs)}
    # markers and widths differ too: pairs with equal similarity would otherwise hide each other's lines
    styles = {p: {"marker": "osD^v<>"[i % 7], "markersize": 6 - 1.2 * (i % 3), "linewidth": 2.6 - 0.7 * (i % 3)}
              for i, p in enumerate(pairs)}
    ncols = min(3, len(kinds))
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 0.6), squeeze=False, sharey=True)
    for ax, kind in zip(axes.flat, kinds):
        for pair in pairs:
            mine = sorted((r for r in rows if r["kind"] == kind and r["pair"] == pair), key=lambda r: r["layer"] or 0)
            x = [r["layer"] if r["layer"] is not None else 0 for r in mine]
            ax.plot(x, [r["hamming_similarity"] for r in mine], color=colors[pair], label=pair, **styles[pair])
            ax.plot(x, [r["chance_similarity"] for r in mine], linestyle="--", linewidth=0.8, color=colors[pair])
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("layer index")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("mask similarity\n1 − Hamming / n")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(pairs)), fontsize=8)
    fig.suptitle(title + "\n(dashed: independent masks of the same densities)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(pairs) > 3), 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
