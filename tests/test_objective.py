"""The Hydra app returns the configured objective, so a sweeper (Optuna) can optimise it."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_cfg, has_optuna_sweeper

from sparsetune.objective import objective_value, worst_for
from sparsetune.validate import ConfigError, check

ROOT = Path(__file__).resolve().parents[1]


def record(**metrics):
    return {"status": "completed", "config": {"task": {"main_metric": "accuracy"}}, "metrics": metrics}


def test_auto_is_the_task_main_metric_then_lm_eval_then_perplexity():
    assert objective_value("auto", record(eval={"accuracy": 0.8, "loss": 0.4})) == 0.8
    assert objective_value("auto", record(accuracy=0.3)) == 0.3  # generation tasks (GSM8K) record it at the top
    assert objective_value("auto", record(harness={"rte": {"acc": 0.5}, "arc_easy": {"acc": 0.7}})) == pytest.approx(0.6)
    assert objective_value("auto", record(perplexity={"perplexity": 31.5})) == 31.5
    assert objective_value("metrics.eval.loss", record(eval={"accuracy": 0.8, "loss": 0.4})) == 0.4
    assert objective_value(None, record(eval={"accuracy": 0.8})) is None
    # a failed run, or a path the record lacks: NaN, or the worst value for a sweeper's direction
    assert math.isnan(objective_value("auto", {"status": "failed"}))
    assert math.isnan(objective_value("metrics.eval.f1", record(eval={"accuracy": 0.8})))
    assert objective_value("auto", {"status": "diverged"}, worst_for("maximize")) == -math.inf
    assert objective_value("auto", None, worst_for("minimize")) == math.inf and math.isnan(worst_for(None))


def test_bad_objective_is_a_config_error():
    with pytest.raises(ConfigError, match="objective must be auto, null or a dotted path"):
        check(compose_cfg(["model=tiny-bert", "debug=fast", "objective=accuracy"]))


def test_app_returns_the_main_metric(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sparsetune.cli import main_entry

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=["model=tiny-bert", "debug=fast", "method=lora", f"hydra.run.dir={tmp_path}/run"])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = f"{tmp_path}/run"
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # the task function gets the config without Hydra's node, as under hydra.main
    try:
        value = main_entry(cfg)
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    rec = json.loads((tmp_path / "run" / "results.json").read_text())
    assert rec["status"] == "completed"
    assert value == rec["metrics"]["eval"][rec["config"]["task"]["main_metric"]]


@pytest.mark.skipif(not has_optuna_sweeper(),
                    reason='needs the optional extra: pip install ".[optuna]"')
def test_optuna_lr_search_runs_trials_and_reports_the_best(tmp_path):
    out = subprocess.run([sys.executable, "train.py", "-m", "hparams_search=lr_optuna", "model=tiny-bert", "debug=fast",
                          "method=lora", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}/sweep"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    best = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert "train.lr" in best and "best_value" in best


@pytest.mark.skipif(not has_optuna_sweeper(), reason='needs the optional extra: pip install ".[optuna]"')
def test_optuna_search_goes_on_past_a_failed_trial(tmp_path):
    # every trial fails (SST-2 is not available offline without task.data_dir); each reports the worst value
    # (-inf) and the search still runs all its trials, where a NaN would have stopped it at the first
    out = subprocess.run([sys.executable, "train.py", "-m", "hparams_search=lr_optuna", "model=tiny-bert", "debug=fast",
                          "method=full", "task=glue/sst2", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}/sweep"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert "Trial 0 failed" not in out.stderr, out.stderr[-2000:]
    assert "best_value: -.inf" in (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert "totals: 2 failed" in out.stdout and out.returncode == 1
