"""Config validation: typed keys, unknown keys (also via `+key=`), non-finite numbers, impossible values,
precision the machine cannot honour; all of it before torch or transformers load."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_cfg

from sparsetune.method_schemas import METHOD_SCHEMAS
from sparsetune.registry import METHODS
from sparsetune.validate import ConfigError, check

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_method_has_a_schema_and_every_schema_a_method():
    assert sorted(METHOD_SCHEMAS) == METHODS.names()
    for name in METHODS.names():
        assert METHODS.get(name).Config is METHOD_SCHEMAS[name]


@pytest.mark.parametrize("overrides,message", [
    (["+method.sparsty=0.5"], r"method.sparsty is not a config key \(did you mean method.sparsity\?"),
    (["+hardware.fsdp=full_shard"], "hardware.fsdp=full_shard needs hardware.device=cuda"),  # a key since FSDP is a profile
    (["+train.epoch=2"], "did you mean train.epochs"),
    (["+foo=1"], "foo is not a config key"),
    (["+eval.perplexity.chunks=3"], "eval.perplexity.chunks is not a config key"),
    (["train.lr=nan"], "train.lr=nan is not a finite number"),
    (["train.lr=inf"], "train.lr=inf is not a finite number"),
    (["method.beta=-inf"], "method.beta=-inf is not a finite number"),
    (["train.max_steps=-5"], r"train.max_steps=-5 must be a step count \(0 = evaluate only, no training\), or -1"),
    (["mask_schedule.warmup=0.5", "mask_schedule.cooldown=0.5"], "their sum must be < 1"),
    (["hardware.precision=bf16"], "hardware.precision=bf16 needs hardware.device=cuda"),
    (["train.save_total_limit=0"], "train.save_total_limit=0 must be >= 1"),
    (["method=speft", "method.match_lora_rank=0"], "method.match_lora_rank must be >= 1"),
    (["method=spp", "method.pattern=2:4", "method.sparsity=0.7"], "contradicts"),
    (["method=spp", "salience=gradient"], r"salience \(the pruner of method=spp\) must be one of"),
    (["method=pst", "method.score_terms=[lowrank,lowrank]"], "without repeats"),
])
def test_bad_config_fails_in_the_config_checks(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check(compose_cfg(overrides))


@pytest.mark.parametrize("overrides", [
    [], ["method=full", "method.sparsity=0.5"], ["method=lora"], ["method=speft"], ["method=spp"], ["method=lora_star"],
    ["experiment=pst-glue-bert"], ["experiment=spp-alpaca-llama7b"], ["experiment=speft-glue-opt350m"],
    ["method=speft", "task.data_files={train: /x/train.jsonl}", "+task.options.foo=1"],  # open mappings take keys
])
def test_valid_configs_pass(overrides):
    check(compose_cfg(overrides))


def test_config_checks_import_neither_torch_nor_transformers():
    code = ("import sys, sparsetune.schema, sparsetune.validate, sparsetune.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("arg,message", [
    ("train.batch_size=abc", "could not be converted to Integer"),  # Hydra's compose-time type error
    ("method=nope", "Could not find 'method/nope'; available options in 'method': full, lora,"),
    ("+method.sparsty=0.5", "did you mean method.sparsity"),
    ("train.lr=nan", "train.lr=nan is not a finite number"),
])
def test_cli_bad_input_exits_2_without_traceback(tmp_path, arg, message):
    proc = subprocess.run([sys.executable, "train.py", arg, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")  # one line, also Hydra's
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_one_problem_is_one_line_several_are_listed():
    with pytest.raises(ConfigError) as one:
        check(compose_cfg(["train.lr=nan"]))
    assert str(one.value) == "invalid configuration: train.lr=nan is not a finite number"
    with pytest.raises(ConfigError) as two:
        check(compose_cfg(["train.batch_size=0", "train.warmup_ratio=2.0"]))
    assert str(two.value).splitlines()[1:] == ["  - train.batch_size=0 must be > 0", "  - train.warmup_ratio=2.0 must be in [0, 1)"]
