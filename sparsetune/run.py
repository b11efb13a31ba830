"""run(cfg): build -> apply method -> train -> merge -> evaluate -> export -> record.

No method-specific branches: everything a method does goes through sparsetune.methods.base.Method.
Around the work: the run dir is locked and checked (run_dir.py), `status: running` is recorded before
anything else, and every ending leaves a true record: completed, failed, diverged (nothing exported) or
interrupted (SIGINT/SIGTERM: the last step and the last complete checkpoint).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from itertools import islice
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from transformers import set_seed

from . import distributed, fsdp_config, interrupts, models, records, validate
from . import run_dir as run_dirs
from .checkpoints import STAGING, CheckpointingTrainer, last_complete_checkpoint, read_method_state, resume_checkpoint
from .compressed_export import export_compressed
from .divergence import Diverged, DivergenceGuard, check_finite_metrics, check_finite_model
from .evaluation.suite import evaluate_suite
from .export import save_and_verify, sparsity_report
from .history import HISTORY_FILE, TrainingHistory
from .methods.base import MethodContext, count_params
from .progress import Progress
from .registry import TASK_LOADERS
from .run_names import fresh_run_dir
from .trackers import tracker_callbacks
from .training import FreshStorageOnResume, TimingCallback, eval_at_start, selection_metric, total_steps, train_loss_history, training_args

log = logging.getLogger("sparsetune")


def default_run_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not under @hydra.main (tests, notebooks)
        return fresh_run_dir(cfg.paths.output_root, cfg.method.name, cfg.task.name)


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
    """Run one experiment into run_dir (default: Hydra's run dir, or a new unique one); `callbacks` are extra
    TrainerCallbacks (programmatic use, tests). What an existing run dir allows: see run_dir.py.

    Launched as several processes (torchrun, accelerate launch): every rank trains (DDP) in rank 0's run dir;
    rank 0 alone writes there and runs the evaluators, the others wait and return rank 0's result."""
    distributed.init()
    chosen = run_dir
    run_dir = Path(distributed.on_main(lambda: Path(chosen) if chosen else default_run_dir(cfg)))
    with interrupts.as_exceptions(), run_dirs.claimed(run_dir):
        return _run_claimed(cfg, run_dir, callbacks or [])


def _run_claimed(cfg: DictConfig, run_dir: Path, callbacks: list) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    # refuses an occupied dir before anything is written; every rank follows rank 0's reading of the dir
    plan = distributed.on_main(lambda: run_dirs.plan(cfg, run_dir, config))
    main = distributed.is_main()
    if plan.kind == "completed":
        if main:
            print(f"{run_dir} is already completed: returning its recorded result (overwrite=true runs it again)", flush=True)
        return plan.previous
    result = run_dirs.start_record(plan, run_dir, config)
    code_version = records.git_sha()  # now: the checkout may move while a long job runs
    result["launch"] = records.launch_record(int(cfg.train.batch_size), int(cfg.train.grad_accum))
    progress = Progress()
    started = False  # whether this attempt's record is in the dir (before that, a refused resume leaves it alone)
    try:
        method = validate.checked_method(cfg)

        def begin():
            if plan.kind == "overwrite":
                run_dirs.remove_products(run_dir, plan.products)
            records.write_results(run_dir, result)

        distributed.on_main(begin)  # the other ranks start once the dir holds this attempt's record
        started = True
        setup_process(cfg, run_dir)
        result.update(dry_run(cfg, method) if cfg.dry_run else train_and_export(cfg, method, run_dir, callbacks, progress))
        result.update(status="completed", ended=_now(), env=records.env_record(cfg.seed, cfg.hardware.device, code_version))

        def finish():
            records.write_results(run_dir, result)
            return result

        result = distributed.on_main(finish)  # every rank returns the recorded result
    except BaseException as e:
        storage = None if isinstance(e, (KeyboardInterrupt, Diverged)) else run_dirs.storage_error(e, run_dir)
        if main and (started or plan.kind == "fresh"):
            _record_ending(result, e, storage, run_dir, progress)
        if storage is not None:
            raise storage from None  # one line naming the path and the fix (the record keeps the traceback)
        raise
    return result


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _record_ending(result: dict, e: BaseException, storage: Exception | None, run_dir: Path, progress: Progress) -> None:
    """The record of a run that did not complete; a full disk may refuse it (then only the log says so)."""
    ckpt = last_complete_checkpoint(run_dir / "checkpoints")
    result.update(ended=_now(), phase=progress.phase, last_step=progress.step, last_checkpoint=str(ckpt) if ckpt else None)
    if isinstance(e, KeyboardInterrupt):
        result.update(status="interrupted", interrupted_by=interrupts.signal_name(e))
    elif isinstance(e, SystemExit):  # e.g. submitit's exit after requeueing a job at its time limit
        result.update(status="interrupted", interrupted_by=f"exit({e.code})")
    elif isinstance(e, Diverged):
        result.update(status="diverged", diverged_at_step=e.step, error=diverged_message(e))
        shutil.rmtree(run_dir / "model", ignore_errors=True)  # a diverged run exports nothing
    else:
        result.update(status="failed", error=str(storage) if storage else f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc())
    shutil.rmtree(run_dir / PARTIAL_EXPORT, ignore_errors=True)
    with interrupts.deferred():
        try:
            records.write_results(run_dir, result)
        except OSError as err:
            log.error("could not write %s: %s", run_dir / "results.json", err)
    if isinstance(e, (KeyboardInterrupt, Diverged)):
        e.run_record = result  # the CLI's one line names the step and the checkpoint


def diverged_message(e: Diverged) -> str:
    return f"run diverged at step {e.step}: {e.what}" if e.step is not None else f"run diverged: {e.what}"


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


PARTIAL_EXPORT = ".model.partial"  # the export is written here and renamed to model/ once verified


def _load(cfg: DictConfig):
    model, tok, model_info = models.load(cfg)
    return model, tok, model_info, TASK_LOADERS.get(cfg.task.loader)(cfg.task, tok, cfg.seed)


def train_and_export(cfg: DictConfig, method, run_dir: Path, extra_callbacks: list, progress: Progress) -> dict:
    model, tok, model_info, data = distributed.main_first(lambda: _load(cfg))  # rank 0 fills the caches the others read
    device = distributed.device(cfg.hardware.device)  # this rank's GPU, before the method builds anything on it
    model.to(device)
    steps = total_steps(cfg, len(data.train), distributed.world_size())
    ctx = MethodContext(cfg=cfg, total_steps=steps, batches=_batches(data, cfg, device), tokenizer=tok)
    t0 = time.perf_counter()
    model = method.apply(model, ctx)
    apply_seconds = time.perf_counter() - t0
    params = count_params(model)

    ckpt_dir = run_dir / "checkpoints"
    # a save that a killed process never finished; every rank resumes from the checkpoint rank 0 finds
    resume_from = distributed.on_main(lambda: (shutil.rmtree(ckpt_dir / STAGING, ignore_errors=True),
                                               resume_checkpoint(cfg, ckpt_dir))[1])
    if resume_from:
        method.restore_checkpoint_state(read_method_state(resume_from) or {})
    timing = TimingCallback()
    method_callbacks = method.callbacks()
    sharded = fsdp_config.enabled(cfg)  # FSDP: the methods' callbacks see full tensors, the end of training a plain model
    fsdp_wrap = None
    if sharded:
        from .fsdp_params import PlainAtTrainEnd, block_classes, gathering

        method_callbacks = [PlainAtTrainEnd(device), *gathering(method_callbacks, method, device)]
        fsdp_wrap = block_classes(model)
    # the history adds the sparsity to each log before the trackers see it; both before DivergenceGuard, so a
    # non-finite loss is recorded before it stops the run
    history = TrainingHistory(run_dir / HISTORY_FILE, method, resuming=bool(resume_from))
    callbacks = [*method_callbacks, timing, progress, history, *tracker_callbacks(cfg, run_dir), DivergenceGuard(),
                 *extra_callbacks] + ([FreshStorageOnResume()] if resume_from and not sharded else [])  # FSDP owns its storage
    first_eval = next(iter(data.eval.values()))
    trainer = CheckpointingTrainer(
        model=model, args=training_args(cfg, str(ckpt_dir), steps, list(data.eval), fsdp_wrap),
        train_dataset=data.train, eval_dataset=data.eval,
        data_collator=data.collator, processing_class=tok, compute_metrics=data.compute_metrics,
        callbacks=callbacks, param_groups=method.optimizer_groups(model), method_state=method.checkpoint_state,
        best_eligible=method.in_final_phase if cfg.train.select == "best" else None,
    )
    if steps == 0:  # evaluate only (train.max_steps=0): the applied method's model as it is, e.g. pruned, not retrained
        for cb in method_callbacks:  # what the method does when training ends (final masks, LoRA* re-masking)
            cb.on_train_end(trainer.args, trainer.state, trainer.control, model=trainer.model)
    else:
        trainer.train(resume_from_checkpoint=resume_from)
    final_loss, loss_log = train_loss_history(trainer)
    step = trainer.state.global_step

    progress.phase = "evaluating"
    merged = method.merge(trainer.model)
    check_finite_model(merged, step)
    metrics = evaluate_merged(merged, trainer, data)  # every rank: the Trainer shares the eval set out
    metrics["train_loss"] = final_loss
    if cfg.train.eval_on_start:
        metrics["eval_start"] = eval_at_start(trainer)
    metrics.update(distributed.on_main(lambda: run_evaluators(merged, tok, cfg, data)))
    check_finite_metrics(metrics, step)
    sparsity = sparsity_report(merged, cfg, method.target_sparsity())
    ranks = distributed.compare_with_main(merged)  # every rank's final model (masks, values) is rank 0's
    export = None
    if cfg.export:
        progress.phase = "exporting"

        def export_all():
            probe = {k: v.to(device) for k, v in data.collator([first_eval[i] for i in range(min(4, len(first_eval)))]).items()
                     if k != "labels"}
            out = export_model(merged, tok, cfg, run_dir, probe)
            out["compressed"] = export_compressed(merged, tok, cfg, run_dir, Path(out["dir"]), method.target_sparsity())
            return out

        export = distributed.on_main(export_all)
    launch = {**records.launch_record(int(cfg.train.batch_size), int(cfg.train.grad_accum)), **fsdp_config.record(cfg), **ranks}
    return {
        "launch": launch, "metrics": metrics, "params": params, "sparsity": sparsity, "method": method.record(), "export": export,
        "model": model_info, "data": {**data.info, "seed": cfg.seed},
        "evaluate_only": steps == 0, "selection": selection_record(cfg, trainer, data),
        "timing": {"train_seconds": timing.train_seconds, "steps": step, "steps_this_process": timing.steps,
                   "seconds_per_step": timing.train_seconds / max(timing.steps, 1), "method_apply_seconds": apply_seconds,
                   "resumed_from": resume_from},
        "memory": records.memory_record(), "train_log": loss_log[-20:], "history_file": HISTORY_FILE,  # in the run dir
    }


def selection_record(cfg: DictConfig, trainer, data) -> dict:
    """Which model was exported: the last, or the best dev checkpoint of the final phase (train.select=best)."""
    if cfg.train.select != "best":
        return {"rule": "last"}
    st = trainer.state
    return {"rule": "best", "metric": selection_metric(cfg, list(data.eval)), "among": "evaluations of the final phase "
            "(scheduled sparsity at its target)", "best_step": st.best_global_step, "best_metric": st.best_metric,
            "checkpoint": st.best_model_checkpoint,
            "note": None if st.best_model_checkpoint else "no evaluation in the final phase: the last model was exported"}


def export_model(merged, tok, cfg: DictConfig, run_dir: Path, probe: dict) -> dict:
    """save_and_verify into a temp dir, then rename to model/: a model/ dir is always a complete export."""
    final = run_dir / "model"
    export = run_dirs.write_dir_atomically(run_dir / PARTIAL_EXPORT, final,
                                           lambda d: save_and_verify(merged, tok, cfg, d, probe))
    return {**export, "dir": str(final)}


def run_evaluators(merged, tok, cfg: DictConfig, data) -> dict:
    """The task's own evaluators (e.g. generation) and the eval suite (lm-eval, perplexity): rank 0 only."""
    out = {name: extra(merged, tok, cfg) for name, extra in data.extras.get("evaluators", {}).items()}
    out.update(evaluate_suite(merged, tok, cfg))
    return out


def evaluate_merged(merged, trainer, data) -> dict:
    """Metrics of the exported artifact itself (the merged model), one entry per eval split."""
    trainer.model = trainer.model_wrapped = merged
    out = {}
    for i, (split, ds) in enumerate(data.eval.items()):
        res = trainer.evaluate(eval_dataset=ds, metric_key_prefix="eval")
        key = "eval" if i == 0 else f"eval_{split}"
        out[key] = {k.removeprefix("eval_"): v for k, v in res.items()}
    return out
