"""Build a results table from results.json files alone, optionally beside a paper table's published numbers.

    python scripts/make_table.py outputs/table-pst --paper pst-table2
    python scripts/make_table.py outputs/table-speft --paper speft-table1
    python scripts/make_table.py outputs/pst-search --paper pst-table2 --select-best lr,epochs
    python scripts/make_table.py --list-papers

Rows: one per distinct setting. Every setting of the recorded config that differs between runs is part of the
row (model, method, salience, mask schedule, scope, pruner, pattern, r / r1 / r2, score terms, sparsity,
lr, epochs, batch size, train samples ...), except the seed and bookkeeping (paths, resume, loggers,
threads, save / logging steps). A cell is the mean ± sample std over seeds, with n; a seed run twice counts
once (the newer record). Settings that only change with the task (max length ...) stay column properties;
--per-task KEY,... declares more of them (e.g. train.epochs when a paper trains MNLI for fewer epochs).
Columns: each task's metric as the paper reports it (--paper), else the task's main metric; lm-eval tasks,
GSM8K, WikiText-2 perplexity; Avg.; trainable parameters.
--select-best lr,epochs searches those settings instead of splitting rows by them: per row and task it
keeps the point with the best mean dev score (as the papers did) and says which point it took.
--paper SPEC prints, under each of our rows, the published row with the same method and the table's
distinguishing settings, then the difference ours − published; rows without one say so, and a different
model or a training subset is marked "scale differs". Runs that did not complete (failed, diverged,
interrupted, dry runs) are listed apart and never averaged.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sparsetune.errors import ConfigError  # noqa: E402
from sparsetune.tables.build import build_table  # noqa: E402
from sparsetune.tables.published import get_table, load_published, spec_order  # noqa: E402
from sparsetune.tables.render import render_table  # noqa: E402
from sparsetune.tables.runs import load_runs  # noqa: E402


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="run / sweep directories or results.json files")
    ap.add_argument("--paper", help="a published table to print beside ours, e.g. pst-table2 (see --list-papers)")
    ap.add_argument("--select-best", type=csv, default=[], metavar="KEYS",
                    help="settings searched on dev instead of splitting rows, e.g. lr,epochs (or dotted config keys)")
    ap.add_argument("--per-task", type=csv, default=[], metavar="KEYS",
                    help="settings that may differ between tasks without splitting a row, e.g. train.epochs")
    ap.add_argument("--list-papers", action="store_true", help="list the published tables and exit")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.list_papers:
            tables = load_published()
            for spec in sorted(tables, key=spec_order):
                print(f"{spec:<16} {tables[spec].title}")
            return 0
        if not args.paths:
            raise ConfigError("give the run / sweep directories to build the table from (or --list-papers)")
        paper = get_table(args.paper) if args.paper else None
        runs, apart = load_runs(args.paths)
        if not runs and not apart:
            print(f"no results.json under {' '.join(args.paths)}", file=sys.stderr)
            return 1
        print(render_table(build_table(runs, apart, paper, select=args.select_best, per_task=args.per_task)))
        return 0 if runs else 1
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
