"""The end of a multirun: one line per job from its results.json, totals, and exit code 1 when any job did not complete.

A Hydra callback (configured under `hydra.callbacks` in conf/train.yaml). It reads the records the jobs wrote
under the sweep dir during this sweep, not what the launcher returned, so it works for any launcher (local,
joblib, submitit) and counts a job killed without a record. Single runs are unaffected.
This module stays light (no torch): Hydra instantiates the callback before every run.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

NO_RECORD = "running-no-record"  # the job started but left no final record (killed, or still running)


@dataclass
class JobSummary:
    num: int | None
    run_dir: Path
    status: str
    detail: str = ""  # main metric when completed, the error otherwise


def main_metric(record: dict) -> str:
    """`name=value` of the task's main metric: `accuracy` lives in metrics.eval, a dotted name (generation.bleu)
    is looked up from metrics itself (as scripts/make_table.py does)."""
    if record.get("dry_run"):
        return "dry run"
    name = ((record.get("config") or {}).get("task") or {}).get("main_metric", "")
    metrics = record.get("metrics") or {}
    node: Any = metrics if "." in name else metrics.get("eval", {})
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, (int, float)) and math.isfinite(node):
        return f"{name}={node:.4f}"
    return f"{name}=n/a"


def _job_num(run_dir: Path) -> int | None:
    """hydra.job.num from the job's .hydra/hydra.yaml; else the leading number of the default subdir name."""
    try:
        num = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"]
        return int(num)
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        head = run_dir.name.split("_", 1)[0]
        return int(head) if head.isdigit() else None


def _one_line(text: str, limit: int = 160) -> str:
    """A multi-line error (ConfigError lists every problem) on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def summarize_job(run_dir: Path, since: float) -> JobSummary:
    results = run_dir / "results.json"
    record = None
    if results.is_file() and results.stat().st_mtime >= since:
        try:
            record = json.loads(results.read_text())
        except (OSError, ValueError):
            record = None  # a torn or invalid file is no trustworthy record
    if not isinstance(record, dict) or record.get("status") in (None, "running"):
        return JobSummary(_job_num(run_dir), run_dir, NO_RECORD)
    status = str(record["status"])
    detail = main_metric(record) if status == "completed" else _one_line(str(record.get("error") or ""))
    return JobSummary(_job_num(run_dir), run_dir, status, detail)


def sweep_jobs(sweep_dir: Path, since: float) -> list[JobSummary]:
    """Every job dir of this sweep: a results.json or a Hydra job record (.hydra/) written since the start."""
    dirs = set()
    for pattern in ("results.json", ".hydra/hydra.yaml"):
        dirs |= {f.parent if f.name == "results.json" else f.parent.parent
                 for f in sweep_dir.rglob(pattern) if f.stat().st_mtime >= since}
    jobs = [summarize_job(d, since) for d in dirs]
    return sorted(jobs, key=lambda j: (j.num is None, j.num if j.num is not None else 0, str(j.run_dir)))


def format_summary(sweep_dir: Path, jobs: list[JobSummary]) -> str:
    lines = [f"sweep summary: {len(jobs)} job(s) in {sweep_dir}"]
    for j in jobs:
        num = "?" if j.num is None else str(j.num)
        lines.append(f"  #{num:<3} {j.status:<17} {j.detail + '  ' if j.detail else ''}{j.run_dir}")
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    order = ["completed", "failed", "diverged", "interrupted", NO_RECORD]
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    lines.append("totals: " + (", ".join(f"{counts[k]} {k}" for k in keys) or "no jobs found"))
    return "\n".join(lines)


class SweepSummary(Callback):
    """Prints the summary after the last job; SystemExit(1) when a job did not complete (or none ran).

    SystemExit is not an Exception, so neither Hydra's callback runner nor run_and_report swallows it.
    """

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        # whole seconds: file systems with coarse mtimes must still count the first job's files
        self.started = math.floor(time.time())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        jobs = sweep_jobs(sweep_dir, self.started) if sweep_dir.is_dir() else []
        print("\n" + format_summary(sweep_dir, jobs), flush=True)
        bad = [j for j in jobs if j.status != "completed"]
        if bad or not jobs:
            what = f"{len(bad)} of {len(jobs)} job(s) did not complete" if jobs else "no job left a record"
            print(f"error: {what} (see the sweep summary above)", file=sys.stderr, flush=True)
            raise SystemExit(1)
