"""run(cfg): build -> apply method -> train -> merge -> evaluate -> export -> record.

No method-specific branches: everything a method does goes through sparsetune.methods.base.Method.
"""
from __future__ import annotations

import os
import time
import traceback
from itertools import islice
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from . import models, records, validate
from .evaluation.suite import evaluate_suite
from .export import sparsity_report, save_and_verify
from .methods.base import MethodContext, count_params
from .registry import TASK_LOADERS
from .training import FreshStorageOnResume, eval_at_start, MethodTrainer, TimingCallback, total_steps, train_loss_history, training_args


def default_run_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not under @hydra.main (tests, notebooks)
        return Path(cfg.paths.output_root) / time.strftime("%Y-%m-%d/%H-%M-%S") / f"{cfg.method.name}_{cfg.task.name}"


def setup_process(cfg: DictConfig, run_dir: Path) -> None:
    if cfg.hardware.num_threads:
        torch.set_num_threads(int(cfg.hardware.num_threads))
    if cfg.logger.name == "wandb":
        os.environ.setdefault("WANDB_MODE", cfg.logger.get("mode", "offline"))
        os.environ.setdefault("WANDB_PROJECT", cfg.logger.get("project", "sparsetune"))
        os.environ["WANDB_DIR"] = str(run_dir)  # per run: a multirun process hosts many runs
    else:
        os.environ.setdefault("WANDB_MODE", "disabled")  # wandb raises without a key otherwise
    set_seed(cfg.seed)


def run(cfg: DictConfig, run_dir: str | Path | None = None, callbacks: list | None = None) -> dict:
    """Run one experiment; `callbacks` are extra TrainerCallbacks (programmatic use, tests)."""
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
    result = {"status": "running", "config": OmegaConf.to_container(cfg, resolve=True), "run_dir": str(run_dir)}
    try:
        method = validate.checked_method(cfg)
        setup_process(cfg, run_dir)
        result.update(dry_run(cfg, method) if cfg.dry_run else train_and_export(cfg, method, run_dir, callbacks or []))
        result["status"] = "completed"
    except BaseException as e:
        result.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        records.write_results(run_dir, result)
        raise
    result["env"] = records.env_record(cfg.seed, cfg.hardware.device)
    records.write_results(run_dir, result)
    return result


def dry_run(cfg: DictConfig, method) -> dict:
    model = models.build_skeleton(cfg)
    total = int(cfg.train.max_steps) if cfg.train.max_steps > 0 else 1000
    model = method.apply(model, MethodContext(cfg=cfg, total_steps=total, dry_run=True))
    return {"dry_run": True, "params": count_params(model), "method": method.record(),
            "sparsity": {"target": method.target_sparsity(), "achieved": None, "note": "dry run: no weights"}}


def _batches(data, cfg: DictConfig, device: torch.device):
    """ctx.batches(n): n shuffled training batches on the device, for salience and calibration.
    A different `seed` draws different batches (dynamic re-selection asks for fresh ones)."""
    def batches(n: int, batch_size: int | None = None, seed: int | None = None):
        g = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        loader = DataLoader(data.train, batch_size=batch_size or cfg.salience.batch_size, shuffle=True,
                            collate_fn=data.collator, generator=g)
        for b in islice(loader, n):
            yield {k: v.to(device) for k, v in b.items()}
    return batches


def _resume_checkpoint(cfg: DictConfig, ckpt_dir: Path) -> str | None:
    if cfg.resume is None:
        return None
    if cfg.resume == "auto":
        return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    p = Path(cfg.resume)
    return str(p) if (p / "trainer_state.json").is_file() else get_last_checkpoint(str(p / "checkpoints"))


def train_and_export(cfg: DictConfig, method, run_dir: Path, extra_callbacks: list) -> dict:
    model, tok, model_info = models.load(cfg)
    data = TASK_LOADERS.get(cfg.task.loader)(cfg.task, tok, cfg.seed)
    device = torch.device("cuda" if cfg.hardware.device == "cuda" else "cpu")
    model.to(device)
    steps = total_steps(cfg, len(data.train))
    ctx = MethodContext(cfg=cfg, total_steps=steps, batches=_batches(data, cfg, device), tokenizer=tok)
    t0 = time.perf_counter()
    model = method.apply(model, ctx)
    apply_seconds = time.perf_counter() - t0
    params = count_params(model)

    ckpt_dir = run_dir / "checkpoints"
    resume_from = _resume_checkpoint(cfg, ckpt_dir)
    timing = TimingCallback()
    callbacks = [*method.callbacks(), timing, *extra_callbacks] + ([FreshStorageOnResume()] if resume_from else [])
    first_eval = next(iter(data.eval.values()))
    trainer = MethodTrainer(
        model=model, args=training_args(cfg, str(ckpt_dir), steps), train_dataset=data.train, eval_dataset=data.eval,
        data_collator=data.collator, processing_class=tok, compute_metrics=data.compute_metrics,
        callbacks=callbacks, param_groups=method.optimizer_groups(model),
    )
    trainer.train(resume_from_checkpoint=resume_from)
    final_loss, loss_log = train_loss_history(trainer)

    merged = method.merge(trainer.model)
    metrics = evaluate_merged(merged, trainer, data)
    metrics["train_loss"] = final_loss
    if cfg.train.eval_on_start:
        metrics["eval_start"] = eval_at_start(trainer)
    for name, extra in data.extras.get("evaluators", {}).items():
        metrics[name] = extra(merged, tok, cfg)
    metrics.update(evaluate_suite(merged, tok, cfg))
    sparsity = sparsity_report(merged, cfg, method.target_sparsity())
    export = None
    if cfg.export:
        probe = {k: v.to(device) for k, v in data.collator([first_eval[i] for i in range(min(4, len(first_eval)))]).items()
                 if k != "labels"}
        export = save_and_verify(merged, tok, cfg, run_dir / "model", probe)
    return {
        "metrics": metrics, "params": params, "sparsity": sparsity, "method": method.record(), "export": export,
        "model": model_info, "data": {**data.info, "seed": cfg.seed},
        "timing": {"train_seconds": timing.train_seconds, "steps": trainer.state.global_step, "steps_this_process": timing.steps,
                   "seconds_per_step": timing.train_seconds / max(timing.steps, 1), "method_apply_seconds": apply_seconds,
                   "resumed_from": resume_from},
        "memory": records.memory_record(), "train_log": loss_log[-20:],
    }


def evaluate_merged(merged, trainer, data) -> dict:
    """Metrics of the exported artifact itself (the merged model), one entry per eval split."""
    trainer.model = trainer.model_wrapped = merged
    out = {}
    for i, (split, ds) in enumerate(data.eval.items()):
        res = trainer.evaluate(eval_dataset=ds, metric_key_prefix="eval")
        key = "eval" if i == 0 else f"eval_{split}"
        out[key] = {k.removeprefix("eval_"): v for k, v in res.items()}
    return out
