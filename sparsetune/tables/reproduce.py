"""Run a paper table's whole grid, then build the table beside the published numbers.

    python scripts/reproduce.py pst-table2 [--scale cpu|paper] [--data ../shared/data] [--jobs 2]

Each job is one `train.py` process with its own run dir, named by a hash of its overrides, started with
`resume=auto`: rerunning the command skips completed jobs, resumes killed ones and retries failed ones. The
table is built from the jobs' results.json files alone (scripts/make_table.py) and written with a manifest
(command, date, git SHA, runtime, every job's status) to <out>/<table>/<scale>/.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..records import git_sha
from .grids import TABLES, Grid

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _values(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _format(value, data: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value).format(data=data)


def expand(grid: Grid, data: str) -> list[list[str]]:
    """Every job's override list: common settings, then one point of each run block's cartesian product,
    crossed with the tasks and the seeds."""
    lists = [k for k, v in grid.common.items() if isinstance(v, (list, tuple))]
    if lists:
        raise ValueError(f"grid.common {lists} hold lists: values to cross belong in a run block")
    jobs = []
    for block in grid.runs:
        axes = {**{k: _values(v) for k, v in block.items()}, **({"task": list(grid.tasks)} if grid.tasks else {}),
                "seed": list(grid.seeds)}
        for point in itertools.product(*axes.values()):
            settings = {**grid.common, **dict(zip(axes, point))}
            # group choices first (Hydra applies them before the keys they contain)
            ordered = sorted(settings.items(), key=lambda kv: "." in kv[0])
            jobs.append([f"{k}={_format(v, data)}" for k, v in ordered])
    return jobs


def job_dir_name(overrides: list[str]) -> str:
    get = dict(o.split("=", 1) for o in overrides)
    digest = hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
    return "_".join(x.replace("/", "-") for x in (get.get("method", "default"), get.get("task", "default"), digest))


def recorded_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def run_job(overrides: list[str], run_dir: Path, log_dir: Path) -> dict:
    if recorded_status(run_dir) == "completed":  # an earlier run of this command (or of a table sharing the job)
        return {"dir": str(run_dir), "overrides": overrides, "exit_code": 0, "status": "completed", "seconds": 0.0,
                "reused": True}
    cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}", "resume=auto"]
    t0 = time.time()
    with open(log_dir / f"{run_dir.name}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE}).returncode
    status = recorded_status(run_dir) or "no record"
    return {"dir": str(run_dir), "overrides": overrides, "exit_code": rc, "status": status,
            "seconds": round(time.time() - t0, 1)}


def build_table(name: str, grid: Grid, runs_dir: Path) -> str:
    spec = TABLES[name]
    cmd = [sys.executable, "scripts/make_table.py", str(runs_dir)]
    if spec.paper:
        cmd += ["--paper", spec.paper]
    if grid.select_best:
        cmd += ["--select-best", grid.select_best]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **OFFLINE})
    return out.stdout + (f"\n(make_table exit {out.returncode}: {out.stderr.strip()})\n" if out.returncode else "")


NLG_TASKS = ("e2e", "dart", "webnlg")


def check_scorers(name: str, job_list: list[list[str]]) -> None:
    """A table that reports METEOR / ROUGE-L / CIDEr stops before its first job when their scorers are missing,
    rather than after hours of training with those columns left empty."""
    from ..evaluation.coco_caption import missing

    if any(f"task={t}" in o for o in job_list for t in NLG_TASKS) and (reason := missing()):
        raise SystemExit(f"error: {name} reports {reason}")


def reproduce(name: str, scale: str, data: str, out_root: Path, jobs: int, dry: bool = False,
              budget_minutes: float | None = None) -> dict:
    """Run the table's grid (jobs at a time) and build its table. With `budget_minutes`, no job starts after
    that long: the rest are recorded as `not run` and the table is built from what completed (rerun to finish)."""
    if name not in TABLES:
        raise SystemExit(f"error: unknown table {name!r}; valid: {', '.join(TABLES)}")
    spec = TABLES[name]
    grid = spec.cpu if scale == "cpu" else spec.paper_scale
    if grid is None:
        raise SystemExit(f"error: {name} has no {scale}-scale grid: {spec.missing or 'not defined yet'}")
    out = out_root / name / scale
    runs_dir, log_dir = out / "runs", out / "logs"
    job_list = expand(grid, data)
    if dry:
        for o in job_list:
            print(shlex.join(["python", "train.py", *o]))
        return {"jobs": len(job_list)}
    check_scorers(name, job_list)
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    started, t0, sha = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.time(), git_sha()  # the code the jobs start from
    print(f"{name} ({scale} scale): {len(job_list)} jobs, {jobs} at a time; logs in {log_dir}", flush=True)
    deadline = t0 + 60 * budget_minutes if budget_minutes else None

    def start(o: list[str]) -> dict:
        run_dir = runs_dir / job_dir_name(o)
        # the budget holds back jobs that would start train.py; a completed one is reused at no cost
        recorded = recorded_status(run_dir)
        if deadline is not None and time.time() > deadline and recorded != "completed":
            # an earlier attempt that was killed or failed keeps its own status: it did start
            return {"dir": str(run_dir), "overrides": o, "exit_code": None, "status": recorded or "not run",
                    "seconds": 0.0, **({"earlier_attempt": True} if recorded else {})}
        return run_job(o, run_dir, log_dir)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(start, job_list))
    for r in results:
        print(f"  {r['status']:<12} {r['seconds']:>7.1f}s  {Path(r['dir']).name}", flush=True)
    table = build_table(name, grid, runs_dir)
    manifest = {"table": name, "paper": spec.paper, "title": spec.title, "scale": scale, "note": grid.note,
                "command": f"make {name} SCALE={scale} DATA={data}", "started": started,
                "seconds": round(time.time() - t0, 1), "git_sha": sha, "data": data, "budget_minutes": budget_minutes,
                "jobs": results}
    (out / "reproduce.json").write_text(json.dumps(manifest, indent=2))
    (out / "table.md").write_text(table)
    print(table, flush=True)
    bad = [r for r in results if r["status"] != "completed"]
    if bad:
        print(f"error: {len(bad)} of {len(results)} job(s) did not complete (see their logs)", file=sys.stderr)
    return manifest
