"""Fig. 4 and Fig. 5 of the PST paper from run dirs: read, compute, write PNG + JSON (+ CSV for Fig. 5)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import ConfigError
from .kept_weights import kept_histograms, select_matrices
from .mask_similarity import pair_means, similarity_rows
from .plots import plot_kept_histograms, plot_mask_similarity
from .runs import load_runs, target_matrices

FIG4, FIG5 = "fig4_kept_weights", "fig5_mask_similarity"
CSV_FIELDS = ["pair", "matrix", "kind", "layer", "numel", "kept_a", "kept_b", "hamming_similarity",
              "kept_overlap_a", "kept_overlap_b", "chance_similarity", "run_a", "run_b"]


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in CSV_FIELDS} for r in rows)
    return path


def make_figures(paths: list[str | Path], out_dir: str | Path, bins: int = 100, hist_matrices: str = "*",
                 hist_range: tuple[float, float] | None = None, log_y: bool = False, where: list[str] = (),
                 best_of: str | None = None) -> dict:
    """Write Fig. 4 (all runs) and, with two runs or more, Fig. 5 into out_dir; returns what was written and the
    per-pair mean similarities. ConfigError (one line) for unusable runs or options."""
    if bins < 1:
        raise ConfigError(f"--bins must be >= 1, got {bins}")
    if hist_range is not None and not hist_range[0] < hist_range[1]:
        raise ConfigError(f"--hist-range LO HI needs LO < HI, got {hist_range[0]} {hist_range[1]}")
    runs = load_runs(paths, where, best_of)
    keys = target_matrices(runs)
    hist_keys = select_matrices(keys, hist_matrices)
    if not hist_keys:
        raise ConfigError(f"--hist-matrices {hist_matrices!r} matches none of the target matrices, e.g. "
                          f"{', '.join(k.removesuffix('.weight') for k in keys[:3])}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base, name = runs[0].base_model, runs[0].model_name
    written, summary = [], {"runs": [{"run": str(r.path), "label": r.label} for r in runs], "base_model": base}

    hist = kept_histograms(runs, hist_keys, bins, hist_range)
    scope = "all target matrices" if hist_matrices == "*" else f"matrices matching {hist_matrices}"
    hist.update(base_model=base, scope=scope, kept_definition="non-zero entries of the exported matrices")
    written += [_write_json(out / f"{FIG4}.json", hist),
                plot_kept_histograms(hist, out / f"{FIG4}.png", f"Kept weights of {name}: {scope} ({len(hist_keys)})", log_y)]
    summary["kept"] = {s["label"]: {"kept": s["kept"], "total": s["total"]} for s in hist["series"]}

    if len(runs) > 1:
        rows = similarity_rows(runs, keys)
        means = pair_means(rows)
        data = {"base_model": base, "definition": {
                    "hamming_similarity": "1 - Hamming(M1, M2) / n (PST paper Sec. 4.4); M = non-zero entries",
                    "kept_overlap_a": "|M_a & M_b| / |M_a|", "kept_overlap_b": "|M_a & M_b| / |M_b|",
                    "chance_similarity": "d_a*d_b + (1-d_a)*(1-d_b): independent masks of the same densities d"},
                "pair_means": means, "rows": rows}
        written += [_write_json(out / f"{FIG5}.json", data), _write_csv(out / f"{FIG5}.csv", rows),
                    plot_mask_similarity(rows, out / f"{FIG5}.png", f"Mask similarity between runs of {name}")]
        summary["pair_means"] = means
    summary["written"] = [str(p) for p in written]
    return summary
