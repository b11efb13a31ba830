"""Write docs/REPRODUCTION.md from the paper-table runs' results.json files.

    python scripts/reproduction_report.py --collect outputs/tables   # copy the records into docs/results, then write
    python scripts/reproduction_report.py                           # rewrite from docs/results alone
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsetune.tables.report import collect, write_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collect", help="outputs dir of scripts/reproduce.py (outputs/tables) to copy records from")
    ap.add_argument("--results", default=str(ROOT / "docs" / "results"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "REPRODUCTION.md"))
    args = ap.parse_args()
    if args.collect:
        for d in collect(Path(args.collect), Path(args.results)):
            print(f"collected {d}")
    print(f"wrote {write_report(Path(args.results), Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
