"""PST paper Fig. 4 and Fig. 5 from the exported models of completed runs.

    python scripts/analysis_figures.py outputs/fig-map outputs/fig-mvp outputs/fig-pst --out outputs/figs-pst
    python scripts/analysis_figures.py outputs/multirun/2026-01-01 --out outputs/figs-pst   # searched for runs
    python scripts/analysis_figures.py RUN... --out DIR --hist-matrices '*layer.5.intermediate.dense'
    python scripts/analysis_figures.py outputs/tables/pst-figure3/cpu/runs --where method.sparsity=0.9 --best-of lr --out DIR

Each path is a run dir (results.json + model/), a results.json, or a directory searched for them. Every run must
have status completed and an exported model/, and all must start from one base model; otherwise one line names
the runs and the script exits 2. The target matrices are those every run's results.json lists under
sparsity.per_layer.

Writes into --out:
  fig4_kept_weights.png/.json      histogram of the kept (non-zero) target weights, one series per run
                                   (--hist-matrices: an fnmatch pattern to show some matrices, e.g. one layer)
  fig5_mask_similarity.png/.json/.csv   per run pair and target matrix: mask similarity 1 − Hamming / n (the
                                   paper's measure) against layer index, one panel per matrix kind; also the
                                   kept overlap |M1 ∧ M2| / |M1| and the chance level of independent masks
and prints each pair's mean over the matrices.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sparsetune.errors import ConfigError  # noqa: E402


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="run dirs, results.json files or directories searched for runs")
    ap.add_argument("--out", required=True, help="directory for the PNG / JSON / CSV files")
    ap.add_argument("--bins", type=int, default=100, help="histogram bins for Fig. 4")
    ap.add_argument("--hist-matrices", default="*", metavar="PATTERN",
                    help="fnmatch pattern over target matrix names for Fig. 4 (default: all)")
    ap.add_argument("--hist-range", type=float, nargs=2, metavar=("LO", "HI"),
                    help="Fig. 4 x range (default: 0.1 %%-99.9 %% quantiles of the kept weights; outliers go to the end bins)")
    ap.add_argument("--log-y", action="store_true", help="log-scale counts in Fig. 4")
    ap.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE",
                    help="keep the runs whose config matches, e.g. method.sparsity=0.9 task.name=sst2")
    ap.add_argument("--best-of", metavar="KEY", help="of a search (e.g. lr), keep each setting's best dev point")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from sparsetune.analysis import make_figures  # after argparse: --help stays instant

    try:
        summary = make_figures(args.paths, args.out, bins=args.bins, hist_matrices=args.hist_matrices,
                               hist_range=tuple(args.hist_range) if args.hist_range else None, log_y=args.log_y,
                               where=args.where, best_of=args.best_of)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, k in summary["kept"].items():
        print(f"{label}: {k['kept']:,} of {k['total']:,} target weights kept ({k['kept'] / k['total']:.2%})")
    for pair, m in summary.get("pair_means", {}).items():
        overlap = "n/a" if m["kept_overlap_a"] is None else f"{m['kept_overlap_a']:.4f}"
        print(f"{pair}: mean mask similarity {m['hamming_similarity']:.4f} (chance {m['chance_similarity']:.4f}), "
              f"kept overlap {overlap} over {m['matrices']} matrices")
    if "pair_means" not in summary:
        print("one run: Fig. 5 (mask similarity) needs two runs or more")
    for path in summary["written"]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
