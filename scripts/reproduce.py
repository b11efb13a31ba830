"""Regenerate a paper table: run its whole grid, then print it beside the published numbers.

    python scripts/reproduce.py pst-table2 --scale cpu --data ../shared/data --jobs 2
    python scripts/reproduce.py --list
    python scripts/reproduce.py spp-table2 --scale paper --dry      # print the jobs only

What each table runs at each scale: sparsetune/tables/grids.py. Results go to outputs/tables/<table>/<scale>/
(runs/, logs/, table.md, reproduce.json); rerunning skips completed jobs and resumes killed ones.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsetune.tables.grids import TABLES  # noqa: E402
from sparsetune.tables.reproduce import expand, reproduce  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", nargs="?", help=f"one of: {', '.join(TABLES)}")
    ap.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
    ap.add_argument("--data", default="../shared/data", help="data root (glue/, alpaca/, wikitext-2-raw/, commonsense/ ...)")
    ap.add_argument("--out", default="outputs/tables")
    ap.add_argument("--jobs", type=int, default=2, help="jobs run at a time (one torch thread each)")
    ap.add_argument("--dry", action="store_true", help="print the train.py commands and stop")
    ap.add_argument("--budget-minutes", type=float, metavar="M",
                    help="start no job after M minutes: the rest are recorded as not run, the table is built from "
                         "what completed (rerun the command to finish it)")
    ap.add_argument("--list", action="store_true", help="list the tables with their job counts and paper-scale cost")
    args = ap.parse_args()
    if args.list or not args.table:
        for name, t in TABLES.items():
            n = {s: len(expand(g, args.data)) if g else None for s, g in (("cpu", t.cpu), ("paper", t.paper_scale))}
            cpu = f"{n['cpu']} jobs" if n["cpu"] else f"none ({t.missing})"
            print(f"{name:<14} {t.title}\n{'':<14} cpu: {cpu}; paper: {n['paper']} jobs, {t.cost}")
        return 0
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        print("error: --budget-minutes must be > 0", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("error: --jobs must be >= 1", file=sys.stderr)
        return 2
    manifest = reproduce(args.table, args.scale, str(Path(args.data).resolve()), Path(args.out), args.jobs, args.dry,
                         args.budget_minutes)
    return 0 if args.dry or all(j["status"] == "completed" for j in manifest["jobs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
