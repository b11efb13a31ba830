"""FSDP (hardware=gpu-fsdp / hardware.fsdp=full_shard): the profile's Trainer arguments, the early refusals, and
training under FSDP2 that gives the one-process answer.

The two-process runs use tests/fsdp_on_cpu.py: torch's FSDP2 over gloo on CPU, through the same Trainer / accelerate
path a GPU run takes (accelerate itself shards only on accelerators, so the harness lets it shard on CPU). They check
what test_ddp.py checks for DDP: the same masks (zeros of the exported model/), weights, losses, gradient norms and
eval metrics as one process at the same global batch, with mask updates on gathered matrices and the merge on the
gathered model. The last test runs the real thing on GPUs where there are two.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg
from omegaconf import open_dict
from safetensors.torch import load_file
from test_ddp import CLASSIFICATION, assert_one_record, assert_same_run, run_dirs
from test_grad_accum import write_alpaca
from transformers import TrainingArguments

from sparsetune import fsdp_config, models
from sparsetune.errors import ConfigError
from sparsetune.fsdp_params import block_classes
from sparsetune.run import run
from sparsetune.validate import check

ROOT = Path(__file__).resolve().parents[1]
FSDP = ["hardware.fsdp=full_shard"]


def fsdp_on_cpu(out: Path, overrides: list[str], batch_size: int, multirun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "tests" / "fsdp_on_cpu.py"),
           *(["-m"] if multirun else []), *FSDP, *overrides, f"train.batch_size={batch_size}", f"paths.output_root={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def assert_fsdp_record(job: Path) -> dict:
    rec = assert_one_record(job)
    assert rec["launch"]["sharding"] == "fsdp2:full_shard" and rec["launch"]["fsdp_cpu_offload"] is False
    ckpt = sorted((job / "checkpoints").glob("checkpoint-*"))[-1]
    assert {"pytorch_model_fsdp.bin", "optimizer.bin"} <= {p.name for p in ckpt.iterdir()}  # the Trainer's FSDP save
    return rec


# ---- the profile and its Trainer arguments ---------------------------------------------------------------------------
def test_profiles_map_to_the_trainers_fsdp2():
    cfg = compose_cfg(["hardware=gpu-fsdp-offload"])
    assert (cfg.hardware.device, cfg.hardware.fsdp, cfg.hardware.fsdp_cpu_offload) == ("cuda", "full_shard", True)
    mapped = fsdp_config.trainer_args(cfg, ["BertLayer"])
    with open_dict(cfg):
        cfg.hardware.fsdp_cpu_offload = False
    assert fsdp_config.trainer_args(cfg, None)["fsdp_config"]["auto_wrap_policy"] == "NO_WRAP"
    assert fsdp_config.trainer_args(compose_cfg([]), None) == {}  # DDP / one process: no FSDP arguments
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", **mapped)
    plugin = args.fsdp_plugin_args  # what accelerate's FullyShardedDataParallelPlugin receives
    assert plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True  # FULL_SHARD under FSDP2
    assert plugin["cpu_offload"] is True and plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin["transformer_cls_names_to_wrap"] == "BertLayer" and plugin["state_dict_type"] == "FULL_STATE_DICT"


def test_fsdp_units_are_the_blocks_not_the_embeddings():
    """BERT lists BertEmbeddings among its blocks; accelerate shards the input embeddings on their own as well, which
    fails when their parent is a unit already (found by the CPU runs)."""
    for over, blocks in ((["model=tiny-bert"], ["BertLayer"]), (["model=tiny-llama", "task=alpaca"], ["LlamaDecoderLayer"])):
        model, _, _ = models.load(compose_cfg(over))
        assert block_classes(model) == blocks


@pytest.mark.parametrize("over, expected", [
    (["hardware=gpu-fsdp"], "launch with torchrun --nproc_per_node=N"),  # one process
    (["hardware=cpu", "hardware.fsdp=full_shard"], "needs hardware.device=cuda"),
    (["hardware=gpu", "hardware.fsdp_cpu_offload=true"], "needs hardware.fsdp=full_shard"),
    (["hardware=gpu", "hardware.fsdp=hybrid_shard"], "is not one of [None, 'full_shard']"),
])
def test_bad_fsdp_settings_fail_at_config_time(over, expected):
    with pytest.raises(ConfigError, match="invalid configuration") as e:
        check(compose_cfg(over))
    assert expected in str(e.value)


def test_method_fsdp_cannot_serve_names_the_alternative(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for method in ("full", "lora", "pissa", "magnitude", "movement", "pst", "speft", "spp", "lora_star"):
        check(compose_cfg(["hardware=gpu-fsdp", f"method={method}"]))  # served
    with pytest.raises(ConfigError) as e:
        check(compose_cfg(["hardware=gpu-fsdp", "method=speft", "mask_schedule=dynamic"]))
    assert "not supported under FSDP" in str(e.value) and "hardware=gpu" in str(e.value) and "mask_schedule=static" in str(e.value)


def test_cli_refuses_before_loading_anything(tmp_path):
    """Under torchrun (the ranks join, then both refuse in preflight, before torch loads a model): exit 2, one line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"),
           "hardware=gpu-fsdp", "method=speft", "mask_schedule=dynamic", f"paths.output_root={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(e.startswith("error: invalid configuration: method=speft with mask_schedule=dynamic") for e in errors)
    assert str(ROOT / "sparsetune") not in proc.stderr  # no traceback through our code (torchrun's own report follows)
    assert not list(tmp_path.rglob("model.safetensors"))
    one = subprocess.run([sys.executable, str(ROOT / "train.py"), "hardware=gpu-fsdp", f"paths.output_root={tmp_path}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert one.returncode == 2 and "launch with torchrun --nproc_per_node=N" in one.stderr.strip().splitlines()[-1]


# ---- two processes under FSDP2 (CPU, gloo) ---------------------------------------------------------------------------
@pytest.mark.slow
def test_masked_methods_match_one_process(tmp_path):
    """MaP (masks from |W| with re-zeroing after every step), PST (scores from factors, rebuilt every step) and static
    SPEFT (sparse values) in one two-process FSDP sweep, against one process at the same global batch."""
    methods = ["magnitude", "pst", "speft"]
    fsdp_on_cpu(tmp_path / "fsdp", [*CLASSIFICATION, f"method={','.join(methods)}"], batch_size=4, multirun=True)
    jobs = run_dirs(tmp_path / "fsdp")
    assert [j.name.split("_")[1] for j in jobs] == methods
    for job, method in zip(jobs, methods):
        sharded = assert_fsdp_record(job)
        single = run(compose_cfg([*CLASSIFICATION, f"method={method}", "train.batch_size=8"]), tmp_path / f"single-{method}")
        assert_same_run(job, sharded, single)
        if method != "speft":
            assert sharded["sparsity"]["achieved"] == single["sparsity"]["achieved"] > 0.5
            assert sharded["method"]["mask_history"] == single["method"]["mask_history"]


@pytest.mark.slow
def test_pruned_causal_lm_methods_keep_their_sparsity(tmp_path):
    """SPP and LoRA* on a causal LM: one-shot Wanda before sharding, the merge (LoRA*: and re-masking) on the gathered
    model. Before this, SPP under FSDP reported 0.25 sparsity for a 0.5 target (counted on shards)."""
    data = write_alpaca(tmp_path / "alpaca.jsonl")
    over = ["model=tiny-llama", "task=alpaca", f"+task.data_files.train={data}", "task.options.val_set_size=8",
            "task.max_length=256", "task.max_train_samples=16", "task.max_eval_samples=null", "train.eval_strategy=no",
            "train.max_steps=4", "train.logging_steps=1", "train.lr=1e-3",
            "++method.dropout=0.0"]  # the adapters' input dropout draws other masks on two ranks than in one process
    fsdp_on_cpu(tmp_path / "fsdp", [*over, "method=spp,lora_star"], batch_size=4, multirun=True)
    for job, method in zip(run_dirs(tmp_path / "fsdp"), ["spp", "lora_star"]):
        sharded = assert_fsdp_record(job)
        single = run(compose_cfg([*over, f"method={method}", "train.batch_size=8"]), tmp_path / f"single-{method}")
        assert sharded["sparsity"]["achieved"] == single["sparsity"]["achieved"] == pytest.approx(0.5, abs=1e-6)
        assert_same_run(job, sharded, single)


@pytest.mark.gpu
@pytest.mark.parametrize("profile", ["gpu-fsdp", "gpu-fsdp-offload"])
def test_gpu_fsdp_two_processes(tmp_path, profile):
    """hardware=gpu-fsdp(-offload) under torchrun on two GPUs (bf16): PST, MaP and LoRA complete with one record each
    and the scheduled methods reach their sparsity. (CPU offload needs an accelerator: the CPU harness cannot run it.)"""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"), "-m",
           f"hardware={profile}", "model=tiny-bert", "debug=fast", "train.batch_size=4", "method=pst,magnitude,lora",
           f"paths.output_root={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    for job in run_dirs(tmp_path):
        rec = json.loads((job / "results.json").read_text())
        assert rec["status"] == "completed" and rec["launch"]["sharding"] == "fsdp2:full_shard" and rec["launch"]["ranks_agree"]
        assert rec["launch"]["fsdp_cpu_offload"] is (profile == "gpu-fsdp-offload")
        assert rec["sparsity"]["achieved"] == pytest.approx(rec["sparsity"]["target"], abs=1e-3)


@pytest.mark.slow
def test_resume_under_fsdp_equals_the_uninterrupted_run(tmp_path):
    """A run killed after its step-4 checkpoint and resumed (resume=auto) loads the Trainer's FSDP checkpoint (sharded
    model and optimizer) and exports the same model, bit for bit, as the run that was never stopped."""
    over = ["model=tiny-bert", "debug=fast", "method=magnitude", "train.save_steps=4", "train.save_total_limit=null",
            f"hydra.run.dir={tmp_path / 'run'}"]
    fsdp_on_cpu(tmp_path, over, batch_size=4)
    run_dir = tmp_path / "run"
    uninterrupted = load_file(run_dir / "model" / "model.safetensors")
    for gone in ("checkpoints/checkpoint-8", "model", "model-compressed"):  # as a kill at step 6 leaves the dir
        shutil.rmtree(run_dir / gone)
    rec = json.loads((run_dir / "results.json").read_text())
    (run_dir / "results.json").write_text(json.dumps({**rec, "status": "interrupted"}))
    fsdp_on_cpu(tmp_path, [*over, "resume=auto"], batch_size=4)
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["status"] == "completed" and resumed["timing"]["resumed_from"].endswith("checkpoint-4")
    assert resumed["timing"]["steps_this_process"] == 4
    again = load_file(run_dir / "model" / "model.safetensors")
    assert all(torch.equal(again[k], uninterrupted[k]) for k in uninterrupted)
