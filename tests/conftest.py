"""Shared fixtures: offline env, one torch thread, composing the real conf/ tree, and tiny runs."""
from __future__ import annotations

import os

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ[var] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("SPARSETUNE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "sparsetune"))
if "HF_DATASETS_CACHE" not in os.environ:  # the tests' many temporary data files stay out of the user's cache
    import atexit
    import shutil
    import tempfile

    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="sparsetune-tests-datasets-")
    atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

import sparsetune.schema  # noqa: E402

torch.set_num_threads(1)
CONF = str(Path(__file__).resolve().parents[1] / "conf")
sparsetune.schema.register()

# a few optimizer steps on a tiny random BERT and a few hundred generated examples
TINY = ["model=tiny-bert", "task=synthetic/sentiment", "task.max_train_samples=64", "task.max_eval_samples=32",
        "train.batch_size=8", "train.max_steps=8", "train.save_steps=4", "train.logging_steps=2", "train.eval_strategy=no",
        "train.lr=1e-3", "mask_schedule.warmup=0.25", "mask_schedule.cooldown=0.25"]


def has_optuna_sweeper() -> bool:
    """Whether the optional extra (pip install ".[optuna]") is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:
        return False


def compose_cfg(overrides: list[str] | tuple = ()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.fixture
def tiny_cfg():
    return lambda *extra: compose_cfg([*TINY, *extra])


def method_cfg(model: str, method: str, schedule: str = "cubic", **method_fields):
    """The config a run would compose (real conf/ files, schemas), with method fields set directly."""
    cfg = compose_cfg([f"model={model}", f"method={method}", f"mask_schedule={schedule}"])
    for key, value in method_fields.items():
        cfg.method[key] = value
    return cfg


def apply_method(model, cfg, total_steps: int = 10, dry_run: bool = False):
    """Validate and apply cfg.method to `model` outside a training run; returns the method object."""
    from sparsetune.methods.base import MethodContext
    from sparsetune.registry import METHODS

    method = METHODS.get(cfg.method.name)(cfg)
    method.validate(cfg)
    method.apply(model, MethodContext(cfg, total_steps=total_steps, dry_run=dry_run))
    return method


def merge_and_reload(model, method, input_ids, out_dir):
    """Merge `method` into plain weights (outputs must not change), save_pretrained, reload; returns
    (merged outputs, reloaded model) for the caller's own checks on the export."""
    model.eval()
    with torch.no_grad():
        before = model(input_ids=input_ids).logits
        method.merge(model)
        after = model(input_ids=input_ids).logits
    assert torch.allclose(before, after, atol=1e-6)
    model.save_pretrained(out_dir)
    return after, type(model).from_pretrained(out_dir).eval()


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run only where CUDA is visible (never in CI); elsewhere they are skipped, saying why."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marker gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
