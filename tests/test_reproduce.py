"""The paper-table grids: every job composes and passes the config checks, at both scales."""
from __future__ import annotations

import pytest
from conftest import compose_cfg

from sparsetune.tables.grids import TABLES
from sparsetune.tables.reproduce import expand, job_dir_name
from sparsetune.validate import check

GRIDS = [(name, scale, grid) for name, t in TABLES.items() for scale, grid in (("cpu", t.cpu), ("paper", t.paper_scale))
         if grid is not None]


@pytest.mark.parametrize("name,scale,grid", GRIDS, ids=[f"{n}-{s}" for n, s, _ in GRIDS])
def test_every_run_block_composes_and_passes_the_checks(tmp_path, name, scale, grid):
    jobs = expand(grid, str(tmp_path))
    for sub in ("glue", "e2e"):  # the data root the jobs name ({data}/glue must be a directory)
        (tmp_path / sub).mkdir()
    assert len({job_dir_name(j) for j in jobs}) == len(jobs)  # one run dir per job
    first_of_each_block, seen = [], set()
    for job in jobs:  # one job per distinct method/experiment keeps this fast
        key = tuple(o for o in job if o.split("=")[0] in ("method", "experiment", "mask_schedule"))
        if key not in seen:
            seen.add(key)
            first_of_each_block.append(job)
    for job in first_of_each_block:
        cfg = compose_cfg([o for o in job if not o.startswith(("task.data_files", "eval.perplexity.data_file"))])
        check(cfg)
        assert cfg.seed in grid.seeds


def test_a_cpu_grid_is_small_enough_for_the_machine():
    for name, t in TABLES.items():
        if t.cpu is not None:
            assert len(expand(t.cpu, "/data")) <= 60, name
        else:
            assert t.missing, f"{name}: say why there is no CPU miniature"


def test_every_table_has_a_make_target_and_a_readme_row():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    makefile, readme = (root / "Makefile").read_text(), (root / "README.md").read_text()
    targets = makefile.split("PAPER_TABLES :=")[1].split(".PHONY")[0].replace("\\", " ").split()
    assert sorted(targets) == sorted(TABLES)
    for name, spec in TABLES.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        cpu_cell = row.split(" | ")[2]
        assert cpu_cell == (f"{len(expand(spec.cpu, 'DATA'))} jobs" if spec.cpu else f"none: {spec.missing}"), row


def test_a_time_budget_records_the_jobs_it_did_not_start(tmp_path, monkeypatch):
    import json

    from sparsetune.tables import reproduce as rp

    ran = []

    def fake_job(overrides, run_dir, log_dir):
        ran.append(run_dir.name)
        monkeypatch.setattr(rp.time, "time", lambda: 1e12)  # the budget is spent after the first job
        return {"dir": str(run_dir), "overrides": overrides, "exit_code": 0, "status": "completed", "seconds": 1.0}

    monkeypatch.setattr(rp, "run_job", fake_job)
    monkeypatch.setattr(rp, "build_table", lambda name, grid, runs_dir: "(table)\n")
    manifest = rp.reproduce("spp-table5", "cpu", "/data", tmp_path, jobs=1, budget_minutes=5)
    assert len(ran) == 1 and [j["status"] for j in manifest["jobs"]] == ["completed", "not run", "not run", "not run"]
    saved = json.loads((tmp_path / "spp-table5" / "cpu" / "reproduce.json").read_text())
    assert saved["budget_minutes"] == 5 and saved["jobs"][1]["exit_code"] is None


def test_a_completed_job_is_reused_without_starting_train_py(tmp_path, monkeypatch):
    import json

    from sparsetune.tables import reproduce as rp

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"status": "completed"}))
    monkeypatch.setattr(rp.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started a job")))
    job = rp.run_job(["method=pst"], run_dir, tmp_path)
    assert job["status"] == "completed" and job["reused"] is True


def test_a_spent_budget_still_reuses_completed_jobs(tmp_path, monkeypatch):
    import json

    from sparsetune.tables import reproduce as rp
    from sparsetune.tables.grids import TABLES

    jobs = rp.expand(TABLES["spp-table5"].cpu, "/data")
    for overrides, status in ((jobs[-1], "completed"), (jobs[0], "interrupted")):  # the first was killed earlier
        run = tmp_path / "spp-table5" / "cpu" / "runs" / rp.job_dir_name(overrides)
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"status": status}))
    monkeypatch.setattr(rp, "git_sha", lambda: "abc1234")
    clock = iter([0.0])  # the start, then every later reading is past the budget
    monkeypatch.setattr(rp.time, "time", lambda: next(clock, 1e12))
    monkeypatch.setattr(rp.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started a job")))
    monkeypatch.setattr(rp, "build_table", lambda name, grid, runs_dir: "(table)\n")
    manifest = rp.reproduce("spp-table5", "cpu", "/data", tmp_path, jobs=1, budget_minutes=5)
    assert [j["status"] for j in manifest["jobs"]] == ["interrupted", "not run", "not run", "completed"]
    assert manifest["jobs"][-1]["reused"] is True and manifest["jobs"][0]["earlier_attempt"] is True


def test_an_nlg_table_stops_before_training_when_its_scorers_are_missing(tmp_path, monkeypatch):
    import pytest

    from sparsetune.evaluation import coco_caption
    from sparsetune.tables import reproduce as rp

    monkeypatch.setattr(coco_caption.shutil, "which", lambda name: None)  # no java
    monkeypatch.setattr(rp, "run_job", lambda *a: (_ for _ in ()).throw(AssertionError("started a job")))
    with pytest.raises(SystemExit, match="error: pst-table3 reports METEOR, ROUGE_L, CIDEr need pycocoevalcap and Java"):
        rp.reproduce("pst-table3", "cpu", "/data", tmp_path, jobs=1)
    assert not (tmp_path / "pst-table3").exists()  # nothing half-written
    rp.reproduce("pst-table3", "cpu", "/data", tmp_path, jobs=1, dry=True)  # a dry run prints the jobs anyway
