"""<run dir>/history.jsonl (one line per Trainer log, with the method's sparsity), resume-safe; and the trackers of
logger=tensorboard / logger=wandb (offline) getting the resolved config and train/sparsity."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from sparsetune.history import HISTORY_FILE, TrainingHistory, keep_until, read_history
from sparsetune.run import run
from sparsetune.trackers import flat_hparams


class State:
    def __init__(self, step, main=True):
        self.global_step, self.epoch, self.is_world_process_zero = step, step / 8, main


class ScheduledMethod:
    """What a scheduled-mask method exposes: scheduled(step) and achieved() over its mask layers."""

    layers = {"q": object()}

    def scheduled(self, step):
        return step / 10

    def achieved(self):
        return 0.25

    def target_sparsity(self):
        return 0.9


class OneShotMethod:  # pruned before training (SPP, LoRA*) or dense: only a constant target
    def target_sparsity(self):
        return 0.5


def test_each_log_is_one_line_with_kind_and_the_sparsity_of_the_masks_in_effect(tmp_path):
    cb = TrainingHistory(tmp_path / HISTORY_FILE, ScheduledMethod())
    cb.on_train_begin(None, State(0), None)
    logs = {"loss": 0.7, "grad_norm": 1.5, "learning_rate": 1e-3}
    cb.on_log(None, State(3), None, logs=logs)
    cb.on_log(None, State(4), None, logs={"eval_validation_accuracy": 0.5})
    cb.on_log(None, State(4), None, logs={"train_runtime": 1.0, "train_loss": 0.6})
    cb.on_train_end(None, State(4), None)
    cb.on_log(None, State(4), None, logs={"eval_accuracy": 0.75})
    lines = read_history(tmp_path / HISTORY_FILE)
    assert [(e["step"], e["kind"]) for e in lines] == [(3, "train"), (4, "eval"), (4, "train_end"), (4, "final_eval")]
    # during training the masks in effect were set before the last step (for step - 1); after it, for the last step
    assert [e["sparsity"] for e in lines] == [0.2, 0.3, 0.3, 0.4]
    assert lines[0] == {"step": 3, "epoch": 3 / 8, "kind": "train", "loss": 0.7, "grad_norm": 1.5,
                        "learning_rate": 1e-3, "sparsity": 0.2, "sparsity_measured": 0.25}
    assert lines[3]["eval_accuracy"] == 0.75
    # only a training log carries the sparsity on to the trackers (once per logging step, as train/sparsity)
    assert logs["sparsity"] == 0.2 and logs["sparsity_measured"] == 0.25


def test_methods_without_a_schedule_log_their_constant_target_and_no_measurement(tmp_path):
    cb = TrainingHistory(tmp_path / HISTORY_FILE, OneShotMethod())
    cb.on_log(None, State(2), None, logs={"loss": 1.0})
    assert read_history(tmp_path / HISTORY_FILE) == [
        {"step": 2, "epoch": 0.25, "kind": "train", "loss": 1.0, "sparsity": 0.5}]


def test_only_the_main_process_writes(tmp_path):
    cb = TrainingHistory(tmp_path / HISTORY_FILE, OneShotMethod())
    cb.on_train_begin(None, State(0, main=False), None)
    cb.on_log(None, State(2, main=False), None, logs={"loss": 1.0})
    assert not (tmp_path / HISTORY_FILE).exists()


def test_a_fresh_run_starts_the_file_anew_and_a_resumed_one_keeps_it_up_to_its_checkpoint(tmp_path):
    path = tmp_path / HISTORY_FILE
    old = [{"step": s, "kind": "train", "loss": 1.0 / s} for s in (1, 2, 4, 6)] + \
          [{"step": 4, "kind": "eval", "eval_loss": 0.5}, {"step": 4, "kind": "final_eval", "eval_loss": 0.5}]
    path.write_text("".join(json.dumps(e) + "\n" for e in old) + '{"step": 8, "kind": "tr')  # torn by a kill
    resumed = TrainingHistory(path, OneShotMethod(), resuming=True)
    resumed.on_train_begin(None, State(4), None)  # resumed from checkpoint-4
    # past the checkpoint and an earlier attempt's ending are gone; the training lines up to step 4 stay
    assert read_history(path) == old[:3] + [old[4]]
    resumed.on_log(None, State(6), None, logs={"loss": 0.1})
    assert [e["step"] for e in read_history(path)] == [1, 2, 4, 4, 6]

    fresh = TrainingHistory(path, OneShotMethod())
    fresh.on_train_begin(None, State(0), None)
    assert not path.exists()
    keep_until(path, 3)  # nothing to keep: an empty file, no error
    assert read_history(path) == []


# ---- real runs --------------------------------------------------------------------------------------------
EVERY_4 = ("train.eval_strategy=steps", "train.eval_steps=4", "export=false")


def test_tensorboard_run_has_history_sparsity_scalar_and_config(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    res = run(tiny_cfg("method=pst", "method.sparsity=0.5", "logger=tensorboard", *EVERY_4), tmp_path)
    assert res["status"] == "completed" and res["history_file"] == HISTORY_FILE
    lines = read_history(tmp_path / HISTORY_FILE)
    train = [e for e in lines if e["kind"] == "train"]
    assert [e["step"] for e in train] == [1, 2, 4, 6, 8]  # logging_first_step, then every 2 steps
    assert all({"loss", "grad_norm", "learning_rate", "epoch", "sparsity", "sparsity_measured"} <= set(e) for e in train)
    assert [e["step"] for e in lines if e["kind"] == "eval"] == [4, 8]
    assert all("eval_validation_accuracy" in e for e in lines if e["kind"] == "eval")
    assert [e["kind"] for e in lines[-2:]] == ["train_end", "final_eval"]
    sched = [e["sparsity"] for e in train]
    assert sched == sorted(sched) and sched[0] == 0.0 and sched[-1] == 0.5  # warm-up, cubic ramp, target
    for e in train:  # the masks hold what the schedule asked, up to one weight per matrix of rounding
        assert e["sparsity_measured"] == pytest.approx(e["sparsity"], abs=2e-3)
    assert [h["step"] for h in res["train_log"]] == [1, 2, 4, 6, 8]  # results.json keeps its short tail

    events = sorted(tmp_path.glob("checkpoints/runs/*/events.out.tfevents.*"))
    assert events, "logger=tensorboard wrote no event file under <run dir>/checkpoints/runs/"
    acc = EventAccumulator(str(events[0].parent), size_guidance={"tensors": 0})
    acc.Reload()
    assert [(s.step, round(s.value, 6)) for s in acc.Scalars("train/sparsity")] == \
        [(e["step"], round(e["sparsity"], 6)) for e in train]
    config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: pst" in config_text and "sparsity: 0.5" in config_text
    meta = acc.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    hp = plugin_data_pb2.HParamsPluginData.FromString(meta).session_start_info.hparams
    assert hp["method.name"].string_value == "pst" and hp["method.sparsity"].number_value == 0.5
    assert hp["train.max_steps"].number_value == 8


class KillAfterLog(TrainerCallback):
    """Ctrl-C right after step `step` is logged (so the history holds a line past the last checkpoint)."""

    def __init__(self, step):
        self.step = step

    def on_log(self, args, state, control, logs=None, **kw):
        if state.global_step == self.step and "loss" in (logs or {}):
            raise KeyboardInterrupt(f"simulated Ctrl-C at step {self.step}")


def test_a_resumed_run_continues_the_history_as_if_never_interrupted(tiny_cfg, tmp_path):
    args = ("method=magnitude", "method.sparsity=0.5", "export=false")
    run(tiny_cfg(*args), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(*args), tmp_path / "cut", callbacks=[KillAfterLog(6)])
    assert [e["step"] for e in read_history(tmp_path / "cut" / HISTORY_FILE)] == [1, 2, 4, 6]  # checkpoint-4 is the last
    res = run(tiny_cfg(*args, "resume=auto"), tmp_path / "cut")
    assert res["timing"]["resumed_from"].endswith("checkpoint-4")
    whole, cut = (read_history(tmp_path / d / HISTORY_FILE) for d in ("whole", "cut"))
    assert [(e["step"], e["kind"]) for e in cut] == [(e["step"], e["kind"]) for e in whole]
    for a, b in zip(whole, cut):
        assert set(a) == set(b)
        for key in set(a) & {"loss", "learning_rate", "sparsity", "sparsity_measured", "eval_accuracy"}:
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a, b, key)


def wandb_records(path: Path) -> list:
    """The protobuf records of a .wandb file (a LevelDB-style log: 7-byte header, 32 KiB blocks, records split into
    FULL / FIRST / MIDDLE / LAST chunks). wandb 0.31 ships no Python reader for it."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, chunk, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            records.append(pb.Record.FromString(chunk))
            chunk = b""
    return records


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The records once the file holds the run's exit: wandb.finish() returns before wandb-core has written the
    file (measured: 7 bytes, its header, right after finish; the whole run within 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def test_wandb_offline_run_in_the_run_dir_holds_the_config_and_sparsity(tiny_cfg, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    try:
        res = run(tiny_cfg("method=pst", "method.sparsity=0.5", "logger=wandb", "export=false"), tmp_path)
    finally:
        wandb.finish()  # a process's run ends at exit or at the next run's setup; the test reads it now
    assert res["status"] == "completed"
    offline = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1, list(tmp_path.rglob("*"))
    records = finished_records(offline[0])
    run_rec = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_rec.project == "sparsetune"
    # the config given to wandb.init rides in the run record; the Trainer's additions come as config records
    updates = [*run_rec.config.update, *(u for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update)]
    config = {u.key: json.loads(u.value_json) for u in updates}
    assert config["learning_rate"] == 1e-3  # TrainingArguments, added by transformers' WandbCallback
    assert config["method"]["name"] == "pst" and config["method"]["sparsity"] == 0.5
    assert config["train"]["max_steps"] == 8 and config["logger"]["name"] == "wandb"
    logged = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
              for r in records if r.WhichOneof("record_type") == "history"]
    sparsity = [(h["train/global_step"], h["train/sparsity"]) for h in logged if "train/sparsity" in h]
    train = [e for e in read_history(tmp_path / HISTORY_FILE) if e["kind"] == "train"]
    assert sparsity == [(e["step"], pytest.approx(e["sparsity"])) for e in train] and sparsity[-1][1] == 0.5


def test_tensorboard_hparams_take_flat_scalar_values():
    assert flat_hparams({"a": {"b": 1, "c": None}, "d": [1, 2], "e": "x", "f": True}) == \
        {"a.b": 1, "a.c": "null", "d": "[1, 2]", "e": "x", "f": True}
