"""`sparsetune plot` (also scripts/plot_runs.py): training curves of one or more runs, overlaid, as PNGs.

    sparsetune plot outputs/2026-12-02/10-00-00_pst_sst2_ab12 outputs/2026-12-02/10-05-00_magnitude_sst2_cd34 --out plots/
    sparsetune plot outputs/multirun/2026-12-02/10-00-00_ab12 --out plots/   # every run under it
    sparsetune plot RUN --out plots/ --matrix bert.encoder.layer.0.attention.self.query --metric accuracy

Each path is a run dir (results.json, history.jsonl), a results.json, or a directory searched for run dirs. Reads
history.jsonl; a run without it falls back to results.json's train_log (last 20 losses) and final dev metrics.

Writes into --out (a plot without data is skipped with a note):
  train_loss.png           training loss over optimizer steps, one line per run (legend: method, target sparsity)
  eval_metric.png          the dev metric (--metric, default the task's main metric) over steps; stars: the
                           exported model's final evaluation
  sparsity_schedule.png    the scheduled sparsity of the masks in effect at each logged step; x: measured zeros
  per_layer_sparsity.png   achieved sparsity per target matrix (results.json sparsity.per_layer), one bar per run
  mask.png                 one matrix (--matrix, default the first target) of each exported model/: kept fraction
                           per block over the whole matrix, and its top-left 64x64 corner exactly
"""
from __future__ import annotations

import argparse
import sys

from .errors import ConfigError


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="sparsetune plot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="run dirs, results.json files or directories searched for runs")
    ap.add_argument("--out", required=True, help="directory for the PNG files")
    ap.add_argument("--matrix", help="target matrix for mask.png (module name, e.g. bert.encoder.layer.0.attention.self."
                                     "query; default: the first target)")
    ap.add_argument("--metric", help="dev metric for eval_metric.png (default: the task's main metric)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .analysis.run_plots import plot_runs  # after argparse: --help stays instant

    try:
        result = plot_runs(args.paths, args.out, matrix=args.matrix, metric=args.metric)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, info in result["runs"].items():
        print(f"{label}: {info['path']} (from {info['source']})")
    for name, why in result["skipped"].items():
        print(f"skipped {name}: {why}")
    for plot in result.values():
        if isinstance(plot, dict) and "png" in plot:
            print(f"wrote {plot['png']}")
    return 0

