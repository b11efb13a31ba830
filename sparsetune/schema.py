"""Typed schemas for the config groups, registered in Hydra's ConfigStore.

Each group YAML starts with `defaults: [/schema/<group>@_here_: <schema>, _self_]`, so a typo'd key or a
wrong type fails at compose time with the key's name. Method schemas live in method_schemas.py (registered
under their registry name); `RootConfig` types the entry config's own keys (seed, train.*, ...).
Keys added with Hydra's `+key=value` bypass struct mode; validate.unknown_keys catches them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from .method_schemas import METHOD_SCHEMAS


def open_dict_node() -> DictConfig:
    """An empty mapping that takes new keys from the command line (task.data_files={train: x.jsonl})
    even though the composed config is in struct mode."""
    return DictConfig({}, flags={"struct": False})


@dataclass
class ScheduleConfig:
    name: str = MISSING
    initial_sparsity: float = 0.0
    warmup: float = 0.1  # fraction of total steps (or a step count when >= 1)
    cooldown: float = 0.3
    update_every: int = 1  # steps between mask updates (cubic); dynamic SPEFT re-selection interval
    reset_optimizer: bool = True


@dataclass
class HardwareConfig:
    name: str = MISSING
    device: str = "cpu"  # cpu | cuda | auto (cuda when a GPU is visible, else cpu: then fp32 whatever the precision)
    precision: str = "fp32"  # fp32 | bf16 | fp16
    num_threads: int | None = 1
    dataloader_workers: int = 0
    gradient_checkpointing: bool = False
    fsdp: str | None = None  # null = DDP when launched as several processes | full_shard (FSDP2 through the Trainer)
    fsdp_cpu_offload: bool = False  # FSDP: sharded parameters, gradients and optimizer state live in CPU memory


@dataclass
class ModelConfig:
    name: str = MISSING
    source: str = "hub"  # hub | embedded | tiny
    hub_id: str | None = None
    path: str | None = None  # a local directory overrides hub_id / embedded package
    embedded: str | None = None  # name of a PyPI-installed model (minilm-l6, smollm2-135m)
    pretrained: bool = True
    family: str = "bert"  # bert | roberta | gpt2 | opt | llama | gemma2 | qwen2
    arch: dict[str, Any] = field(default_factory=dict)  # config fields: dry runs build the skeleton from these
    target_modules: list[str] = field(default_factory=list)  # every prunable matrix of the blocks
    attention_modules: list[str] = field(default_factory=list)  # q/k/v/o only (method.targets=attention)
    exclude_modules: list[str] = field(default_factory=list)
    fused_modules: dict[str, int] = field(default_factory=dict)  # GPT-2 c_attn: 3 (q|k|v)
    head_modules: list[str] = field(default_factory=list)  # task head of classification models
    head_final: list[str] = field(default_factory=list)
    dtype: str = "auto"  # auto = fp32 weights (mixed precision casts on the fly) | fp32 | bf16 | fp16 (16-bit base weights)
    decoder_layers: str | None = None  # attribute path of the decoder blocks (post-training pruners)


@dataclass
class TaskConfig:
    name: str = MISSING
    loader: str = MISSING
    kind: str = "classification"  # classification | regression | causal_lm
    hub_id: str | None = None
    hub_config: str | None = None
    data_dir: str | None = None
    data_files: dict[str, str] = field(default_factory=lambda: open_dict_node())  # split -> jsonl/csv/parquet with the hub's columns
    text_fields: list[str] = field(default_factory=list)
    label_field: str = "label"
    missing_labels: str = "drop"  # rows without a label: drop (counted in results.json data.dropped_rows, warned) | error
    num_labels: int = 2
    metrics: list[str] = field(default_factory=list)
    main_metric: str = "accuracy"
    train_split: str = "train"
    eval_splits: list[str] = field(default_factory=lambda: ["validation"])
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    options: dict[str, Any] = field(default_factory=lambda: open_dict_node())  # loader-specific (loaders check keys)


@dataclass
class SalienceConfig:
    name: str = MISSING
    num_batches: int = 64  # data-aware metrics: expectation over this many training batches
    batch_size: int = 16
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: float = 3
    max_steps: int = -1  # > 0 overrides epochs; -1 = train for `epochs`; 0 = evaluate only (apply, evaluate, export)
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    lr: float = 5.0e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    warmup_steps: int = 0  # > 0: an absolute lr warm-up length, overriding warmup_ratio
    lr_scheduler: str = "linear"
    label_smoothing: float = 0.0  # the Trainer's label_smoothing_factor (the PST GPT-2 reference uses 0.1)
    adam_epsilon: float = 1.0e-8
    max_grad_norm: float = 1.0
    eval_strategy: str = "epoch"  # epoch | steps | no
    eval_steps: int | None = None
    eval_on_start: bool = False
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 10
    # last = export the final model | best = the checkpoint of the best dev score (task.main_metric) among the
    # evaluations of the final phase, where a scheduled sparsity has reached its target (the PST reference's rule)
    select: str = "last"


@dataclass
class LoggerConfig:
    name: str = MISSING  # none | wandb | tensorboard
    project: str | None = None
    mode: str | None = None  # wandb: offline | online | disabled


@dataclass
class PathsConfig:
    output_root: str = "outputs"
    cache_dir: str = MISSING


@dataclass
class RootConfig:
    """The entry config's own keys; each group node is checked against its group's schema."""

    seed: int = 42
    dry_run: bool = False
    resume: str | None = None
    overwrite: bool = False
    force_resume: bool = False
    export: bool = True
    export_compressed: Any = "auto"  # auto | true | false (validate.CHOICES; a bool or 'auto', so not typed str)
    objective: str | None = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)
    model: Any = None
    method: Any = None
    salience: Any = None
    mask_schedule: Any = None
    task: Any = None
    hardware: Any = None
    eval: Any = None
    logger: Any = None
    paths: Any = None


def register() -> None:
    """Store every schema in Hydra's ConfigStore. Imports no torch: config errors stay fast."""
    from .evaluation.schema import EvalConfig

    cs = ConfigStore.instance()
    cs.store(name="schema_root", node=RootConfig)
    cs.store(group="schema/logger", name="base", node=LoggerConfig)
    cs.store(group="schema/paths", name="base", node=PathsConfig)
    cs.store(group="schema/mask_schedule", name="base", node=ScheduleConfig)
    cs.store(group="schema/hardware", name="base", node=HardwareConfig)
    cs.store(group="schema/model", name="base", node=ModelConfig)
    cs.store(group="schema/task", name="base", node=TaskConfig)
    cs.store(group="schema/salience", name="base", node=SalienceConfig)
    cs.store(group="schema/eval", name="base", node=EvalConfig)
    for name, schema in METHOD_SCHEMAS.items():
        cs.store(group="schema/method", name=name, node=schema)
