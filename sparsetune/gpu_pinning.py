"""One GPU per worker process for launchers that run several single-process jobs at once on one machine
(`hydra/launcher=joblib`, the `cluster` extra): without it every job would train on every visible GPU at once
(the Trainer spreads one process over all of them) and the parallel jobs would share them all.

Each worker process claims one free GPU for its lifetime (an exclusive lock file per GPU in the temp dir, released
when the process ends) and sees only that one (CUDA_VISIBLE_DEVICES, set before CUDA starts in it). Jobs the same
worker runs later keep its GPU, so hydra.launcher.n_jobs = the number of GPUs runs one job per GPU.
"""
from __future__ import annotations

import fcntl
import getpass
import os
import subprocess
import tempfile
from pathlib import Path

from .errors import ConfigError

PINNED = "SPARSETUNE_PINNED_GPU"
_held: list = []  # the open lock files: a claim lasts as long as this process


def parallel_launcher(target: str | None) -> bool:
    """Whether a Hydra launcher (its _target_) runs several jobs at once in worker processes of this machine."""
    return bool(target) and target.rsplit(".", 1)[-1] == "JoblibLauncher"


def visible_gpus(env=os.environ) -> list[str]:
    """The GPUs this process may use, without starting CUDA (which would fix them): CUDA_VISIBLE_DEVICES, else
    nvidia-smi's list; [] when there is none."""
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"sparsetune-gpu-locks-{getpass.getuser()}"


def claim(gpus: list[str], where: Path) -> str:
    """Lock the first free GPU of `gpus` for this process and return it; ConfigError when all are taken."""
    where.mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        handle = open(where / f"gpu-{gpu}.lock", "w")  # kept open while claimed: the lock lives with the process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        return gpu
    raise ConfigError(f"every GPU of this machine ({', '.join(gpus)}) is held by another parallel job: run at most "
                      f"{len(gpus)} at once (hydra.launcher.n_jobs={len(gpus)})")


def pin_one_gpu(device: str, launcher_target: str | None, env=os.environ) -> str | None:
    """Under a parallel launcher with hardware.device cuda / auto and more than one GPU: this process's GPU."""
    if env.get(PINNED) is not None:
        return env[PINNED]
    if device not in ("cuda", "auto") or not parallel_launcher(launcher_target):
        return None
    gpus = visible_gpus(env)
    if len(gpus) < 2:
        return None
    gpu = claim(gpus, lock_dir())
    env["CUDA_VISIBLE_DEVICES"] = env[PINNED] = gpu
    return gpu
