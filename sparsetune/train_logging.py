"""Trainer log dicts as log lines, so the run's log file (Hydra's <run dir>/train.log) records the training."""
from __future__ import annotations

import logging

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

log = logging.getLogger("sparsetune")


def format_logs(logs: dict) -> str:
    shown = {k: v for k, v in logs.items() if k != "total_flos"}
    return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


class LogLines(TrainerCallback):
    """Every Trainer log (loss, learning rate, grad norm, evaluation metrics) as one INFO line with its step."""

    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs:
            log.info("step %d: %s", state.global_step, format_logs(logs))


def lines_are_shown() -> bool:
    """Whether LogLines' INFO lines reach a handler (under Hydra they go to the console and train.log)."""
    return log.isEnabledFor(logging.INFO) and log.hasHandlers()


class BarOnlyProgress(ProgressCallback):
    """Trainer's progress bars; the log dicts it would also print are left to LogLines where those lines are
    shown, so the console does not get every log twice. Without configured logging it prints them as before."""

    def on_log(self, args, state, control, logs=None, **kw):
        if not lines_are_shown():
            super().on_log(args, state, control, logs=logs, **kw)
