"""Every interruption leaves a true record. SIGTERM / SIGINT: `status: interrupted` with the last step and the
last complete checkpoint, exit 143 / 130, one line and no traceback. kill -9 inside a checkpoint save or
during the export: the record still says `running`, and `resume=auto` completes the run bit for bit as if it
had never stopped (train.py in subprocesses; tests/die_during.py kills at an exact point)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CONF, TINY, compose_cfg
from safetensors.torch import load_file

from sparsetune.run import run

ROOT = Path(CONF).parent
# 48 examples in batches of 8: 6 steps an epoch, so step 8 (the last) falls inside the second epoch, where
# Trainer resumed from the final checkpoint used to train a 9th step
SHORT = [*TINY, "method=magnitude", "method.sparsity=0.5", "task.max_train_samples=48"]


def start(args: list[str], run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args, f"hydra.run.dir={run_dir}"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not list((run_dir / "checkpoints").glob("checkpoint-*")):
        assert proc.poll() is None, f"ended before its first checkpoint: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("uninterrupted")
    return run(compose_cfg(SHORT), d), load_file(d / "model" / "model.safetensors")


def test_sigterm_and_sigint_record_interrupted_and_exit_143_and_130(tmp_path):
    long_run = ["train.py", *TINY, "method=full", "export=false", "train.max_steps=100000"]
    procs = {sig: start(long_run, tmp_path / sig.name) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig, proc in procs.items():
        wait_for_checkpoint(proc, tmp_path / sig.name)
        proc.send_signal(sig)
    for sig, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, err[-2000:]
        assert "Traceback" not in err
        said = [line for line in err.splitlines() if line.startswith("interrupted by")]
        assert len(said) == 1 and said[0].startswith(f"interrupted by {sig.name} at step ") and "resume=auto" in said[0]
        rec = record(tmp_path / sig.name)
        assert rec["status"] == "interrupted" and rec["interrupted_by"] == sig.name and rec["phase"] == "training"
        ckpt = Path(rec["last_checkpoint"])
        assert rec["last_step"] >= int(ckpt.name.split("-")[1]) >= 4 and (ckpt / "trainer_state.json").is_file()
        assert rec["process"]["pid"] == proc.pid and rec["ended"]


def test_kill_9_inside_a_save_or_during_export_then_resume_auto_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    whole, whole_weights = uninterrupted
    procs = {when: start(["tests/die_during.py", when, *SHORT], tmp_path / when.replace(":", "")) for when in ("save:2", "export")}
    for proc in procs.values():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
    saved, exporting = tmp_path / "save2", tmp_path / "export"

    # what kill -9 leaves: a record that says running, only complete checkpoints in view, no model
    assert record(saved)["status"] == record(exporting)["status"] == "running"
    assert sorted(p.name for p in (saved / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4"]
    assert sorted(p.name for p in (exporting / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert not (saved / "model").exists() and not (exporting / "model").exists()

    for run_dir, resumed_from, steps_left in ((saved, "checkpoint-4", 4), (exporting, "checkpoint-8", 0)):
        res = run(compose_cfg([*SHORT, "resume=auto"]), run_dir)  # the lock died with the killed process
        assert res["status"] == record(run_dir)["status"] == "completed"
        assert Path(res["timing"]["resumed_from"]).name == resumed_from
        assert res["timing"]["steps"] == 8 and res["timing"]["steps_this_process"] == steps_left
        assert res["previous_attempts"][0]["status"] == "running" and "killed" in res["previous_attempts"][0]["note"]
        weights = load_file(run_dir / "model" / "model.safetensors")
        assert weights.keys() == whole_weights.keys()
        for k in weights:
            assert torch.equal(weights[k], whole_weights[k]), (run_dir.name, k)
        assert res["metrics"]["eval"]["loss"] == whole["metrics"]["eval"]["loss"]
        assert res["method"]["mask_history"] == whole["method"]["mask_history"]
