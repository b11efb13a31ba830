"""The record and the run dir: valid JSON whatever the numbers, never overwritten by accident, resumed only
with the same config (or forced, and recorded), one process per dir, unique default dirs, a full disk or an
unwritable dir as one line, a diverged run recorded as such."""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF, TINY
from omegaconf import OmegaConf
from transformers import Trainer, TrainerCallback

from sparsetune import records
from sparsetune.checkpoints import last_complete_checkpoint
from sparsetune.divergence import Diverged
from sparsetune.run import run
from sparsetune.run_dir import RunDirError, claimed
from sparsetune.run_names import PROCESS_TOKEN, fresh_run_dir

ROOT = Path(CONF).parent


class KillAt(TrainerCallback):
    """Ctrl-C after optimizer step `step` (the run records itself as interrupted)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated Ctrl-C at step {self.step}")


def strict_json(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


# ---- results.json ------------------------------------------------------------------------------------
def test_non_finite_numbers_are_written_as_null_with_a_note(tmp_path):
    old = os.umask(0o022)
    try:
        records.write_results(tmp_path, {"metrics": {"eval": {"loss": float("nan"), "accuracy": 0.5}},
                                          "log": [{"loss": float("inf")}], "norm": torch.tensor(float("-inf")),
                                          "steps": torch.tensor(3)})
    finally:
        os.umask(old)
    rec = strict_json(tmp_path / "results.json")
    assert rec["metrics"]["eval"] == {"loss": None, "accuracy": 0.5} and rec["log"] == [{"loss": None}]
    assert rec["norm"] is None and rec["steps"] == 3
    assert rec["non_finite"]["fields"] == ["metrics.eval.loss (nan)", "log[0].loss (inf)", "norm (-inf)"]
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_record_and_leaves_no_temp_file(tmp_path, monkeypatch):
    records.write_results(tmp_path, {"status": "completed"})
    before = (tmp_path / "results.json").read_bytes()

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(records.json, "dump", full)
    with pytest.raises(OSError):
        records.write_results(tmp_path, {"status": "failed"})
    assert (tmp_path / "results.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


# ---- an occupied run dir -----------------------------------------------------------------------------
def test_occupied_dir_is_refused_kept_returned_when_completed_and_replaced_only_on_request(tiny_cfg, tmp_path, capsys):
    d = tmp_path / "run"
    first = run(tiny_cfg("method=magnitude", "method.sparsity=0.5"), d)
    before = (d / "results.json").read_bytes()

    with pytest.raises(RunDirError, match="already holds results.json, checkpoints, model, model-compressed .*resume=auto.*overwrite=true"):
        run(tiny_cfg("method=magnitude", "method.sparsity=0.5"), d)
    with pytest.raises(RunDirError, match=r"method.sparsity: 0.5 -> 0.3"):
        run(tiny_cfg("method=magnitude", "method.sparsity=0.3", "resume=auto"), d)
    with pytest.raises(RunDirError, match="completed"):  # forcing cannot make a completed run another one
        run(tiny_cfg("method=magnitude", "method.sparsity=0.3", "resume=auto", "force_resume=true"), d)
    assert (d / "results.json").read_bytes() == before

    # resume=auto on the completed run: the recorded result, nothing retrained
    ckpt_mtime = (d / "checkpoints" / "checkpoint-8" / "trainer_state.json").stat().st_mtime_ns
    again = run(tiny_cfg("method=magnitude", "method.sparsity=0.5", "resume=auto", "hardware.num_threads=1"), d)
    assert "already completed" in capsys.readouterr().out
    assert again == json.loads(before) and again["metrics"] == json.loads(json.dumps(first["metrics"]))
    assert (d / "checkpoints" / "checkpoint-8" / "trainer_state.json").stat().st_mtime_ns == ckpt_mtime
    assert (d / "results.json").read_bytes() == before

    replaced = run(tiny_cfg("method=magnitude", "method.sparsity=0.3", "overwrite=true"), d)
    rec = strict_json(d / "results.json")
    assert replaced["status"] == rec["status"] == "completed" and rec["sparsity"]["target"] == 0.3
    assert rec["overwrote"]["removed"] == ["results.json", "checkpoints", "model", "model-compressed"]
    assert rec["overwrote"]["previous_status"] == "completed"


def test_resume_with_a_changed_config_is_refused_unless_forced_and_then_recorded(tiny_cfg, tmp_path):
    d = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg("method=magnitude", "method.sparsity=0.5"), d, callbacks=[KillAt(6)])
    rec = strict_json(d / "results.json")
    assert rec["status"] == "interrupted" and rec["interrupted_by"] == "SIGINT" and rec["last_step"] == 6
    assert rec["last_checkpoint"] == str(d / "checkpoints" / "checkpoint-4") and rec["phase"] == "training"
    before = (d / "results.json").read_bytes()
    saved_history = json.loads((d / "checkpoints" / "checkpoint-4" / "method_state.json").read_text())["history"]
    assert saved_history, "the checkpoint carries the mask updates made before it"

    with pytest.raises(RunDirError, match=r"method.sparsity: 0.5 -> 0.3.*force_resume=true"):
        run(tiny_cfg("method=magnitude", "method.sparsity=0.3", "resume=auto"), d)
    assert (d / "results.json").read_bytes() == before

    res = run(tiny_cfg("method=magnitude", "method.sparsity=0.3", "resume=auto", "force_resume=true"), d)
    rec = strict_json(d / "results.json")
    assert res["status"] == rec["status"] == "completed" and rec["timing"]["resumed_from"].endswith("checkpoint-4")
    assert rec["resume_forced"] is True
    changes = {c["key"]: c for c in rec["resume_config_changes"]}
    assert changes["method.sparsity"] == {"key": "method.sparsity", "recorded": 0.5, "now": 0.3, "alters_result": True}
    assert changes["resume"]["alters_result"] is False
    assert [a["status"] for a in rec["previous_attempts"]] == ["interrupted"]
    # the mask updates made before the checkpoint are still in the history, the resumed run's follow them
    history = rec["method"]["mask_history"]
    assert history[:len(saved_history)] == saved_history and history[-1]["step"] > saved_history[-1]["step"] >= 3


def test_speft_mask_update_history_survives_resume(tiny_cfg, tmp_path):
    speft = ("method=speft", "mask_schedule=dynamic", "mask_schedule.update_every=3", "salience=gradient",
             "salience.num_batches=2")
    whole = run(tiny_cfg(*speft, "export=false"), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(*speft, "export=false"), tmp_path / "cut", callbacks=[KillAt(6)])
    resumed = run(tiny_cfg(*speft, "export=false", "resume=auto"), tmp_path / "cut")
    assert resumed["timing"]["resumed_from"].endswith("checkpoint-4")

    def updates(res):
        return [{k: v for k, v in h.items() if k != "salience_seconds"} for h in res["method"]["mask_updates"]]
    assert [h["step"] for h in updates(resumed)] == [0, 3, 6]
    assert updates(resumed) == updates(whole)


# ---- one run per dir, unique default dirs ------------------------------------------------------------
def test_a_second_run_into_a_locked_dir_is_refused_naming_the_holder(tiny_cfg, tmp_path):
    d = tmp_path / "run"
    with claimed(d):
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {os.getpid()} on .*\)"):
            run(tiny_cfg("method=full"), d)
    assert not (d / "results.json").exists()


def test_default_run_dir_names_are_unique_and_stable_per_process():
    cfg = OmegaConf.create({"dir": "out/${run_token:}"})
    assert cfg.dir == cfg.dir == f"out/{PROCESS_TOKEN}" and len(PROCESS_TOKEN) == 6
    assert fresh_run_dir("out", "pst", "sst2") != fresh_run_dir("out", "pst", "sst2")


def test_cli_runs_started_together_without_a_run_dir_get_a_dir_each_and_a_diverged_one_exits_3(tmp_path):
    """Three train.py runs in the same second into one output root: two complete, one diverges (exit 3, one line,
    its record says diverged and it exported nothing); no run lands in another's dir."""
    cmd = [sys.executable, "train.py", *TINY, "method=full", f"paths.output_root={tmp_path}"]
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in (cmd, cmd, [*cmd, "train.lr=1e6"])]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 3], [e[-2000:] for _, e in outs]
    diverged_err = outs[2][1]
    assert "Traceback" not in diverged_err
    said = [line for line in diverged_err.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and said[0].startswith("error: run diverged at step "), said
    found = {f.parent: strict_json(f) for f in tmp_path.glob("*/*/results.json")}
    assert sorted(r["status"] for r in found.values()) == ["completed", "completed", "diverged"]
    assert [(d / "model").is_dir() for d, r in found.items() if r["status"] == "diverged"] == [False]


def test_cli_unwritable_run_dir_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "train.py", *TINY, f"hydra.run.dir={blocker / 'run'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: cannot write {blocker / 'run'} (Not a directory): choose a writable " \
                                  "hydra.run.dir or paths.output_root"


# ---- storage faults ----------------------------------------------------------------------------------
def test_unwritable_run_dir_is_one_line_naming_the_path(tiny_cfg, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunDirError, match=f"cannot write {blocker / 'run'} .*writable hydra.run.dir"):
        run(tiny_cfg("method=full"), blocker / "run")


@pytest.mark.parametrize("fault", ["errno", "torch-short-write"])
def test_full_disk_while_saving_a_checkpoint(tiny_cfg, tmp_path, monkeypatch, fault):
    def full(self, output_dir):
        if fault == "errno":
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(output_dir, "optimizer.pt"))
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 213056 vs 212944")
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full)
    if fault == "torch-short-write":  # torch says nothing about space: the disk is seen to be full
        import sparsetune.run_dir
        monkeypatch.setattr(sparsetune.run_dir.shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    d = tmp_path / "run"
    with pytest.raises(RunDirError, match=f"no space left on the disk holding {d}.*free some space"):
        run(tiny_cfg("method=full"), d)
    rec = strict_json(d / "results.json")
    assert rec["status"] == "failed" and rec["error"].startswith("no space left") and rec["last_step"] == 4
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == []  # no partial checkpoint, no staging dir
    assert not list(d.glob(".results.*"))


def test_incomplete_checkpoints_are_skipped_with_a_note(tmp_path, caplog):
    for step in (4, 8, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text("{}")
    (tmp_path / ".staging" / "checkpoint-16").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="sparsetune"):
        assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-12" in caplog.text


# ---- divergence ---------------------------------------------------------------------------------------
def test_a_diverged_run_is_recorded_as_diverged_and_exports_nothing(tiny_cfg, tmp_path):
    d = tmp_path / "run"
    with pytest.raises(Diverged) as caught:
        run(tiny_cfg("method=full", "train.lr=1e6"), d)
    rec = strict_json(d / "results.json")
    assert rec["status"] == "diverged" and rec["diverged_at_step"] == caught.value.step is not None
    assert rec["error"].startswith(f"run diverged at step {caught.value.step}: ")
    assert not (d / "model").exists() and not (d / ".model.partial").exists()


class PoisonFrozenWeight(TrainerCallback):
    """After training: NaN into a frozen base weight, which only the check of the merged model can see."""

    def on_train_end(self, args, state, control, model=None, **kw):
        frozen = next(p for p in model.parameters() if not p.requires_grad and p.dim() == 2)
        with torch.no_grad():
            frozen[0, 0] = float("nan")


def test_a_non_finite_merged_model_is_diverged_before_evaluation_and_export(tiny_cfg, tmp_path):
    d = tmp_path / "run"
    with pytest.raises(Diverged, match="non-finite weights in .* at step 8"):
        run(tiny_cfg("method=lora"), d, callbacks=[PoisonFrozenWeight()])
    rec = strict_json(d / "results.json")
    assert rec["status"] == "diverged" and rec["diverged_at_step"] == 8 and rec["phase"] == "evaluating"
    assert "metrics" not in rec and not (d / "model").exists()


def test_resume_accepts_keys_the_schema_gained_since_the_record_at_their_defaults():
    from sparsetune.run_dir import config_changes

    recorded = {"train": {"lr": 1e-3}, "method": {"name": "spp"}}
    now = {"train": {"lr": 1e-3, "select": "last", "warmup_steps": 5}, "method": {"name": "spp", "zero_init": "alpha",
                                                                                  "use_beta": True}}
    altering = {c["key"] for c in config_changes(recorded, now) if c["alters_result"]}
    assert altering == {"train.warmup_steps", "method.zero_init"}  # new keys away from their defaults still count
