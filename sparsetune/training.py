"""The training loop: transformers' Trainer configured from cfg.train / cfg.hardware, plus method hooks."""
from __future__ import annotations

import functools
import math
import os
import time

import torch
from omegaconf import DictConfig
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import unwrap_peft_model

from . import fsdp_config
from .distributed import average_ignored_gradients, ddp_manages_nothing
from .divergence import Diverged
from .train_logging import BarOnlyProgress, LogLines


def total_steps(cfg: DictConfig, num_train: int, world_size: int = 1) -> int:
    """Optimizer steps: train.max_steps, or train.epochs over the global batch (batch x grad_accum x processes)."""
    t = cfg.train
    if t.max_steps >= 0:  # 0 = evaluate only
        return int(t.max_steps)
    # each rank's share of the batches, as the Trainer's sharded loader deals them (the last one topped up)
    per_epoch = max(math.ceil(num_train / (t.batch_size * world_size)) // t.grad_accum, 1)
    return int(per_epoch * t.epochs)


def training_args(cfg: DictConfig, output_dir: str, steps: int, eval_splits: list[str] = ("validation",),
                  fsdp_wrap: list[str] | None = None) -> TrainingArguments:
    """`fsdp_wrap`: under hardware.fsdp, the block classes that become FSDP units (fsdp_params.block_classes)."""
    t, hw = cfg.train, cfg.hardware
    if not fsdp_config.enabled(cfg):  # accelerate's flag, left by an earlier FSDP job of this multirun, would shard this one
        os.environ.pop("ACCELERATE_USE_FSDP", None)
    precision = hw.precision if hw.device != "cpu" else "fp32"
    return TrainingArguments(
        **selection_args(cfg, list(eval_splits)),
        output_dir=output_dir,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        adam_epsilon=t.adam_epsilon,
        max_grad_norm=t.max_grad_norm,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=int(t.warmup_steps) if t.warmup_steps > 0 else int(round(t.warmup_ratio * steps)),
        label_smoothing_factor=t.label_smoothing,
        max_steps=steps,
        eval_strategy=t.eval_strategy,
        eval_steps=t.eval_steps,
        eval_on_start=t.eval_on_start,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # log true losses: a NaN step must show (and stop the run), not be averaged away
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=hw.device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        **({"gradient_checkpointing": True} if hw.gradient_checkpointing else {}),
        **fsdp_config.trainer_args(cfg, fsdp_wrap),  # hardware.fsdp: FSDP2 through accelerate
        dataloader_num_workers=hw.dataloader_workers,
        report_to="none",  # logger=: run() adds the trackers itself (trackers.py), after the history callback
        run_name=f"{cfg.method.name}-{cfg.task.name}-{cfg.model.name}-s{cfg.seed}",
        disable_tqdm=False,
        remove_unused_columns=False,
    )


def selection_metric(cfg: DictConfig, eval_splits: list[str]) -> str:
    """The Trainer's name of the dev score that train.select=best maximises: task.main_metric on the first
    eval split (run() always passes the Trainer a dict of eval splits, so the split names the metric)."""
    return f"eval_{eval_splits[0]}_{cfg.task.main_metric}"


def selection_args(cfg: DictConfig, eval_splits: list[str]) -> dict:
    """Checkpointing arguments: with select=best, a checkpoint at every evaluation (the Trainer keeps the best
    and loads it at the end); otherwise every train.save_steps."""
    t = cfg.train
    if t.select != "best":
        return {"save_strategy": "steps", "save_steps": t.save_steps}
    metric = selection_metric(cfg, eval_splits)
    return {"save_strategy": t.eval_strategy, "save_steps": t.eval_steps or t.save_steps, "load_best_model_at_end": True,
            "metric_for_best_model": metric, "greater_is_better": "loss" not in metric}


def loss_uses_num_items(model) -> bool:
    """Whether the model's own loss divides by Trainer's `num_items_in_batch` (token-weighted over all
    accumulated micro-batches): HF's ForCausalLMLoss does. Sequence-classification and regression heads
    take a plain per-batch mean and ignore it, although their forward accepts **kwargs."""
    base = unwrap_peft_model(model)  # LoRA/PiSSA wrap in peft; the other methods keep the model's class
    return LOSS_MAPPING.get(getattr(base, "loss_type", None)) is ForCausalLMLoss


def _prepare_without_ddp(prepare, model, device_placement=None, evaluation_mode=False):
    return prepare(model, device_placement=device_placement, evaluation_mode=True)


class MethodTrainer(Trainer):
    """Trainer whose optimizer takes the method's parameter groups (e.g. MvP's score learning rate), whose
    loss does not depend on how a batch is split into accumulation steps or processes (DDP: the plain-mean heads
    get neither the accumulation nor the world-size factor; causal-LM losses are token-weighted over all ranks),
    and whose logs go to the log file."""

    def __init__(self, *a, param_groups=None, best_eligible=None, **kw):
        self._method_groups = param_groups
        self._best_eligible = best_eligible  # step -> whether an evaluation there may become the selected best
        super().__init__(*a, **kw)
        # Trainer takes any forward with **kwargs to normalise by num_items_in_batch and then skips dividing
        # by the accumulation steps; for plain-mean heads that sums the micro-batch means (loss x grad_accum), and
        # under DDP it also multiplies the loss by the number of processes
        self.model_accepts_loss_kwargs = self.model_accepts_loss_kwargs and loss_uses_num_items(self.model)
        if ddp_manages_nothing(self.model):
            # every trainable parameter's gradient is averaged here (average_ignored_gradients): no DDP wrapper,
            # only what accelerate adds besides it (autocast)
            self.accelerator.prepare_model = functools.partial(_prepare_without_ddp, self.accelerator.prepare_model)
        self.add_callback(LogLines())
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(BarOnlyProgress)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:  # the last micro-batch of the step: before clipping and the optimizer
            average_ignored_gradients(self.model)
        return loss

    def train(self, *a, **kw):
        try:
            return super().train(*a, **kw)
        except BaseException as e:
            self._close_progress_bars()  # Trainer closes them in on_train_end, which a raise skips
            if isinstance(e, Diverged) and e.step is None:  # raised where the step is unknown (NaN mask
                e.step = self.state.global_step  # scores): the step whose update made them
            raise

    def _close_progress_bars(self):
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, ProgressCallback) and cb.training_bar is not None:
                cb.training_bar.close()
                cb.training_bar = None

    def _determine_best_metric(self, metrics, trial) -> bool:
        # train.select=best: evaluations before the final phase (sparsity still ramping) never count
        if self._best_eligible is not None and not self._best_eligible(self.state.global_step):
            return False
        return super()._determine_best_metric(metrics, trial)

    def create_optimizer(self, model=None):
        if self._method_groups is None or self.optimizer is not None:
            return super().create_optimizer(model) if model is not None else super().create_optimizer()
        # the Trainer's own optimizer choice (train args' optim, lr, betas, eps); groups without their own
        # weight_decay take the run's, as the Trainer's default groups do
        opt_cls, opt_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model or self.model)
        self.optimizer = opt_cls(self._method_groups, **opt_kwargs, weight_decay=self.args.weight_decay)
        return self.optimizer


