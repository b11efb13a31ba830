"""Hydra callback: check the run dir before Hydra itself writes into it (.hydra/, the log file).

Hydra creates the run dir and rewrites .hydra/*.yaml before the task starts, so without this an unwritable
dir or a full disk ends in Hydra's traceback, and a refused rerun would replace the earlier run's .hydra/
files. Refusals are one line and exit code 2; run() checks again under the run dir's lock.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .run_dir import RunDirError, check_writable, claimed, plan


def _refuse(e: RunDirError) -> None:
    print(f"error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(2)  # not an Exception: Hydra's callback runner would swallow one


class RunDirCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        try:
            check_writable(run_dir)
            task_cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
            try:
                resolved = OmegaConf.to_container(task_cfg, resolve=True)
            except Exception:  # a config error: the task's own checks report it
                return
            with claimed(run_dir):  # a dir in use by a live run is named as such
                plan(task_cfg, run_dir, resolved)
        except RunDirError as e:
            _refuse(e)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_writable(Path(str(config.hydra.sweep.dir)))
        except RunDirError as e:
            _refuse(e)
