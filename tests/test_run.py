"""End-to-end runs of run(cfg) on tiny models: the record, GLUE files, dry runs, bad input, sweeps."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONF, compose_cfg

from sparsetune.hub import OfflineError
from sparsetune.run import run
from sparsetune.validate import ConfigError

ROOT = Path(CONF).parent


def test_tiny_run_writes_the_full_record(tiny_cfg, tmp_path):
    res = run(tiny_cfg("method=magnitude", "method.sparsity=0.5"), tmp_path)
    rec = json.loads((tmp_path / "results.json").read_text())
    assert rec["status"] == "completed" and res["status"] == "completed"
    for key in ("config", "metrics", "params", "sparsity", "timing", "memory", "env", "data"):
        assert key in rec, key
    assert {"loss", "accuracy"} <= set(rec["metrics"]["eval"]) and rec["metrics"]["train_loss"] is not None
    assert rec["params"]["trainable"] == rec["params"]["total"] > 0
    assert rec["sparsity"]["target"] == 0.5 and rec["sparsity"]["max_abs_count_error_per_matrix"] == 0
    assert abs(rec["sparsity"]["achieved"] - 0.5) < 1e-3 and len(rec["sparsity"]["per_layer"]) == 12
    assert rec["timing"]["steps"] == 8 and rec["timing"]["seconds_per_step"] > 0
    assert rec["memory"]["peak_rss_mb"] > 0
    assert rec["env"]["seed"] == 42 and rec["env"]["packages"]["torch"].startswith("2.13")
    assert rec["data"]["num_train"] == 64 and rec["data"]["max_length"] == 64
    assert rec["export"]["reload_same_zeros"] and rec["export"]["reload_max_abs_diff"] < 1e-5
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_record_names_the_code_the_run_started_from(tiny_cfg, tmp_path, monkeypatch):
    """A long job outlives a checkout that moves under it: env.git_sha is the commit at its start, and the record
    says where the checkout stood at the end."""
    from sparsetune import records

    shas = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(records, "git_sha", lambda: next(shas))
    rec = run(tiny_cfg("method=full", "train.max_steps=2"), tmp_path)
    assert rec["env"]["git_sha"] == "a" * 40 and rec["env"]["git_sha_at_end"] == "b" * 40
    monkeypatch.setattr(records, "git_sha", lambda: "c" * 40)
    rec = run(tiny_cfg("method=full", "train.max_steps=2"), tmp_path / "still")
    assert rec["env"]["git_sha"] == "c" * 40 and "git_sha_at_end" not in rec["env"]


def test_glue_original_layout_run(tiny_cfg, tmp_path):
    sst = tmp_path / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = "".join(f"{'a charming film' if i % 2 else 'a dull mess'} {i} \t{i % 2}\n" for i in range(40))
    for f in ("train.tsv", "dev.tsv"):
        (sst / f).write_text("sentence\tlabel\n" + rows)
    res = run(tiny_cfg("method=full", "task=glue/sst2", f"task.data_dir={tmp_path / 'glue'}", "task.max_eval_samples=16"),
              tmp_path / "run")
    assert res["data"]["num_train"] == 40 and res["data"]["num_eval"] == {"validation": 16}
    assert "GLUE layout" in res["data"]["source"] and 0.0 <= res["metrics"]["eval"]["accuracy"] <= 1.0
    assert res["sparsity"]["target"] == 0.0


def test_dry_run_counts_bert_base_on_meta(tmp_path):
    res = run(compose_cfg(["model=bert-base-uncased", "method=full", "task=glue/sst2", "dry_run=true"]), tmp_path)
    assert res["params"]["total"] == 109_483_778  # BERT-base + 2-way classifier, from the config alone
    assert json.loads((tmp_path / "results.json").read_text())["dry_run"] is True


@pytest.mark.parametrize("override,match", [
    ("method.sparsity=1.5", r"method.sparsity must be in \[0, 1\)"),
    ("train.batch_size=0", "train.batch_size=0 must be > 0"),
    ("mask_schedule.warmup=0.6", "their sum must be < 1"),
    ("train.warmup_ratio=1.2", r"warmup_ratio=1.2 must be in \[0, 1\)"),
])
def test_bad_numbers_fail_early_with_what_is_allowed(tiny_cfg, tmp_path, override, match):
    t0 = time.time()
    with pytest.raises(ValueError, match=match):
        run(tiny_cfg("mask_schedule.cooldown=0.6", override) if "warmup=" in override else tiny_cfg(override), tmp_path)
    assert time.time() - t0 < 30
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"
    assert not (tmp_path / "checkpoints").exists()  # failed before any training step


def test_unreachable_hub_names_the_local_option(tmp_path):
    with pytest.raises(OfflineError, match="model.path"):
        run(compose_cfg(["model=bert-base-uncased", "train.max_steps=2"]), tmp_path / "m")
    with pytest.raises(OfflineError, match="task.data_dir"):
        run(compose_cfg(["model=tiny-bert", "task=glue/rte", "train.max_steps=2"]), tmp_path / "d")
    with pytest.raises(ConfigError, match="task.data_dir=.* is not a directory"):
        run(compose_cfg(["model=tiny-bert", "task=glue/rte", "task.data_dir=/nonexistent"]), tmp_path / "x")


def test_cli_multirun_failed_job_does_not_stop_the_sweep(tmp_path):
    cmd = [sys.executable, "train.py", "-m", "model=tiny-bert", "debug=fast", "method=magnitude",
           "method.sparsity=0.5,1.5,0.3", "export=false", "mask_schedule=constant", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # the sweep went on, and its exit code says a job failed
    status = {p.parent.name.split("_")[0]: json.loads(p.read_text())["status"] for p in tmp_path.glob("*/results.json")}
    assert status == {"0": "completed", "1": "failed", "2": "completed"}
    assert "totals: 2 completed, 1 failed" in proc.stdout and "method.sparsity must be in [0, 1)" in proc.stdout


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "model=tiny-bert", "method.sparsity=1.0", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "method.sparsity must be in [0, 1)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wandb_logger_works_offline(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    res = run(tiny_cfg("method=full", "logger=wandb", "train.max_steps=2", "export=false"), tmp_path)
    assert res["status"] == "completed"
    assert list((tmp_path / "wandb").glob("offline-run-*")), "wandb wrote no offline run into the run dir"


def test_eval_on_start_records_the_untrained_metrics(tiny_cfg, tmp_path):
    res = run(tiny_cfg("method=full", "train.eval_on_start=true", "export=false"), tmp_path)
    start, end = res["metrics"]["eval_start"], res["metrics"]["eval"]
    assert {"loss", "accuracy"} <= set(start) and start["loss"] != end["loss"]


def test_local_model_dir_and_local_jsonl_files(tiny_cfg, tmp_path):
    # a run's exported model directory serves as a "local copy" of a hub model (model.path)
    first = run(tiny_cfg("method=full", "train.max_steps=2"), tmp_path / "first")
    rows = [{"sentence": f"{'a charming film' if i % 2 else 'a dull mess'} {i}", "label": i % 2} for i in range(24)]
    files = {}
    for split in ("train", "validation"):
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("\n".join(json.dumps(r) for r in rows))
    cfg = tiny_cfg("method=magnitude", "method.sparsity=0.5", "model=bert-base-uncased", f"model.path={first['export']['dir']}",
                   "task=glue/sst2", f"task.data_files={{train: {files['train']}, validation: {files['validation']}}}")
    res = run(cfg, tmp_path / "second")
    assert res["model"]["source"] == "local" and res["model"]["location"] == first["export"]["dir"]
    assert res["data"]["num_train"] == 24 and res["data"]["source"].startswith("files")
    assert res["sparsity"]["max_abs_count_error_per_matrix"] == 0
