"""The GPU profiles on a real device (marker gpu: skipped where no CUDA device is visible, so never in CI; run on a
GPU machine with `pytest -m gpu`). The same contract as on CPU: sparsity on target, zeros kept, export reloads."""
import pytest
import torch

from sparsetune.run import run

pytestmark = pytest.mark.gpu


def test_pst_trains_in_bf16_on_the_gpu_and_keeps_its_sparsity(tiny_cfg, tmp_path):
    res = run(tiny_cfg("hardware=gpu", "method=pst", "method.sparsity=0.5"), tmp_path)
    assert res["status"] == "completed" and res["env"]["device"].startswith("cuda")
    assert res["sparsity"]["achieved"] == pytest.approx(0.5, abs=1e-3)
    assert res["export"]["reload_same_zeros"] is True


def test_spp_adapters_stay_fp32_under_an_fp16_base_with_the_grad_scaler(tiny_cfg, tmp_path):
    res = run(tiny_cfg("hardware=gpu-fp16", "model=tiny-llama", "model.dtype=fp16", "method=spp", "salience=magnitude",
                       "method.pattern=2:4", "method.sparsity=null"), tmp_path)
    assert res["status"] == "completed" and torch.isfinite(torch.tensor(res["metrics"]["train_loss"]))
    assert res["sparsity"]["achieved"] == pytest.approx(0.5, abs=1e-3)
    assert res["sparsity"]["max_abs_count_error_per_matrix"] == 0
