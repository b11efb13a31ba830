"""2:4 semi-structured inference on CUDA (sparsetune.semi_structured) and bench_inference's --device cuda checks.

The eligibility rules and the error messages run on CPU; the kernel itself only in the test marked gpu (skipped
where no CUDA device is visible, so never in CI).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from sparsetune.masks import nm_mask, topk_mask
from sparsetune.semi_structured import (
    cuda_problem,
    groups_over_2of4,
    is_2of4,
    module_problem,
    plan_semi_structured,
    semi_structured_linears,
    shape_minimum,
)

ROOT = Path(__file__).resolve().parents[1]
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")


def linear_2of4(out_features: int, in_features: int, dtype=torch.float16, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(nm_mask(layer.weight.abs(), 2, 4))
    return layer.to(dtype)


def tiny_llama(dtype=torch.float16, tie: bool = False, prune_24: bool = True) -> LlamaForCausalLM:
    """Shapes that suit both backends: every matrix a multiple of 32 x 64."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie)
    model = LlamaForCausalLM(cfg).eval()
    if prune_24:
        with torch.no_grad():
            for name, mod in model.named_modules():
                if isinstance(mod, nn.Linear) and name.endswith(LLAMA_LINEARS):
                    mod.weight.mul_(nm_mask(mod.weight.abs(), 2, 4))
    return model.to(dtype)


# ---- the 2:4 pattern --------------------------------------------------------------------------------
def test_2of4_pattern_counts_groups_along_the_input_dim():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0],
                      [1.0, 1.0, 0.0, 0.0, 5.0, 0.0, 6.0, 0.0]])
    assert is_2of4(w) and groups_over_2of4(w) == 0
    w[1, 2] = 7.0  # the first group of row 1 now has 3 nonzeros
    assert not is_2of4(w) and groups_over_2of4(w) == 1
    # the groups run along rows (the input dim), not down columns: the transpose of a 2:4 matrix is not 2:4
    rowwise = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 4)
    assert is_2of4(rowwise) and not is_2of4(rowwise.t().contiguous())
    assert groups_over_2of4(torch.ones(4, 6)) == -1  # 6 columns do not split into groups of 4
    assert is_2of4(torch.zeros(8, 8)) and is_2of4(nm_mask(torch.rand(16, 32), 1, 4).float())  # 1:4 fits too


def test_shape_minimum_follows_torch_tables_per_backend():
    assert shape_minimum("cusparselt", torch.float16) == (16, 16)
    assert shape_minimum("cutlass", torch.bfloat16) == (32, 64)
    with pytest.raises(ValueError, match="valid: cusparselt, cutlass"):
        shape_minimum("triton")


# ---- which layers qualify ---------------------------------------------------------------------------
def test_eligible_cpu_layer_is_refused_only_for_its_device():
    layer = linear_2of4(64, 128)
    assert module_problem(layer, "cutlass") == "weight is on cpu; 2:4 kernels need it on CUDA"


@pytest.mark.parametrize("backend", ["cusparselt", "cutlass"])
def test_each_rule_gives_its_reason(backend):
    assert "dtype float32" in module_problem(linear_2of4(64, 128, dtype=torch.float32), backend)
    assert "tied to another module" in module_problem(linear_2of4(64, 128), backend, tied=True)
    dense = nn.Linear(128, 64).half()
    reason = module_problem(dense, backend)
    assert reason.startswith("not 2:4 sparse:") and f"of {64 * 128 // 4} groups" in reason
    conv = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=50)).transformer.h[0].attn.c_attn
    assert "Conv1D is not an nn.Linear" in module_problem(conv.half(), backend)


def test_shape_rule_depends_on_the_backend():
    layer = linear_2of4(48, 96)  # multiple of 16 x 16, not of 32 x 64
    assert module_problem(layer, "cusparselt").startswith("weight is on cpu")
    assert module_problem(layer, "cutlass") == "shape 48x96 is not a multiple of the cutlass minimum 32x64"
    small = linear_2of4(8, 16)
    assert "minimum 16x16" in module_problem(small, "cusparselt")


