"""`hydra/launcher=slurm` and `local_tasks`: Hydra's submitit launchers with sparsetune's task handling
(sparsetune/cluster_launchers.py). Hydra imports every plugin module when it starts, so without the `cluster` extra
this module defines nothing and the launcher configs fail in one line naming the extra."""
from sparsetune.cluster_launchers import TasksMixin

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # pip install ".[cluster]" adds it
    pass
else:
    class SlurmTasksLauncher(TasksMixin, SlurmLauncher):
        pass

    class LocalTasksLauncher(TasksMixin, LocalLauncher):
        pass
