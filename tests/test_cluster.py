"""Many GPUs / a cluster: SLURM and submitit task variables as torch.distributed's, the Hydra launcher presets
(`hydra/launcher=slurm | local_tasks | joblib | submitit_local`, the `cluster` extra), requeues that resume, one GPU
per parallel joblib worker, and the one-line hint when the extra is missing.

The sweeps run real jobs on CPU (tiny-bert, debug=fast) and check every job's results.json.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsetune import cluster_env, gpu_pinning
from sparsetune.cli import fold_hydra_error
from sparsetune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SLURM_TASK = {"SLURM_JOB_ID": "4321987", "SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8",
              "SLURM_STEP_NUM_TASKS": "8", "SLURM_JOB_NODELIST": "gpu[017-018,031],cpu2", "SLURM_STEP_TASKS_PER_NODE": "4(x2)"}


# ---- SLURM / submitit variables -> torch.distributed's -------------------------------------------------------------------
def test_a_slurm_task_becomes_a_torch_rank():
    env = cluster_env.torch_env(SLURM_TASK)
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "gpu017",
                   "MASTER_PORT": str(20000 + 4321987 % 20000), "SPARSETUNE_LAUNCHER": "slurm"}


def test_what_is_not_a_task_of_several_maps_to_nothing():
    batch_script = {k: v for k, v in SLURM_TASK.items() if k != "SLURM_STEP_ID"}  # sbatch's own shell: no srun step
    one_task = {**SLURM_TASK, "SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    under_torchrun = {**SLURM_TASK, "RANK": "0", "WORLD_SIZE": "2"}  # torchrun inside an allocation keeps its own
    for env in ({}, batch_script, one_task, under_torchrun):
        assert cluster_env.torch_env(env) == {}


def test_submitit_local_tasks_map_to_localhost():
    env = cluster_env.torch_env({"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1",
                                 "SUBMITIT_LOCAL_JOB_ID": "777"})
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["MASTER_ADDR"], env["MASTER_PORT"]) == ("1", "2", "1",
                                                                                                        "127.0.0.1", "20777")


def test_apply_sets_only_what_is_missing_and_launch_reads_it(monkeypatch):
    env = {**SLURM_TASK, "MASTER_PORT": "31000"}
    assert "MASTER_PORT" not in cluster_env.apply(env) and env["MASTER_PORT"] == "31000" and env["RANK"] == "5"
    task_env = dict(SLURM_TASK)
    monkeypatch.setattr(os, "environ", task_env)  # this test's environment only: launch() writes into it
    from sparsetune.distributed import launch

    info = launch()
    assert (info.world_size, info.rank, info.local_rank, info.launcher) == (8, 5, 1, "slurm")
    assert task_env["MASTER_ADDR"] == "gpu017"


@pytest.mark.parametrize("nodes, first", [("gpu[017-018,031],cpu2", "gpu017"), ("n1,n2", "n1"), ("a-[3-5]", "a-3"),
                                          ("solo", "solo"), ("node[9]", "node9")])
def test_first_host_of_a_node_list(nodes, first):
    assert cluster_env.first_host(nodes) == first


# ---- submitit launchers: ranks > 0 log apart, a requeue resumes -----------------------------------------------------------
def test_tasks_log_apart_and_requeues_resume():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra_plugins.sparsetune_cluster.task_launchers import LocalTasksLauncher
    from sparsetune.cluster_launchers import rank_overrides, resuming

    job = ["method=pst", "seed=3"]
    assert rank_overrides(job, {"RANK": "0", "WORLD_SIZE": "2"}) == job
    assert rank_overrides(job, {"RANK": "1", "WORLD_SIZE": "2"}) == [*job, "hydra.job.name=train_rank1", "hydra.output_subdir=null"]
    assert resuming([*job, "resume=null"]) == [*job, "resume=auto"]
    delayed = LocalTasksLauncher().checkpoint(job, "hydra.sweep.dir", 0, "job_id_for_0", {})  # what submitit requeues
    assert delayed.args[0] == [*job, "resume=auto"] and delayed.args[1:] == ("hydra.sweep.dir", 0, "job_id_for_0", {})


# ---- joblib: one GPU per worker process -------------------------------------------------------------------------------
def test_parallel_workers_claim_different_gpus(tmp_path):
    assert gpu_pinning.parallel_launcher("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher")
    assert not gpu_pinning.parallel_launcher("hydra._internal.core_plugins.basic_launcher.BasicLauncher")
    # each claim holds its own open lock file, as a separate worker process would
    assert [gpu_pinning.claim(["0", "1"], tmp_path), gpu_pinning.claim(["0", "1"], tmp_path)] == ["0", "1"]
    with pytest.raises(ConfigError, match=r"hydra.launcher.n_jobs=2"):
        gpu_pinning.claim(["0", "1"], tmp_path)
    env = {"CUDA_VISIBLE_DEVICES": "4,6"}
    assert gpu_pinning.visible_gpus(env) == ["4", "6"]
    assert gpu_pinning.pin_one_gpu("cpu", "x.JoblibLauncher", env) is None  # CPU jobs: nothing to pin
    assert gpu_pinning.pin_one_gpu("cuda", "x.BasicLauncher", env) is None  # one job at a time: all GPUs stay visible


def test_missing_plugin_names_the_extra():
    held = ("In 'hydra/launcher/slurm': Could not load 'hydra/launcher/submitit_slurm'.\nConfig search path:\n"
            "\tprovider=hydra, path=pkg://hydra.conf\n")  # what Hydra says for slurm.yaml without the plugin
    line = fold_hydra_error(held)
    assert "\n" not in line and line.endswith('(a Hydra plugin: install it with pip install ".[cluster]")')
    joblib = fold_hydra_error("In 'hydra/config': Could not find 'hydra/launcher/joblib'\n")
    assert joblib.endswith('pip install ".[cluster]")')


# ---- real sweeps on CPU ---------------------------------------------------------------------------------------------------
def sweep(out: Path, launcher: list[str], methods: str = "lora,pst") -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *launcher, "model=tiny-bert", "debug=fast", f"method={methods}",
           f"paths.output_root={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "totals: 2 completed" in proc.stdout + proc.stderr  # the sweep summary read every job's record
    records = [json.loads(p.read_text()) for p in sorted(out.rglob("results.json"))]
    assert [r["config"]["method"]["name"] for r in records] == methods.split(",")
    assert all(r["status"] == "completed" and r["metrics"]["eval"]["accuracy"] is not None for r in records)
    return records


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_workers(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    records = sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert len({r["process"]["pid"] for r in records}) == 2  # two worker processes, not this one


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep(tmp_path, ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=30"])
    assert list(tmp_path.rglob(".submitit"))  # submitit's own job folders, inside the sweep dir


@pytest.mark.slow
def test_one_hydra_job_is_one_two_task_ddp_job(tmp_path):
    """hydra/launcher=local_tasks: each job is two submitit tasks that train as one DDP job (what slurm does per node)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    for rec in sweep(tmp_path, ["hydra/launcher=local_tasks", "hydra.launcher.tasks_per_node=2", "train.batch_size=4"]):
        launch = rec["launch"]
        assert (launch["launcher"], launch["world_size"], launch["global_batch_size"], launch["ranks_agree"]) == \
            ("submitit_local", 2, 8, True)
        job = Path(rec["run_dir"])
        assert (job / "train.log").is_file() and (job / "train_rank1.log").is_file()


