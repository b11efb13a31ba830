"""Default run directory names that stay unique for runs started in the same second.

`${run_token:}` (conf/train.yaml's hydra.run.dir) is a short random token, fixed for the life of the
process: Hydra resolves the run dir more than once, and every resolution must name the same directory.
Light on purpose (no torch): train.py imports it before the config is checked.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path

from omegaconf import OmegaConf

PROCESS_TOKEN = secrets.token_hex(3)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("run_token", lambda: PROCESS_TOKEN, replace=True)


def fresh_run_dir(output_root: str | Path, method: str, task: str) -> Path:
    """A new default run dir outside Hydra (tests, notebooks): a fresh token on every call."""
    return Path(output_root) / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}_{method}_{task}_{secrets.token_hex(3)}"


register_resolvers()
