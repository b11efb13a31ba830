"""Build a results table from results.json files only, next to the published numbers.

    python scripts/make_table.py outputs/multirun/2026-11-23 --paper pst-table2

Rows are (method, sparsity), columns are tasks; a cell is the mean (± std over seeds) of the task's main
metric x 100 over completed runs. Failed runs are counted and listed, never silently dropped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from paper_tables import PAPERS  # noqa: E402


def load(paths: list[str]) -> tuple[list[dict], list[str]]:
    files = [f for p in paths for f in (Path(p).rglob("results.json") if Path(p).is_dir() else [Path(p)])]
    done, failed = [], []
    for f in sorted(files):
        rec = json.loads(f.read_text())
        (done if rec.get("status") == "completed" and not rec.get("dry_run") else failed).append(rec if rec.get("status") == "completed" else str(f))
    return [r for r in done if isinstance(r, dict)], [f for f in failed if isinstance(f, str)]


def metric_value(metrics: dict, main: str):
    """`accuracy` is looked up in metrics.eval; a dotted name (generation.bleu) from the metrics root."""
    node = metrics if "." in main else metrics.get("eval", {})
    for part in main.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "") + (f" (n={len(values)})" if len(values) > 1 else "")


def table(records: list[dict], paper: str | None) -> str:
    scores: dict = defaultdict(list)
    tasks: list[str] = []
    for r in records:
        cfg = r["config"]
        task, main = cfg["task"]["name"], cfg["task"]["main_metric"]
        key = (cfg["method"]["name"], round(float(r["sparsity"]["target"]), 4))
        value = metric_value(r["metrics"], main)
        if value is not None:
            scores[(key, task)].append(100.0 * value)
            tasks += [task] if task not in tasks else []
    ref, ref_tasks = PAPERS.get(paper, ({}, [])) if paper else ({}, [])
    tasks = [t for t in ref_tasks if t in tasks] + [t for t in tasks if t not in ref_tasks]
    rows = sorted({k for k, _ in scores} | set(ref), key=lambda k: (k[1], k[0]))
    head = "| method | sparsity | " + " | ".join(tasks) + " |"
    lines = [head, "|" + "---|" * (len(tasks) + 2)]
    for k in rows:
        ours = [cell(scores.get((k, t), [])) for t in tasks]
        if paper and k in ref:
            ours = [f"{o} [{ref[k][ref_tasks.index(t)]:.2f}]" if t in ref_tasks else o for o, t in zip(ours, tasks)]
        lines.append(f"| {k[0]} | {k[1]:.0%} | " + " | ".join(ours) + " |")
    if paper:
        lines.append(f"\n[bracketed] = published in {paper} for the paper's model; ours are from the runs' own model and settings.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="run/sweep directories or results.json files")
    ap.add_argument("--paper", choices=sorted(PAPERS), help="print the published numbers beside ours")
    args = ap.parse_args(argv)
    records, failed = load(args.paths)
    if not records:
        print(f"no completed results.json under {args.paths}", file=sys.stderr)
        return 1
    print(table(records, args.paper))
    if failed:
        print(f"\n{len(failed)} failed run(s): " + ", ".join(failed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
