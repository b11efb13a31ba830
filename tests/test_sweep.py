"""The multirun summary (sparsetune/sweep_summary.py): one line per job from the records of this sweep, totals,
exit code 1 when any job did not complete; through Hydra's own multirun machinery in-process (no training)."""
import json
import os
import sys
import time
from pathlib import Path

import hydra
import pytest
from conftest import CONF
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from sparsetune.sweep_summary import NO_RECORD, SweepSummary, main_metric


def write_job(sweep: Path, num: int, record: dict | None, hydra_yaml: bool = True, age_s: float = 0.0) -> Path:
    job = sweep / f"{num}_job"
    if hydra_yaml:
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    num: {num}\n")
    job.mkdir(parents=True, exist_ok=True)
    if record is not None:
        (job / "results.json").write_text(json.dumps({"run_dir": str(job), **record}))
    if age_s:
        past = time.time() - age_s
        for f in job.rglob("*"):
            os.utime(f, (past, past))
    return job


def completed(value: float, metric: str = "accuracy") -> dict:
    return {"status": "completed", "config": {"task": {"main_metric": metric}}, "metrics": {"eval": {metric: value}}}


def started_callback(sweep: Path) -> SweepSummary:
    cb = SweepSummary()
    cb.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    return cb


def test_every_status_gets_a_line_and_a_job_that_did_not_complete_exits_1(tmp_path, capsys):
    write_job(tmp_path, 9, completed(0.1), age_s=3600)  # an earlier sweep into the same dir: not this sweep's
    cb = started_callback(tmp_path)
    write_job(tmp_path, 0, completed(0.8125))
    write_job(tmp_path, 1, {"status": "failed", "error": "ConfigError: invalid configuration:\n  - method.sparsity must be in [0, 1)"})
    write_job(tmp_path, 2, {"status": "diverged", "error": "loss is nan at step 3"})
    write_job(tmp_path, 3, {"status": "interrupted"})
    write_job(tmp_path, 4, {"status": "running"})  # killed with -9: the running record stays
    write_job(tmp_path, 5, None)  # killed before run() wrote anything: only Hydra's job record
    stale = write_job(tmp_path, 6, completed(0.5), age_s=3600)  # this job's results.json is from an earlier sweep
    (stale / ".hydra" / "hydra.yaml").touch()
    with pytest.raises(SystemExit) as exit_:
        cb.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  #")}
    assert sorted(lines) == [f"#{n}" for n in range(7)]  # job 9 is not part of this sweep
    assert "completed" in lines["#0"] and "accuracy=0.8125" in lines["#0"] and lines["#0"].endswith("0_job")
    assert "failed" in lines["#1"] and "method.sparsity must be in [0, 1)" in lines["#1"]  # a multi-line error on one line
    assert "diverged" in lines["#2"] and "interrupted" in lines["#3"]
    assert all(NO_RECORD in lines[n] for n in ("#4", "#5", "#6"))
    assert f"totals: 1 completed, 1 failed, 1 diverged, 1 interrupted, 3 {NO_RECORD}" in out
    assert "6 of 7 job(s) did not complete" in err


def test_a_sweep_where_every_job_completed_returns_normally(tmp_path, capsys):
    cb = started_callback(tmp_path)
    write_job(tmp_path, 0, completed(0.25))
    write_job(tmp_path, 1, completed(31.5, "generation.bleu") | {"metrics": {"generation": {"bleu": 31.5}}})
    cb.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    out = capsys.readouterr().out
    assert "totals: 2 completed" in out and "generation.bleu=31.5000" in out


def test_a_sweep_that_left_no_record_is_not_a_success(tmp_path, capsys):
    cb = started_callback(tmp_path / "never-created")
    with pytest.raises(SystemExit):
        cb.on_multirun_end(OmegaConf.create({}))
    assert "no job left a record" in capsys.readouterr().err


def test_main_metric_reads_the_tasks_main_metric_and_says_when_missing():
    assert main_metric(completed(0.5, "f1")) == "f1=0.5000"
    assert main_metric({"config": {"task": {"main_metric": "f1"}}, "metrics": {"eval": {"f1": None}}}) == "f1=n/a"
    assert main_metric({"dry_run": True, "status": "completed"}) == "dry run"


def test_train_yaml_configures_the_callback_and_single_runs_do_not_use_it():
    cfg = compose_cfg_with_hydra()
    cb = hydra.utils.instantiate(cfg.hydra.callbacks.sweep_summary)
    assert isinstance(cb, SweepSummary)
    for hook in ("on_run_start", "on_run_end", "on_job_start", "on_job_end"):
        assert getattr(SweepSummary, hook) is getattr(Callback, hook), hook  # no-ops: single runs are unaffected


def compose_cfg_with_hydra():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", return_hydra_config=True)


def test_hydra_multirun_prints_the_summary_and_exits_1_through_hydra_main(tmp_path, monkeypatch, capsys):
    """Hydra's own multirun (sweeper, launcher, callbacks, run_and_report) with a task that writes records directly:
    SystemExit(1) from on_multirun_end must leave hydra.main."""

    @hydra.main(version_base="1.3", config_path=CONF, config_name="train")
    def task(cfg):
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        status = "failed" if cfg.seed == 2 else "completed"
        record = completed(0.5) if status == "completed" else {"status": status, "error": "ValueError: seed 2"}
        (run_dir / "results.json").write_text(json.dumps({"run_dir": str(run_dir), **record}))

    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "seed=1,2,3", f"hydra.sweep.dir={tmp_path}",
                                      "hydra/job_logging=none", "hydra/hydra_logging=none"])
    try:
        with pytest.raises(SystemExit) as exit_:
            task()
    finally:
        HydraConfig.instance().cfg = None  # later tests must not see this sweep's Hydra job config
        GlobalHydra.instance().clear()
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "totals: 2 completed, 1 failed" in out and "ValueError: seed 2" in out
    assert "#1   failed" in out
