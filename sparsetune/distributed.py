"""Runs launched as several processes (`torchrun --nproc_per_node=N train.py ...`, `accelerate launch ...`): data
parallel training (DDP, through the Trainer) in which every process trains, and rank 0 alone writes the run dir
(results.json, checkpoints' method state, model/, model-compressed/, history.jsonl) and runs the evaluators.

- `launch()`: world size, rank, local rank and launcher, from the environment the launcher sets (no torch import).
- `init()`: the process group (gloo; plus nccl for CUDA tensors), made before Hydra names the run dir so that
  rank 0's start time and token name one dir for every rank (cli.py, run_names.py).
- `on_main(fn)`: rank 0 runs fn; every rank returns its result, or raises its exception.
- `main_first(fn)`: rank 0 runs fn first (filling caches), then the others run it too.
- `barrier()`.
The waits poll the process group's key-value store without a timeout: rank 0's evaluation or export can take
longer than any collective timeout, and if rank 0 dies the launcher ends the other ranks.
"""
from __future__ import annotations

import itertools
import logging
import os
import pickle
import time
from dataclasses import dataclass

from . import cluster_env
from .errors import ConfigError

log = logging.getLogger("sparsetune")

_keys = itertools.count()  # every rank makes the same calls in the same order, so the n-th key is shared


@dataclass(frozen=True)
class Launch:
    world_size: int
    rank: int
    local_rank: int
    launcher: str  # torchrun | accelerate | slurm | submitit_local | env (another launcher's WORLD_SIZE / RANK) | single

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def launch() -> Launch:
    env = os.environ
    cluster_env.apply(env)  # the tasks of a SLURM / submitit job: their variables as torch.distributed's
    world_size = _env_int("WORLD_SIZE", 1)
    if "ACCELERATE_DYNAMO_BACKEND" in env or "ACCELERATE_MIXED_PRECISION" in env:  # set by every `accelerate launch`
        launcher = "accelerate"
    elif "TORCHELASTIC_RUN_ID" in env:
        launcher = "torchrun"
    elif env.get(cluster_env.LAUNCHER_KEY):
        launcher = env[cluster_env.LAUNCHER_KEY]
    else:
        launcher = "env" if world_size > 1 else "single"
    return Launch(world_size, _env_int("RANK", 0), _env_int("LOCAL_RANK", 0), launcher)


def is_main() -> bool:
    return launch().main


# what the launcher set, read before any Trainer runs here: accelerate sets ACCELERATE_USE_FSDP itself for a
# hardware.fsdp run, which must not refuse the next job of a multirun
_LAUNCHED_WITH_FSDP = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_supported() -> None:
    """DDP, or FSDP through the config (hardware=gpu-fsdp: fsdp_config.py), not through accelerate's launcher config,
    which would bypass the method checks and the gathering of full tensors; DeepSpeed is not supported."""
    env = os.environ
    if _LAUNCHED_WITH_FSDP:
        raise ConfigError("FSDP from accelerate's launcher config is not used here: launch `torchrun --nproc_per_node=N "
                          "train.py hardware=gpu-fsdp ...` (or `accelerate launch --multi_gpu ... hardware=gpu-fsdp`)")
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise ConfigError("DeepSpeed is not supported: shard with FSDP instead (`torchrun --nproc_per_node=N train.py "
                          "hardware=gpu-fsdp ...`), or launch data-parallel (DDP) runs without DeepSpeed")


def init() -> Launch:
    """The process group of a multi-process launch (a no-op for one process, or when it exists already)."""
    info = launch()
    if not info.distributed:
        return info
    check_supported()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            # before any CUDA work: otherwise every rank's "cuda" is cuda:0
            torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")  # CPU objects over gloo, CUDA tensors over nccl
        else:
            dist.init_process_group(backend="gloo")
    return info


def active() -> bool:
    if not launch().distributed:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return launch().world_size if active() else 1


def device(kind: str):
    """The torch device of this rank for hardware.device `kind` (cuda: the local rank's GPU)."""
    import torch

    if kind != "cuda":
        return torch.device("cpu")
    info = launch()
    return torch.device("cuda", info.local_rank % max(torch.cuda.device_count(), 1)) if info.distributed else torch.device("cuda")


def _store():
    from torch.distributed.distributed_c10d import _get_default_store

    return _get_default_store()


