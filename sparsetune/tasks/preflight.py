"""The data preflight: the task's local data files, read and checked before torch, transformers and the
model load, so a corrupt file fails in about a second with the loader's own `file:line` message.

Each task family's stdlib part (the readers, the column / label / answer checks) is shared with its loader,
so the checks and messages are the same code; what the preflight read is kept for the loader
(read_cache.py), so a run still parses each file once with them (datasets, which the loaders then load the
file with, parses it on its first run only). Hub data is left to the loader, as are dry runs, which load
no data."""
from __future__ import annotations

from omegaconf import DictConfig

from ..errors import ConfigError
from . import code_feedback_files, data_to_text_files, glue_local, instruction_files, math_files, oasst_files
from .read_cache import keeping

CHECKS = {  # task.loader -> the check of its local files; loaders not named here (synthetic data) read no files
    "glue": glue_local.check_local,
    "alpaca": instruction_files.check_local,
    "gsm8k": math_files.check_local,
    "metamathqa": math_files.check_local,
    "oasst2": oasst_files.check_local,
    "codefeedback": code_feedback_files.check_local,
    "e2e": data_to_text_files.check_local,
    "dart": data_to_text_files.check_local,
    "webnlg": data_to_text_files.check_local,
}


def check_data(cfg: DictConfig) -> None:
    """Raises DataError (file:line) or ConfigError (a missing split or file) for unusable local data."""
    check = CHECKS.get(str(cfg.task.loader))
    if check is None or cfg.dry_run or not (cfg.task.data_files or cfg.task.data_dir):
        return
    with keeping():
        try:
            check(cfg.task)
        except FileNotFoundError as e:  # a ConfigError here, so the CLI records the run as failed (status, error)
            raise ConfigError(str(e)) from None