class TimingCallback(TrainerCallback):
    """Wall time of the training steps only (evaluation and saving excluded)."""

    def __init__(self):
        self.train_seconds = 0.0
        self.steps = 0
        self._t0 = None

    def on_step_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if self._t0 is not None:
            self.train_seconds += time.perf_counter() - self._t0
            self.steps += 1
            self._t0 = None


def eval_at_start(trainer: Trainer) -> dict | None:
    """The evaluation logged before the first step (train.eval_on_start), per metric, first eval split."""
    first = next((h for h in trainer.state.log_history if h.get("step") == 0 and any(k.startswith("eval_") for k in h)), None)
    if first is None:
        return None
    split = next(iter(trainer.eval_dataset)) if isinstance(trainer.eval_dataset, dict) else None
    prefix = f"eval_{split}_" if split else "eval_"
    return {k.removeprefix(prefix): v for k, v in first.items() if k.startswith(prefix)}


def train_loss_history(trainer: Trainer) -> tuple[float | None, list[dict]]:
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return (logs[-1]["loss"] if logs else None), logs


class FreshStorageOnResume(TrainerCallback):
    """After a checkpoint load, copy every parameter into freshly allocated memory.

    Weights loaded from safetensors can live in storage laid out differently from the allocator's, and
    CPU kernels then round differently in the last bit; with fresh storage a resumed run is bit-exact."""

    def on_train_begin(self, args, state, control, model=None, **kw):
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                t.data = t.data.clone()