def _poll(ready) -> None:
    delay = 0.005
    while not ready():
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def barrier() -> None:
    if not active():
        return
    store, key, n = _store(), f"sparsetune/barrier/{next(_keys)}", world_size()
    store.add(key, 1)
    _poll(lambda: store.add(key, 0) >= n)


def _pickled(outcome: str, value) -> bytes:
    try:
        return pickle.dumps((outcome, value))
    except Exception as e:  # an unpicklable result or exception: the others get its text
        return pickle.dumps(("error", RuntimeError(f"rank 0: {type(value).__name__}: {value} (not picklable: {e})")))


def on_main(fn):
    """fn() on rank 0; every rank returns its result or raises its exception. One process: fn()."""
    if not active():
        return fn()
    store, key = _store(), f"sparsetune/on_main/{next(_keys)}"
    if launch().main:
        try:
            value = fn()
        except BaseException as e:
            store.set(key, _pickled("error", e))
            raise
        store.set(key, _pickled("ok", value))
        return value
    _poll(lambda: store.check([key]))
    outcome, value = pickle.loads(store.get(key))
    if outcome == "error":
        raise value
    return value


def main_first(fn):
    """fn() on rank 0, then on the others (what it writes, e.g. a download or a cache, is there for them)."""
    if not active():
        return fn()
    kept = []
    on_main(lambda: kept.append(fn()))  # the others learn that it worked (or its exception), not its value
    return kept[0] if kept else fn()


def broadcast_tensors(tensors: dict) -> dict:
    """Rank 0's tensors (shapes may differ between ranks) on every rank, each on its own device."""
    if not active():
        return tensors
    import torch
    import torch.distributed as dist

    meta = [{k: (tuple(t.shape), t.dtype) for k, t in tensors.items()}]
    dist.broadcast_object_list(meta, src=0)
    out = {}
    for k, (shape, dtype) in meta[0].items():
        local = tensors[k]
        t = local if launch().main else torch.empty(shape, dtype=dtype, device=local.device)
        dist.broadcast(t, src=0)
        out[k] = t
    return out


def model_fingerprint(model) -> list[tuple]:
    """Per tensor: (name, non-zeros, sum, sum of squares); equal on every rank when the copies are the same."""
    import torch

    out = []
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if t.is_floating_point():
                d = t.detach().double()
                out.append((name, int(t.count_nonzero()), float(d.sum()), float((d * d).sum())))
            else:
                out.append((name, int(t.count_nonzero()), float(t.sum()), 0.0))
    return out


def compare_with_main(model) -> dict:
    """Whether every rank's copy of `model` (masks, zeros, values) is rank 0's: {ranks_agree, differing}."""
    if not active():
        return {"ranks_agree": True}
    import torch.distributed as dist

    mine = model_fingerprint(model)
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, mine)
    reference = dict((f[0], f) for f in gathered[0])
    differing = sorted({f[0] for prints in gathered[1:] for f in prints if reference.get(f[0]) != f}
                       | {n for prints in gathered[1:] for n in set(reference) - {f[0] for f in prints}})
    if differing:
        log.warning("the ranks' models differ in %d tensors (e.g. %s): rank 0's is exported", len(differing), differing[:3])
    return {"ranks_agree": not differing, "differing": differing[:20]} if differing else {"ranks_agree": True}


DDP_IGNORED = "_ddp_params_and_buffers_to_ignore"  # the model attribute DDP reads: names it neither syncs nor hooks


def average_ignored_gradients(model) -> None:
    """Average over the ranks the gradients of the parameters DDP was told to ignore (e.g. SPEFT's values, which a
    dynamic re-selection resizes: DDP's reducer cannot follow a parameter whose size changes). One all-reduce."""
    names = set(getattr(model, DDP_IGNORED, ()) or ())
    if not names or not active():
        return
    import torch
    import torch.distributed as dist

    params = [p for n, p in sorted(model.named_parameters()) if n in names and p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world_size()
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p).to(p.dtype)


def ddp_manages_nothing(model) -> bool:
    """Whether every trainable parameter is one DDP was told to ignore (DDP refuses to wrap such a model)."""
    names = set(getattr(model, DDP_IGNORED, ()) or ())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    return bool(names) and active() and all(n in names for n in trainable)
