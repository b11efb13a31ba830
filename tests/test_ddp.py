"""DDP gives the same answer as one process at the same global batch.

`torchrun --standalone --nproc_per_node=2 train.py ...` (gloo on CPU, per-device batch 4) against run() in this process
(batch 8): the same masks (the zeros of the exported model/), the same weights, losses, gradient norms and eval metrics,
one run dir per job with one results.json and one model/, and results.json saying world_size 2.

Tolerances: the two processes average two half-batch gradients where one process takes the mean over the whole batch,
so float32 sums run in another order: weights, training losses and gradient norms agree to ~1e-7 (checked at 1e-5).
The eval loss is a mean of per-batch means weighted by batch size; under DDP the Trainer tops up the last eval batch
with repeated examples (accelerate's even_batches) and drops their copies after the gather, so that batch's mean
still counts them: the loss moves by ~1e-5 (checked at 1e-4). Metrics from predictions (accuracy, pearson) are exact.
Dropout is off (NO_DROPOUT): two processes draw other dropout masks than one.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg
from safetensors.torch import load_file
from test_grad_accum import NO_DROPOUT, write_alpaca, write_stsb

from sparsetune.run import run
from sparsetune.training import total_steps

SLOW = pytest.mark.slow  # each launches two processes: about 3 minutes together on two loaded cores

ROOT = Path(__file__).resolve().parents[1]
CLASSIFICATION = ["model=tiny-bert", "debug=fast", "train.lr=1e-3", "train.logging_steps=1", "mask_schedule.warmup=0.25",
                  "mask_schedule.cooldown=0.25", "salience=gradient", "salience.num_batches=2", "salience.batch_size=8",
                  *NO_DROPOUT]
CLOSE = dict(rel=1e-5, abs=1e-6)


def torchrun(out: Path, overrides: list[str], batch_size: int, multirun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"),
           *(["-m"] if multirun else []), *overrides, f"train.batch_size={batch_size}", f"paths.output_root={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def run_dirs(out: Path) -> list[Path]:
    """Every dir under `out` that Hydra made for a job (it holds .hydra/ or a log)."""
    return sorted({p.parent for p in out.rglob("*.log")})


def assert_one_record(job: Path) -> dict:
    """One results.json and one complete model/ in the job's dir, written by rank 0 only; rank 1 logged beside it."""
    rec = json.loads((job / "results.json").read_text())
    assert rec["status"] == "completed", rec.get("error")
    assert rec["launch"]["launcher"] == "torchrun" and rec["launch"]["world_size"] == 2 and rec["launch"]["ranks_agree"]
    assert rec["launch"]["global_batch_size"] == 8  # per-device batch x grad_accum x 2
    assert (job / "model" / "model.safetensors").is_file() and not (job / ".model.partial").exists()
    assert (job / "train.log").is_file() and (job / "train_rank1.log").is_file()
    assert [p.name for p in job.glob("*.json")] == ["results.json"]
    ckpts = sorted((job / "checkpoints").glob("checkpoint-*"))
    assert ckpts and not (job / "checkpoints" / ".staging").exists()
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= {p.name for p in ckpts[-1].iterdir()}
    return rec


def assert_same_run(ddp_job: Path, ddp: dict, single: dict) -> None:
    a = load_file(ddp_job / "model" / "model.safetensors")
    b = load_file(Path(single["export"]["dir"]) / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k] == 0, b[k] == 0), f"{k}: other zeros (mask) under DDP"
        assert float((a[k] - b[k]).abs().max()) < 1e-5, k
    assert ddp["sparsity"]["zeros"] == single["sparsity"]["zeros"]
    ev_d, ev_s = ddp["metrics"]["eval"], single["metrics"]["eval"]
    assert ev_d["loss"] == pytest.approx(ev_s["loss"], abs=1e-4)
    # the weights may differ by float reduction order (< 1e-5 above); a Pearson over near-constant predictions
    # of an untrained tiny model moves by ~5e-6 from that alone, so metrics get the loss's tolerance
    for k in set(ev_s) - {"loss", "runtime", "samples_per_second", "steps_per_second"}:
        assert ev_d[k] == pytest.approx(ev_s[k], abs=1e-4), k
    assert ddp["timing"]["steps"] == single["timing"]["steps"]
    steps_d = [h for h in ddp["train_log"] if "grad_norm" in h]
    steps_s = [h for h in single["train_log"] if "grad_norm" in h]
    assert len(steps_d) == len(steps_s) > 0
    for d, s in zip(steps_d, steps_s):
        assert (d["step"], d["loss"], d["grad_norm"]) == (s["step"], pytest.approx(s["loss"], **CLOSE),
                                                           pytest.approx(s["grad_norm"], **CLOSE))


