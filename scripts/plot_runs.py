"""Training curves of one or more runs, overlaid, as PNGs: the same as `sparsetune plot` (see
sparsetune/plot_command.py or `python scripts/plot_runs.py --help`).

    python scripts/plot_runs.py RUN_DIR [RUN_DIR ...] --out plots/ [--matrix NAME] [--metric NAME]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sparsetune.plot_command import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
