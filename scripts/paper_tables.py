"""Print the papers' published tables as transcribed in sparsetune/tables/published/*.yaml.

    python scripts/paper_tables.py                 # list the tables
    python scripts/paper_tables.py pst-table2      # one table: every model block, row, value and match settings
    python scripts/paper_tables.py --all           # every table

The numbers are copied verbatim from ../shared/papers/*.txt (each table's YAML comment says where); the
"settings" column is what scripts/make_table.py --paper matches our rows on.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sparsetune.errors import ConfigError  # noqa: E402
from sparsetune.tables.published import get_table, load_published, spec_order  # noqa: E402
from sparsetune.tables.render import render_published  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", help="tables to print, e.g. pst-table2 spp-table3")
    ap.add_argument("--all", action="store_true", help="print every table")
    args = ap.parse_args(argv)
    try:
        tables = load_published()
        specs = sorted(tables, key=spec_order) if args.all else args.specs
        if not specs:
            for spec in sorted(tables, key=spec_order):
                t = tables[spec]
                print(f"{spec:<16} {len(t.entries()):>4} numbers  {t.title}")
            return 0
        print("\n\n".join(render_published(get_table(s, tables)) for s in specs))
        return 0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
