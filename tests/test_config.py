"""Every option of every group composes; typos and wrong types fail at compose time."""
from pathlib import Path

import pytest
from conftest import CONF, compose_cfg
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

GROUPS = ["model", "method", "salience", "mask_schedule", "task", "hardware", "logger", "paths", "debug", "experiment", "local"]


def options(group: str) -> list[str]:
    root = Path(CONF) / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    if group in ("model", "method", "task", "hardware", "mask_schedule", "salience"):
        assert cfg[group].name  # every group config names itself (used in run dirs and records)


def test_defaults_are_the_embedded_demo():
    cfg = compose_cfg()
    assert cfg.model.name == "minilm-l6" and cfg.task.name == "synthetic_sentiment"
    assert cfg.model.source == "embedded" and cfg.method.name == "pst" and cfg.method.sparsity == 0.9


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg(["method=nope"])
    assert "Available options" in str(e.value.__cause__ or e.value) or "magnitude" in str(e.value.__cause__ or e.value)


def test_typo_in_key_fails_at_compose_time():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_cfg(["method.sparsty=0.5"])
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_cfg(["train.btach_size=4"])


def test_wrong_type_fails_at_compose_time():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg(["method.sparsity=lots"])
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg(["task.max_length=long"])


def test_device_auto_resolves_to_the_visible_hardware(tmp_path):
    import json

    import torch

    from sparsetune.run import run
    from sparsetune.validate import checked_method

    cfg = compose_cfg(["model=tiny-bert", "debug=fast", "method=lora", "hardware.device=auto", "hardware.precision=bf16"])
    checked_method(cfg)
    assert cfg.hardware.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():  # on CPU the run trains in fp32 whatever the precision says
        cfg = compose_cfg(["model=tiny-bert", "debug=fast", "method=lora", "hardware.device=auto"])
        res = run(cfg, tmp_path / "run")
        assert res["status"] == "completed"
        assert json.loads((tmp_path / "run" / "results.json").read_text())["config"]["hardware"]["device"] == "auto"
