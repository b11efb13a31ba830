"""The run's log file (Hydra's <run dir>/train.log) holds the training log: loss, grad norm, lr and eval lines."""
import logging
import re
import subprocess
import sys
from pathlib import Path

from conftest import TINY

from sparsetune.train_logging import LogLines, format_logs

REPO = Path(__file__).resolve().parents[1]


def test_format_logs_is_one_key_value_line():
    assert format_logs({"loss": 0.6931471, "grad_norm": 0.25, "step_note": "x", "total_flos": 1e9}) == \
        "loss=0.693147 grad_norm=0.25 step_note=x"


def test_log_lines_go_to_the_sparsetune_logger(caplog):
    class State:
        is_world_process_zero, global_step = True, 7

    with caplog.at_level(logging.INFO, logger="sparsetune"):
        LogLines().on_log(None, State(), None, logs={"loss": 1.5, "learning_rate": 1e-3})
    assert [r.getMessage() for r in caplog.records if r.name == "sparsetune"] == ["step 7: loss=1.5 learning_rate=0.001"]


def test_cli_run_writes_its_log_lines_to_train_log(tmp_path):
    overrides = [o for o in TINY if not o.startswith("train.save_steps")] + ["method=full", "train.max_steps=4", "export=false"]
    proc = subprocess.run([sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "train.log").read_text()
    assert re.search(r"step 2: loss=[0-9.]+ grad_norm=[0-9.]+ learning_rate=", log), log
    assert re.search(r"step 4: eval_loss=[0-9.]+ eval_accuracy=", log), log  # the final evaluation too
