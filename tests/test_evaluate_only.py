"""train.max_steps=0: apply the method (e.g. prune), evaluate and export with no training step: the papers'
"Dense" and "pruned, not retrained" rows as one command."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from sparsetune.run import run


def exported_weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_dense_evaluate_only_scores_the_untouched_model(tiny_cfg, tmp_path):
    res = run(tiny_cfg("method=full", "train.max_steps=0"), tmp_path / "dense")
    assert res["status"] == "completed" and res["evaluate_only"] is True
    assert res["timing"]["steps"] == 0 and res["metrics"]["train_loss"] is None
    assert set(res["metrics"]["eval"]) >= {"loss", "accuracy"}
    assert not list((tmp_path / "dense").glob("checkpoints/checkpoint-*"))  # nothing trained, nothing saved
    # scored as the model starts: the same numbers as train.eval_on_start of a run that then trains
    trained = run(tiny_cfg("method=full", "train.eval_on_start=true"), tmp_path / "trained")
    assert res["metrics"]["eval"]["loss"] == pytest.approx(trained["metrics"]["eval_start"]["loss"], abs=1e-6)


@pytest.mark.parametrize("method,overrides", [
    ("spp", ["salience=magnitude", "method.pattern=2:4", "method.sparsity=null"]),
    ("lora_star", ["salience=magnitude", "method.sparsity=0.6"]),
    ("magnitude", ["method.sparsity=0.7", "mask_schedule=constant"]),
])
def test_pruned_not_retrained(tiny_cfg, tmp_path, method, overrides):
    res = run(tiny_cfg("model=tiny-llama", "task=synthetic/sentiment", f"method={method}", *overrides,
                       "train.max_steps=0"), tmp_path)
    assert res["status"] == "completed" and res["timing"]["steps"] == 0
    s = res["sparsity"]
    assert s["achieved"] == pytest.approx(s["target"], abs=1e-3) and s["max_abs_count_error_per_matrix"] <= 1
    assert res["export"]["reload_same_zeros"] and res["export"]["reload_max_abs_diff"] == 0.0
    assert all(torch.isfinite(t).all() for t in exported_weights(tmp_path).values())