def test_plan_on_a_llama_converts_the_2of4_projections_and_keeps_the_head():
    model = tiny_llama()
    decisions = {d.name: d for d in plan_semi_structured(model, backend="cutlass", check_device=False)}
    converted = {n for n, d in decisions.items() if d.layout == "2:4"}
    assert converted == {n for n in decisions if n.endswith(LLAMA_LINEARS)} and len(converted) == 2 * len(LLAMA_LINEARS)
    assert all(decisions[n].sparsity == pytest.approx(0.5) for n in converted)
    assert decisions["lm_head"].layout is None and decisions["lm_head"].reason.startswith("not 2:4 sparse")
    # with the device check (the default) nothing on the CPU qualifies, and each says so
    assert all(d.layout is None and "need it on CUDA" in d.reason
               for d in plan_semi_structured(model, modules=LLAMA_LINEARS, backend="cutlass"))


def test_plan_never_converts_a_tied_head():
    model = tiny_llama(tie=True)
    with torch.no_grad():  # make the tied embedding/head 2:4 too: it must still stay dense
        model.lm_head.weight.mul_(nm_mask(model.lm_head.weight.abs().float(), 2, 4).to(model.lm_head.weight.dtype))
    head = next(d for d in plan_semi_structured(model, backend="cutlass", check_device=False) if d.name == "lm_head")
    assert head.layout is None and head.reason == "weight tied to another module"


def test_unstructured_50_percent_is_not_2of4():
    model = tiny_llama(prune_24=False)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Linear):
                mod.weight.mul_(topk_mask(mod.weight.abs().float(), 0.5).to(mod.weight.dtype))
    plan = plan_semi_structured(model, modules=LLAMA_LINEARS, backend="cusparselt", check_device=False)
    assert all(d.layout is None and d.reason.startswith("not 2:4 sparse") for d in plan)


# ---- errors where CUDA is absent ----------------------------------------------------------------------
@no_cuda
def test_no_cuda_is_a_clear_error_before_the_model_is_touched():
    assert "CUDA is not available" in cuda_problem()
    model = tiny_llama()
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="CUDA is not available.*NVIDIA GPU"):
        semi_structured_linears(model)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def bench_inference():
    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "benchmarks" / "bench_inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_inference_cuda_refuses_patterns_that_are_not_2of4(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_inference().main(["--device", "cuda", "--make", "0.5", "2:4", "--model", "smollm2-135m"])
    assert exc.value.code == 2
    assert "--device cuda benchmarks 2:4 models" in capsys.readouterr().err


def test_bench_inference_cuda_refuses_a_model_that_is_not_2of4():
    bench = bench_inference()
    with pytest.raises(bench.Not2of4Error, match="no linear layer can run 2:4 sparse \\(not 2:4 sparse\\)"):
        bench.convert_for_gpu(tiny_llama(prune_24=False), "a dense model")


def test_bench_inference_patterns_that_fit_2of4():
    fits = bench_inference().nm_fits_2of4
    assert fits((2, 4)) and fits((1, 4)) and not fits((4, 8)) and not fits((3, 4)) and not fits(None)


@no_cuda
def test_bench_inference_cuda_without_cuda_says_so(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_inference().main(["--device", "cuda", "--model", "smollm2-135m"])
    assert exc.value.code == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err


# ---- the kernel (GPU machines only) -------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_semi_structured_layer_and_llama_match_dense_on_the_gpu(dtype):
    layer = linear_2of4(256, 128, dtype=dtype).cuda()
    model = nn.Sequential(layer)
    dense_w = layer.weight.detach().clone()
    x = torch.randn(2, 7, 128, device="cuda", dtype=dtype)  # 14 rows: the kernel pads them itself
    with torch.no_grad():
        ref = model(x).float()
        report = semi_structured_linears(model)
        got = model(x).float()
    assert [d.layout for d in report.decisions] == ["2:4"]
    assert isinstance(layer.weight, torch.sparse.SparseSemiStructuredTensor)
    assert torch.allclose(layer.weight.to_dense(), dense_w, rtol=1e-3, atol=1e-6)  # the kept values, as they were
    assert (ref - got).abs().max() <= 1e-2 * ref.abs().max() + 1e-3

    llama = tiny_llama(dtype).cuda()
    ids = torch.randint(0, 128, (1, 24), device="cuda", generator=torch.Generator(device="cuda").manual_seed(0))
    with torch.no_grad():
        ref = llama(input_ids=ids).logits.float()
        report = semi_structured_linears(llama)
        got = llama(input_ids=ids).logits.float()
    assert len(report.converted) == 2 * len(LLAMA_LINEARS) and [d.name for d in report.kept_dense] == ["lm_head"]
    assert (ref - got).abs().max() <= 2e-2 * ref.abs().max() + 1e-3
