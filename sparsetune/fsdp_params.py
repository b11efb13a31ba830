"""Full tensors for the code that works on weights while the Trainer trains under FSDP2 (hardware.fsdp=full_shard).

Under FSDP2 every parameter of the model is a DTensor holding this rank's shard (dim 0) between forward passes. A
method's mask update ranks the whole matrix (top-k of |W|, of movement scores, of PST's scores) and its merge writes
whole matrices, so both work on gathered tensors:

- `gathered(modules, device)`: inside, each sharded parameter of `modules` is its full tensor (all-gathered, the same
  on every rank); on exit each rank copies its shard of the values back (no communication: every rank holds the
  same full tensor) and the sharded parameter is registered again. Collective: every rank enters it in the same order.
- `GatheredCallback`: a method's Trainer callback whose events run inside `gathered(method.layers)`.
- `to_plain(model, device)`: after training, the model becomes an ordinary module again on every rank (full
  parameters, FSDP's classes and hooks removed), so merge, evaluation, export and rank 0's evaluators run as under DDP.
  `PlainAtTrainEnd` does it first thing at on_train_end, before the methods' own on_train_end (LoRA* merges there).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from transformers import TrainerCallback


def _dtensor_cls():
    from torch.distributed.tensor import DTensor

    return DTensor


def block_classes(model: nn.Module) -> list[str] | None:
    """The model's repeated blocks (its `_no_split_modules`), each to become one FSDP unit; never a module that holds
    the input embeddings (BERT lists BertEmbeddings, which accelerate then shards a second time as the embeddings)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embed is not None:
        names -= {type(m).__name__ for m in model.modules() if any(sub is embed for sub in m.modules())}
    present = {type(m).__name__ for m in model.modules()}
    return sorted(names & present) or None


def _full(p, device: torch.device) -> torch.Tensor:
    """The whole of sharded parameter `p` on `device` (collective). With CPU offload the shards live in CPU memory
    while the process group gathers on the GPU: they are moved there first."""
    DTensor = _dtensor_cls()
    local = p.to_local()
    if local.device != device:
        p = DTensor.from_local(local.to(device), p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride())
    return p.full_tensor().to(device)


def is_sharded(model: nn.Module) -> bool:
    DTensor = _dtensor_cls()
    return any(isinstance(p, DTensor) for p in model.parameters())


@contextmanager
def gathered(modules, device: torch.device):
    """Inside: the sharded parameters of `modules` as full tensors on `device`; on exit, each rank keeps its shard."""
    DTensor = _dtensor_cls()
    from torch.distributed.tensor import distribute_tensor

    swapped = []
    with torch.no_grad():
        for module in modules:
            for name, p in list(module._parameters.items()):
                if isinstance(p, DTensor):
                    full = nn.Parameter(_full(p, device), requires_grad=p.requires_grad)
                    module._parameters[name] = full
                    swapped.append((module, name, p, full))
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, sharded, _ in swapped:
                # this rank's shard of the (possibly changed) full tensor, by the sharded parameter's own placement
                current = module._parameters[name].detach()
                mine = distribute_tensor(current, sharded.device_mesh, sharded.placements, src_data_rank=None)
                sharded.to_local().copy_(mine.to_local())
                module._parameters[name] = sharded


class GatheredCallback(TrainerCallback):
    """`inner`'s events with the method's layers gathered (only the events `inner` implements)."""

    def __init__(self, inner: TrainerCallback, method, device: torch.device):
        self.inner, self.method, self.device = inner, method, device
        for event in ("on_step_begin", "on_step_end", "on_optimizer_step", "on_pre_optimizer_step", "on_substep_end",
                      "on_epoch_begin", "on_epoch_end", "on_evaluate", "on_save", "on_train_begin"):
            if getattr(type(inner), event) is not getattr(TrainerCallback, event):
                setattr(self, event, self._wrapped(getattr(inner, event)))
        if type(inner).on_train_end is not TrainerCallback.on_train_end:  # PlainAtTrainEnd has run: nothing sharded
            self.on_train_end = inner.on_train_end

    def _wrapped(self, fn):
        def call(args, state, control, **kw):
            layers = list(getattr(self.method, "layers", {}).values())
            with gathered(layers, self.device):
                return fn(args, state, control, **kw)
        return call


def gathering(callbacks: list, method, device: torch.device) -> list:
    """The method's callbacks for a run under FSDP (one that may not be sharded yet is wrapped all the same)."""
    return [GatheredCallback(cb, method, device) for cb in callbacks]


def _fsdp_hook(fn) -> bool:
    """Whether `fn` (or what it wraps: FSDP decorates its hooks) is defined in torch.distributed.fsdp."""
    seen = 0
    while fn is not None and seen < 8:
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is not None and "/distributed/fsdp/" in code.co_filename.replace("\\", "/"):
            return True
        fn, seen = getattr(fn, "__wrapped__", None) or getattr(getattr(fn, "__func__", None), "__wrapped__", None), seen + 1
    return False


def _drop_fsdp(module: nn.Module) -> None:
    """Undo what fully_shard did to `module` besides its parameters: the wrapper class and the forward hooks (and
    the forward methods it registered, e.g. the Trainer's `generate`)."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(module, FSDPModule):
        module.__class__ = next(c for c in type(module).__bases__ if c is not FSDPModule)
    for hooks, with_kwargs in ((module._forward_pre_hooks, module._forward_pre_hooks_with_kwargs),
                               (module._forward_hooks, module._forward_hooks_with_kwargs)):
        for key in [k for k, fn in hooks.items() if _fsdp_hook(fn)]:
            del hooks[key]
            with_kwargs.pop(key, None)
            module._forward_hooks_always_called.pop(key, None)
    for attr in [a for a, v in vars(module).items() if callable(v) and _fsdp_hook(v)]:
        delattr(module, attr)


@torch.no_grad()
def to_plain(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` (in place) with full parameters on `device` and without FSDP. Collective when sharded."""
    DTensor = _dtensor_cls()
    full: dict[int, nn.Parameter] = {}  # a tied parameter (embeddings / lm_head) stays one parameter
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if isinstance(p, DTensor):
                if id(p) not in full:
                    full[id(p)] = nn.Parameter(_full(p, device), requires_grad=p.requires_grad)
                module._parameters[name] = full[id(p)]
        _drop_fsdp(module)
    return model


class PlainAtTrainEnd(TrainerCallback):
    """First of the run's callbacks under FSDP: at the end of training, the trained model as a plain module."""

    def __init__(self, device: torch.device):
        self.device = device

    def on_train_end(self, args, state, control, model=None, **kw):
        if model is not None and is_sharded(model):
            to_plain(model, self.device)
