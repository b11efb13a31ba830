"""FSDP as a hardware profile (`hardware=gpu-fsdp`, `gpu-fsdp-offload`, or `hardware.fsdp=full_shard` on any profile):
which methods it serves, the checks made before anything loads, and the Trainer arguments it maps to. No torch
import, so a refused combination fails in about a second.

FSDP here is torch's FSDP2 (`fully_shard`, FULL_SHARD: parameters, gradients and optimizer state sharded over the
processes of a torchrun launch) through the Trainer. A method's own work on the weights sees full tensors
(fsdp_params.py): SPP / LoRA* prune once before the model is sharded; MaP / MvP / PST recompute their masks with the
target matrices gathered on every rank; after training the model is gathered into a plain one on every rank for
the merge, the evaluation and the export (so the merged model, not the training state, must fit one device).
"""
from __future__ import annotations

MODES = ("full_shard",)
# accelerate shards only on accelerators (on CPU it silently falls back to DDP); tests/fsdp_on_cpu.py widens this
# to run FSDP2 over gloo in the tests
DEVICES = ("cuda",)


def unsupported(cfg) -> str | None:
    """Why FSDP cannot serve this method (with what to use instead), or None when it can."""
    method, schedule = str(cfg.method.name), str(cfg.mask_schedule.name)
    if method == "speft" and schedule == "dynamic":
        return ("method=speft with mask_schedule=dynamic is not supported under FSDP (hardware.fsdp=full_shard): every "
                "re-selection resizes the trainable values, which FSDP's sharded parameters cannot follow; use DDP "
                "(hardware=gpu under torchrun) or mask_schedule=static")
    return None


def errors(cfg, world_size: int) -> list[str]:
    """What is wrong with the FSDP settings of `cfg` for a launch of `world_size` processes."""
    hw = cfg.hardware
    mode = hw.get("fsdp")
    if mode is None:
        if hw.get("fsdp_cpu_offload"):
            return ["hardware.fsdp_cpu_offload=true needs hardware.fsdp=full_shard (or use hardware=gpu-fsdp-offload)"]
        return []
    if mode not in MODES:
        return [f"hardware.fsdp={mode!r} is not one of {[None, *MODES]}"]
    out = []
    if hw.device not in DEVICES:
        out.append(f"hardware.fsdp={mode} needs hardware.device=cuda (got {hw.device}): accelerate shards only on GPUs; "
                   "on CPU launch data-parallel instead: torchrun --nproc_per_node=N train.py hardware=cpu ...")
    if world_size < 2 and not cfg.get("dry_run"):
        out.append(f"hardware.fsdp={mode} shards over several processes: launch with torchrun --nproc_per_node=N train.py "
                   "... (N >= 2), or use hardware=gpu for one process")
    if reason := unsupported(cfg):
        out.append(reason)
    return out


def trainer_args(cfg, wrap: list[str] | None = None) -> dict:
    """TrainingArguments for the FSDP settings (none without them); `wrap`: the class names of the blocks that
    become one FSDP unit each (fsdp_params.block_classes), None = one unit for the whole model."""
    hw = cfg.hardware
    if not hw.get("fsdp"):
        return {}
    policy = {"auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "transformer_layer_cls_to_wrap": list(wrap)} if wrap else \
        {"auto_wrap_policy": "NO_WRAP"}
    return {"fsdp": True, "fsdp_config": {
        "version": 2,
        "reshard_after_forward": True,  # FULL_SHARD (False would be SHARD_GRAD_OP)
        "cpu_offload": bool(hw.get("fsdp_cpu_offload")),
        **policy,
        "state_dict_type": "FULL_STATE_DICT",  # checkpoints hold the whole model, as without FSDP
    }}


def enabled(cfg) -> bool:
    return bool(cfg.hardware.get("fsdp"))


def record(cfg) -> dict:
    """What results.json says about sharding (launch.sharding)."""
    if not enabled(cfg):
        return {}
    return {"sharding": f"fsdp2:{cfg.hardware.fsdp}", "fsdp_cpu_offload": bool(cfg.hardware.get("fsdp_cpu_offload"))}
