"""torch.distributed's variables for processes that SLURM or submitit started as the tasks of one job.

`torchrun` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT itself. A job of several tasks started
by `srun` (submitit's SLURM executor runs every task through srun) or by submitit's local executor has only the
launcher's own variables; `torch_env(env)` maps them (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID /
SLURM_JOB_NODELIST / SLURM_JOB_ID, or submitit's SUBMITIT_LOCAL_*), so one Hydra job can be one multi-GPU DDP job.
`apply()` writes them into os.environ; distributed.launch() calls it before it reads them (no torch import).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

LAUNCHER_KEY = "SPARSETUNE_LAUNCHER"  # which launcher's variables were mapped (results.json: launch.launcher)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[07-09,12],cpu3` -> gpu07, `n1,n2` -> n1 (the rendezvous host)."""
    head = re.match(r"([^,\[]*)(\[([^\]]*)\])?", nodelist.strip())
    if head is None or not head.group(1) and not head.group(3):
        raise ValueError(f"cannot read a host from the SLURM node list {nodelist!r}")
    prefix, ranges = head.group(1), head.group(3)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _tasks_per_node(value: str | None, default: int) -> int:
    """SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE look like `4(x2),3`: this node's count is the first."""
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else default


def _port(job_id: str) -> str:
    """One rendezvous port per job, so concurrent jobs sharing a node do not collide."""
    digits = re.sub(r"\D", "", job_id or "")
    return str(20000 + int(digits) % 20000) if digits else "29500"


def torch_env(env: Mapping[str, str]) -> dict[str, str]:
    """The torch.distributed variables for this task; {} for one task, or when a launcher (torchrun) set them."""
    if "WORLD_SIZE" in env or "RANK" in env:
        return {}
    if "SUBMITIT_LOCAL_NTASKS" in env:  # submitit's local executor: every task on this machine
        world = int(env["SUBMITIT_LOCAL_NTASKS"])
        rank = int(env.get("SUBMITIT_LOCAL_GLOBALID", 0))
        local, per_node, host, job = int(env.get("SUBMITIT_LOCAL_LOCALID", rank)), world, "127.0.0.1", env.get(
            "SUBMITIT_LOCAL_JOB_ID", "")
        launcher = "submitit_local"
    elif "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):  # a task of an srun step
        world = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
        rank, local = int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0))
        per_node = _tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE"), world)
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        host, job = first_host(nodes) if nodes else "127.0.0.1", env.get("SLURM_JOB_ID", "")
        launcher = "slurm"
    else:  # the sbatch script itself, an interactive shell, or no cluster at all
        return {}
    if world < 2:
        return {}
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(per_node),
            "MASTER_ADDR": host, "MASTER_PORT": _port(job), LAUNCHER_KEY: launcher}


def apply(env: os._Environ | dict = os.environ) -> dict[str, str]:
    """Set the mapped variables (none already there is replaced); returns what was set."""
    mapped = {k: v for k, v in torch_env(env).items() if k not in env}
    env.update(mapped)
    return mapped
