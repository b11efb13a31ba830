"""What our submitit launchers add to Hydra's (the `cluster` extra): jobs of several tasks, and requeues that resume.

`hydra/launcher=slurm` and `hydra/launcher=local_tasks` (conf/hydra/launcher/) name the classes in
hydra_plugins/sparsetune_cluster/ (Hydra takes launchers from its plugin package only), which mix `TasksMixin` into
Hydra's submitit launchers. Each Hydra job is one submitit job of nodes x tasks_per_node processes, and every task
runs the job:

- the task's SLURM / submitit variables become torch.distributed's (cluster_env.py), so the tasks train as one DDP
  (or FSDP) job in the job's dir: rank 0 writes it, the others log to train_rank<N>.log and leave .hydra/ alone, as
  under torchrun;
- a job that reaches its time limit (or is preempted) is requeued by submitit with `resume=auto` added, so it continues
  from its last complete checkpoint in the same dir (hydra.launcher.max_num_timeout requeues at most).
"""
from __future__ import annotations

from typing import Any

from . import cluster_env


def rank_overrides(overrides: list[str], env=None) -> list[str]:
    """The job's overrides for this task: ranks > 0 log beside rank 0 and write no .hydra/ (cf. cli.share_launch)."""
    import os

    env = os.environ if env is None else env
    cluster_env.apply(env)
    rank = int(env.get("RANK", 0) or 0)
    return [*overrides, f"hydra.job.name=train_rank{rank}", "hydra.output_subdir=null"] if rank > 0 else list(overrides)


def resuming(overrides: list[str]) -> list[str]:
    """The same job, continuing from its last checkpoint (a `resume=` given before is replaced)."""
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != "resume"]
    return [*kept, "resume=auto"]


class TasksMixin:
    """Before a Hydra submitit launcher in the bases: every task maps its rank, a requeue resumes."""

    def __call__(self, sweep_overrides: list[str], *args: Any) -> Any:
        return super().__call__(rank_overrides(list(sweep_overrides)), *args)

    def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
        # submitit calls this on rank 0 when the time limit nears: what it returns is the requeued job
        return super().checkpoint(resuming(list(sweep_overrides)), *args, **kwargs)
