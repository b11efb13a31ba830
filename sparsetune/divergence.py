"""Stop a run the moment it diverges: non-finite training loss, gradients, weights or evaluation loss.

Every check raises `Diverged`, so a diverged run is one kind of outcome however it was noticed (the run
records `status: diverged` with the step instead of exporting NaN weights as a result).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from contextlib import contextmanager

import torch
from transformers import TrainerCallback

# values whose non-finiteness means the training diverged. Other metrics can be undefined on a healthy
# model (Pearson/Spearman of constant predictions are NaN) and are left to the record.
DIVERGENCE_KEYS = ("loss", "grad_norm", "perplexity")


class Diverged(RuntimeError):
    """The training produced non-finite numbers. `what` says which, `step` the optimizer step (None: unknown)."""

    def __init__(self, what: str, step: int | None = None):
        self.what = what
        self.step = step
        super().__init__(what)

    def __str__(self) -> str:  # built on use: a caller may fill in `step` after the raise
        return self.what if self.step is None else f"{self.what} at step {self.step}"


def _is_finite_number(value) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    return math.isfinite(value)


def finite_gradients(grads: list[torch.Tensor]) -> bool:
    """Whether every gradient is finite. Under FSDP each rank holds a shard of each gradient (its own may be empty):
    every rank checks its shards and all take the same answer, so all stop or none."""
    from torch.distributed.tensor import DTensor

    sharded = any(isinstance(g, DTensor) for g in grads)
    local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    local = [g for g in local if g.numel()]
    finite = not local or bool(torch.isfinite(torch.nn.utils.get_total_norm(local, norm_type=float("inf"))))
    if sharded:
        import torch.distributed as dist

        flag = torch.tensor([int(finite)])  # a CPU tensor: the process group's gloo side
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite = bool(flag.item())
    return finite


def check_finite_model(model: torch.nn.Module, step: int | None = None, trainable_only: bool = False) -> None:
    """Raise Diverged naming the first parameter holding NaN/inf (one host sync per device)."""
    named = [(n, p) for n, p in model.named_parameters()
             if p.device.type != "meta" and p.is_floating_point() and (p.requires_grad or not trainable_only)]
    if not named:
        return
    flags = torch.stack([torch.isfinite(p.detach()).all().to(named[0][1].device) for _, p in named])
    if bool(flags.all()):
        return
    name, p = named[int((~flags).nonzero()[0])]
    bad = int((~torch.isfinite(p.detach())).sum())
    raise Diverged(f"non-finite weights in {name} ({bad} of {p.numel()} entries NaN/inf)", step)


def check_finite_metrics(metrics: Mapping, step: int | None = None) -> None:
    """Raise Diverged on a non-finite loss, grad norm or perplexity anywhere in `metrics` (nested dicts too)."""
    for key, value in _numbers(metrics):
        if any(k in key for k in DIVERGENCE_KEYS) and not _is_finite_number(value):
            shown = value.detach().float().mean().item() if isinstance(value, torch.Tensor) else value
            raise Diverged(f"non-finite {key} ({shown})", step)


def _numbers(metrics: Mapping, prefix: str = "") -> Iterable[tuple[str, object]]:
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _numbers(value, f"{name}.")
        elif isinstance(value, torch.Tensor) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            yield name, value


class DivergenceGuard(TrainerCallback):
    """Raises Diverged from inside Trainer.train() as soon as training goes non-finite:

    - the loss of every training micro-batch (a forward hook on the model: the loss tensor is checked
      where it is made, so a NaN step is never averaged into a logged loss; one host sync per micro-batch,
      as Trainer's own NaN filter costs),
    - the gradients before every optimizer step (so NaN/inf never reaches the weights; clipping turns an
      inf or NaN norm into NaN entries, which this sees) - except under fp16, whose loss scaler expects
      overflowing gradients now and then and skips those steps itself,
    - every logged loss / grad norm (grad norm not under fp16) and every evaluation loss,
    - the trainable parameters at every logging step and at the end of training.
    Steps are optimizer steps counted from 1: "at step 3" is the third update (or its forward pass).
    Requires TrainingArguments(logging_nan_inf_filter=False), or Trainer would log NaN losses as finite."""

    def __init__(self):
        self._hook = None
        self._state = None
        self._loss_scaled = False

    def on_train_begin(self, args, state, control, model=None, **kw):
        if args.logging_nan_inf_filter:
            raise ValueError("DivergenceGuard needs TrainingArguments(logging_nan_inf_filter=False)")
        self._state = state
        self._loss_scaled = bool(args.fp16)
        self._remove_hook()
        self._hook = model.register_forward_hook(self._check_loss)

    def _check_loss(self, module, inputs, output):
        if not module.training:  # evaluation losses go through on_log / on_evaluate
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if loss is not None and not _is_finite_number(loss):
            self._stop(f"non-finite training loss ({float(loss.detach().float().mean())})", self._state.global_step + 1)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        if self._loss_scaled:
            return
        # a SPEFT layer can hold no selected entry (global ranking): its empty gradient has no norm to take
        grads = [p.grad for p in model.parameters() if p.grad is not None and p.grad.numel()]
        if grads and not finite_gradients(grads):
            self._stop("non-finite gradients", state.global_step + 1)

    def on_log(self, args, state, control, logs=None, model=None, **kw):
        logs = {k: v for k, v in (logs or {}).items() if not (self._loss_scaled and k == "grad_norm")}
        with self._unhooked_on_raise():
            check_finite_metrics(logs, state.global_step)
            if model is not None and "loss" in logs:  # a training log: check the weights too
                check_finite_model(model, state.global_step, trainable_only=True)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        with self._unhooked_on_raise():
            check_finite_metrics(metrics or {}, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kw):
        self._remove_hook()
        if model is not None:
            check_finite_model(model, state.global_step, trainable_only=True)

    def _stop(self, what: str, step: int):
        self._remove_hook()  # Trainer skips on_train_end when train() raises; leave the model as it was
        raise Diverged(what, step)

    @contextmanager
    def _unhooked_on_raise(self):
        try:
            yield
        except Diverged:
            self._remove_hook()
            raise

    def _remove_hook(self):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
