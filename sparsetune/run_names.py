"""Default run directory names that stay unique for runs started in the same second, and one name for all the
processes of a multi-process launch.

`${run_token:}` (conf/train.yaml's hydra.run.dir) is a short random token, fixed for the life of the
process: Hydra resolves the run dir more than once, and every resolution must name the same directory.
`${run_start:%H-%M-%S}` is the start time, as Hydra's `${now:...}`; under torchrun / accelerate launch both are
rank 0's (cli.py shares them before Hydra resolves the dir): every rank's own clock and token would name a dir
of its own.
Light on purpose (no torch): train.py imports it before the config is checked.
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path

from omegaconf import OmegaConf

PROCESS_TOKEN = secrets.token_hex(3)
_shared_start: time.struct_time | None = None  # rank 0's start (multi-process launches); else each run's own


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("run_token", lambda: PROCESS_TOKEN, replace=True)
    # cached per config like Hydra's `now`, so every resolution within a run names the same second
    OmegaConf.register_new_resolver("run_start", lambda pattern: time.strftime(pattern, _shared_start or time.localtime()),
                                    use_cache=True, replace=True)


def start_stamp() -> tuple[time.struct_time, str]:
    return time.localtime(), PROCESS_TOKEN


def share(stamp: tuple[time.struct_time, str]) -> None:
    """Name runs by `stamp` (rank 0's start_stamp()) from now on."""
    global _shared_start, PROCESS_TOKEN
    _shared_start, PROCESS_TOKEN = stamp


def fresh_run_dir(output_root: str | Path, method: str, task: str) -> Path:
    """A new default run dir outside Hydra (tests, notebooks): a fresh token on every call."""
    return Path(output_root) / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}_{method}_{task}_{secrets.token_hex(3)}"


register_resolvers()