@pytest.mark.slow
def test_a_job_requeued_at_its_time_limit_resumes(tmp_path):
    """The signal submitit sends a job before its time limit (SIGUSR2), sent here as soon as the job has a checkpoint:
    the launcher requeues the job with resume=auto, and it continues from that checkpoint in the same dir, ending as
    one completed run of all its steps."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=local_tasks", "hydra.launcher.tasks_per_node=1",
           "hydra.launcher.timeout_min=30", "model=tiny-bert", "debug=fast", "method=magnitude", "train.max_steps=600",
           "train.save_steps=20", "train.logging_steps=100", f"paths.output_root={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600
        while not list(tmp_path.rglob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None and time.time() < deadline, "the job ended before its first checkpoint"
            time.sleep(0.2)
        (first,) = list(tmp_path.rglob("results.json"))
        os.kill(json.loads(first.read_text())["process"]["pid"], signal.SIGUSR2)
        out, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-5000:]
    (record,) = [json.loads(p.read_text()) for p in tmp_path.rglob("results.json")]
    assert record["status"] == "completed" and record["timing"]["steps"] == 600 and record["config"]["resume"] == "auto"
    assert record["timing"]["resumed_from"].endswith(f"checkpoint-{600 - record['timing']['steps_this_process']}")
    assert record["timing"]["steps_this_process"] < 600
    assert any("Caught signal SIGUSR2" in p.read_text() for p in tmp_path.rglob("*_log.err"))