@SLOW
def test_classification_methods(tmp_path):
    """magnitude, PST and SPEFT (static, gradient salience on training batches) in one two-process sweep."""
    methods = ["magnitude", "pst", "speft"]
    torchrun(tmp_path / "ddp", [*CLASSIFICATION, f"method={','.join(methods)}"], batch_size=4, multirun=True)
    jobs = run_dirs(tmp_path / "ddp")
    assert [j.name.split("_")[1] for j in jobs] == methods  # one dir per job: the ranks shared it
    assert len({j.parent for j in jobs}) == 1
    for job, method in zip(jobs, methods):
        ddp = assert_one_record(job)
        single = run(compose_cfg([*CLASSIFICATION, f"method={method}", "train.batch_size=8"]), tmp_path / f"single-{method}")
        assert_same_run(job, ddp, single)
        if method == "speft":  # the same selection on every rank and in one process
            assert ddp["method"]["selected_per_layer"] == single["method"]["selected_per_layer"]
        else:
            assert ddp["sparsity"]["achieved"] > 0.5


@SLOW
def test_regression_lora_epochs(tmp_path):
    """LoRA on a regression task (plain-mean MSE), one epoch: the step count follows the global batch."""
    glue = write_stsb(tmp_path / "glue")
    over = ["model=tiny-bert", "task=glue/stsb", f"task.data_dir={glue}", "method=lora", "method.dropout=0.0", "train.lr=1e-3",
            "train.max_steps=-1", "train.epochs=1", "train.eval_strategy=no", "train.logging_steps=1", *NO_DROPOUT]
    torchrun(tmp_path / "ddp", over, batch_size=4)
    (job,) = run_dirs(tmp_path / "ddp")
    ddp = assert_one_record(job)
    assert ddp["timing"]["steps"] == 64 // 8  # 64 examples, global batch 8: one epoch (it ran two before)
    single = run(compose_cfg([*over, "train.batch_size=8"]), tmp_path / "single")
    assert_same_run(job, ddp, single)


@SLOW
def test_causal_lm_dynamic_speft(tmp_path):
    """Token-weighted causal-LM loss over ranks and accumulation (batch 2 x grad_accum 2 x 2 ranks = 8), with SPEFT's
    dynamic global re-selection (values resized every 2 steps: averaged outside DDP)."""
    data = write_alpaca(tmp_path / "alpaca.jsonl")
    over = ["model=tiny-llama", "task=alpaca", f"+task.data_files.train={data}", "task.options.val_set_size=8",
            "task.max_length=256", "task.max_train_samples=16", "task.max_eval_samples=null", "train.eval_strategy=no",
            "train.max_steps=6", "train.logging_steps=1", "train.lr=1e-3", "method=speft", "mask_schedule=dynamic",
            "mask_schedule.update_every=2"]
    torchrun(tmp_path / "ddp", [*over, "train.grad_accum=2"], batch_size=2)
    (job,) = run_dirs(tmp_path / "ddp")
    ddp = assert_one_record(job)
    single = run(compose_cfg([*over, "train.batch_size=8"]), tmp_path / "single")
    assert_same_run(job, ddp, single)
    moved = lambda rec: [(u["step"], u["entries_newly_selected"]) for u in rec["method"]["mask_updates"]]  # noqa: E731
    assert moved(ddp) == moved(single) and len(moved(ddp)) == 3


def test_epochs_use_the_global_batch():
    cfg = compose_cfg(["train.max_steps=-1", "train.epochs=2", "train.batch_size=4", "train.grad_accum=2"])
    assert total_steps(cfg, 64) == 2 * 8
    assert total_steps(cfg, 64, world_size=2) == 2 * 4
    assert total_steps(cfg, 66, world_size=2) == 2 * 4  # 9 batches per rank (the last topped up), 4 full steps
