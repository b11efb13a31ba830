"""PST: score and mask math on hand-sized tensors, STE gradients against plain autograd on the explicit
formula, exact per-matrix (and per fused block) sparsity, merge = forward, and the paper's parameter
counts on meta-device BERT-base / RoBERTa-large skeletons."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import apply_method, merge_and_reload, method_cfg
from omegaconf import OmegaConf
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from sparsetune.layers.pst import PSTLinear
from sparsetune.masks import num_pruned, topk_mask
from sparsetune.methods.base import count_params
from sparsetune.registry import METHODS

torch.set_num_threads(1)
ALL_TERMS = ("magnitude", "lowrank", "structured")


def make_cfg(model: str, method: str = "pst", schedule: str = "cubic", **method_overrides):
    return method_cfg(model, method, schedule, **method_overrides)


def apply_pst(model, cfg, total_steps=10, dry_run=False):
    return apply_method(model, cfg, total_steps, dry_run)


def tiny_bert(hidden=30, ffn=50):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=ffn,
        max_position_embeddings=32))


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(GPT2Config(vocab_size=60, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                                    pad_token_id=0))


def linear(weight: torch.Tensor, bias=True) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias).to(weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return lin


# ---- score and mask on hand-computed values -----------------------------------------------------------

def hand_layer():
    w0 = torch.tensor([[0.5, -0.1, 0.2], [-0.3, 0.05, 0.4]], dtype=torch.float64)
    layer = PSTLinear(linear(w0), r1=1, r2=1)
    with torch.no_grad():
        layer.U.copy_(torch.tensor([[[1.0], [0.0]]]))
        layer.V.copy_(torch.tensor([[[0.1, 0.2, -0.3]]]))
        layer.A.copy_(torch.tensor([[[1.0], [2.0]]]))
        layer.B.copy_(torch.tensor([[[0.1, 0.0, 0.0]]]))
        layer.R.copy_(torch.tensor([[[0.0], [0.1]]]))
        layer.C.copy_(torch.tensor([[[0.0, 0.0, 0.06]]]))
    return layer


def test_score_and_mask_by_hand():
    layer = hand_layer()
    # W = W0 + UV = [[0.6, 0.1, -0.1], [-0.3, 0.05, 0.4]]
    w = torch.tensor([[0.6, 0.1, -0.1], [-0.3, 0.05, 0.4]], dtype=torch.float64)
    assert torch.allclose(layer.dense_weight(), w)
    # S = |W| + AB + (R + C) = [[0.6+0.1+0, 0.1+0+0, 0.1+0+0.06], [0.3+0.2+0.1, 0.05+0+0.1, 0.4+0+0.16]]
    s = torch.tensor([[0.7, 0.1, 0.16], [0.6, 0.15, 0.56]], dtype=torch.float64)
    assert torch.allclose(layer.importance(), s)
    # sparsity 0.5: floor(6 * 0.5) = 3 smallest pruned (0.1, 0.15, 0.16); 0.4 -> floor(2.4) = 2 pruned
    assert topk_mask(s, 0.5).tolist() == [[True, False, False], [True, False, True]]
    assert topk_mask(s, 0.4).tolist() == [[True, False, True], [True, False, True]]
    layer.mask.copy_(topk_mask(layer.importance(), 0.5))
    assert torch.allclose(layer.effective_weight(), torch.tensor([[0.6, 0, 0], [-0.3, 0, 0.4]], dtype=torch.float64))


def test_hyperparameters_scale_each_term():
    layer = hand_layer()
    layer.beta, layer.alpha1, layer.alpha2 = 0.5, 2.0, 3.0
    w = layer.weight + 0.5 * layer.U[0] @ layer.V[0]
    expected = w.abs() + 2.0 * layer.A[0] @ layer.B[0] + 3.0 * (layer.R[0] + layer.C[0])
    assert torch.allclose(layer.importance(), expected.detach())


@pytest.mark.parametrize("terms, expected", [
    (("structured",), [[0.0, 0.0, 0.06], [0.1, 0.1, 0.16]]),
    (("lowrank",), [[0.1, 0.0, 0.0], [0.2, 0.0, 0.0]]),
    (("magnitude",), [[0.6, 0.1, 0.1], [0.3, 0.05, 0.4]]),
])
def test_score_terms_switch_off(terms, expected):
    ref = hand_layer()
    layer = PSTLinear(linear(ref.weight.detach()), r1=1, r2=1, score_terms=terms)
    for name in ("U", "V", "A", "B", "R", "C"):
        if getattr(layer, name) is not None:
            getattr(layer, name).data.copy_(getattr(ref, name))
    # factors of switched-off terms do not exist, so Table 5's rows are pure config
    assert (layer.A is None) == ("lowrank" not in terms) and (layer.R is None) == ("structured" not in terms)
    assert torch.allclose(layer.importance(), torch.tensor(expected, dtype=torch.float64))


def test_initial_state_is_w0_with_equal_data_driven_score():
    torch.manual_seed(0)
    w0 = torch.randn(6, 4)
    layer = PSTLinear(linear(w0))
    assert layer.U.shape == (1, 6, 8) and layer.V.shape == (1, 8, 4) and layer.A.shape == (1, 6, 8)
    assert layer.B.shape == (1, 8, 4) and layer.R.shape == (1, 6, 1) and layer.C.shape == (1, 1, 4)
    assert layer.U.std() > 0.5 and layer.A.std() > 0.5  # N(0,1), unscaled as the reference
    assert torch.equal(layer.dense_weight(), w0)
    assert torch.equal(layer.importance(), w0.abs())
    assert layer.mask.all() and not layer.weight.requires_grad


# ---- straight-through gradients against plain autograd ---------------------------------------------------

def explicit_forward(w0, f, mask, beta, a1, a2, terms, blocks, x, bias):
    """y = x ((W0 + βUV) ⊙ M)ᵀ + b with M = M_hard + S - stop_grad(S): the STE written out with autograd."""
    outs = []
    for i, (w0_b, m_b) in enumerate(zip(w0.chunk(blocks), mask.chunk(blocks))):
        w = w0_b + beta * f["U"][i] @ f["V"][i]
        s = torch.zeros_like(w)
        if "magnitude" in terms:
            s = s + w.abs()
        if "lowrank" in terms:
            s = s + a1 * f["A"][i] @ f["B"][i]
        if "structured" in terms:
            s = s + a2 * (f["R"][i] + f["C"][i])
        outs.append(w * (m_b.to(w.dtype) + s - s.detach()))
    return x @ torch.cat(outs).t() + bias


@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("terms", [ALL_TERMS, ("magnitude", "structured"), ("lowrank",), ("structured", "lowrank")])
def test_ste_gradients_match_explicit_formula(blocks, terms):
    torch.manual_seed(1)
    nb, k, beta, a1, a2 = 4, 5, 0.7, 1.3, 0.6
    w0 = torch.randn(blocks * nb, k, dtype=torch.float64)
    layer = PSTLinear(linear(w0), splits=(nb,) * blocks if blocks > 1 else None, r1=2, r2=3, beta=beta,
                      alpha1=a1, alpha2=a2, score_terms=terms)
    names = [n for n in ("U", "V", "A", "B", "R", "C") if getattr(layer, n) is not None]
    with torch.no_grad():
        for n in names:
            getattr(layer, n).normal_()  # V, B, R, C non-zero so every gradient path is exercised
        layer.mask.copy_(torch.cat([topk_mask(b, 0.5) for b in layer.blocks(layer.importance())]))
    ref = {n: getattr(layer, n).detach().clone().requires_grad_(True) for n in names}
    ref_bias = layer.bias.detach().clone().requires_grad_(True)
    x = torch.randn(2, 7, k, dtype=torch.float64, requires_grad=True)  # (batch, seq, in) as in a transformer
    x_ref = x.detach().clone().requires_grad_(True)
    probe = torch.randn(2, 7, blocks * nb, dtype=torch.float64)

    (layer(x) * probe).sum().backward()  # the fused linear (memory-lean forward)
    y_ref = explicit_forward(w0, ref, layer.mask, beta, a1, a2, terms, blocks, x_ref, ref_bias)
    (y_ref * probe).sum().backward()

    assert torch.allclose(layer(x), y_ref)
    for n in names:
        assert torch.allclose(getattr(layer, n).grad, ref[n].grad, atol=1e-10), n
    assert torch.allclose(x.grad, x_ref.grad) and torch.allclose(layer.bias.grad, ref_bias.grad)
    assert layer.weight.grad is None

    # effective_weight() is differentiable the same way
    grads = {n: getattr(layer, n).grad.clone() for n in names}
    layer.zero_grad()
    (torch.nn.functional.linear(x.detach(), layer.effective_weight(), layer.bias) * probe).sum().backward()
    for n in names:
        assert torch.allclose(getattr(layer, n).grad, grads[n], atol=1e-10), n


def test_structured_scores_accumulate_row_and_column_sums_of_minus_grad_times_weight():
    """Eq. 4: one SGD step on R and C adds -lr * row/column sums of dL/dW' ⊙ W, W' = the masked weight."""
    torch.manual_seed(2)
    layer = PSTLinear(linear(torch.randn(4, 6, dtype=torch.float64)), score_terms=("magnitude", "structured"))
    layer.mask.copy_(topk_mask(layer.importance(), 0.5))
    x = torch.randn(3, 6, dtype=torch.float64)
    (layer(x) ** 2).sum().backward()
    grad_out = 2 * layer(x).detach()
    g = grad_out.t() @ x  # dL/d(W ⊙ M)
    w = layer.dense_weight()
    assert torch.allclose(layer.R.grad[0, :, 0], (g * w).sum(1))
    assert torch.allclose(layer.C.grad[0, 0], (g * w).sum(0))


def test_autocast_bf16_keeps_factor_gradients_fp32():
    torch.manual_seed(3)
    layer = PSTLinear(linear(torch.randn(8, 8)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.randn(2, 8))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.U.grad.dtype == torch.float32 and torch.isfinite(layer.V.grad).all()


# ---- method: sparsity, fused blocks, merge --------------------------------------------------------------

def run_steps(model, method, steps, batch):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for t in range(steps):
        method.update_masks(t)  # what SparsityScheduleCallback does before each optimizer step
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
        method.after_optimizer_step()
    method.update_masks(steps)


def test_trainable_parameters_are_the_factors_target_biases_and_final_head():
    model = tiny_bert()
    method = apply_pst(model, make_cfg("tiny-bert"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for n in trainable:
        assert n.startswith("classifier.") or n.rsplit(".", 1)[1] in ("U", "V", "A", "B", "R", "C", "bias"), n
    assert {n for n in trainable if n.endswith(".bias") and not n.startswith("classifier")} == {
        f"{name}.bias" for name in method.layers}
    assert len(method.layers) == 12 and all(not layer.weight.requires_grad for layer in method.layers.values())


@pytest.mark.parametrize("sparsity", [0.333, 0.9])
def test_sparsity_exact_per_matrix(sparsity):
    model = tiny_bert()
    method = apply_pst(model, make_cfg("tiny-bert", sparsity=sparsity))
    with torch.no_grad():
        for layer in method.layers.values():
            layer.B.normal_()
            layer.C.normal_()
    method.set_masks(sparsity)
    for name, layer in method.layers.items():
        w = layer.merged_weight()
        assert int((~layer.mask).sum()) == num_pruned(layer.mask.numel(), sparsity), name
        assert int((w == 0).sum()) == num_pruned(w.numel(), sparsity), name
    assert float(next(iter(method.layers.values())).current_sparsity) == pytest.approx(sparsity)


def test_gpt2_fused_c_attn_gets_per_block_factors_and_masks():
    model = tiny_gpt2()
    with torch.no_grad():  # make the v block dominate: a whole-matrix top-k would keep mostly v
        model.transformer.h[0].attn.c_attn.weight[:, 64:] *= 10
    method = apply_pst(model, make_cfg("tiny-gpt2", sparsity=0.7))
    layer = method.layers["transformer.h.0.attn.c_attn"]
    assert layer.splits == (32, 32, 32) and layer.U.shape == (3, 32, 8) and layer.V.shape == (3, 8, 32)
    n_factors = sum(getattr(layer, n).numel() for n in ("U", "V", "A", "B", "R", "C"))
    assert n_factors == 3 * (32 + 32) * (8 + 8 + 1)  # = three separate q, k, v matrices
    method.set_masks(0.7)
    scores = layer.importance()
    for block_mask, block_score in zip(layer.blocks(layer.mask), layer.blocks(scores)):
        assert int((~block_mask).sum()) == num_pruned(32 * 32, 0.7)
        assert torch.equal(block_mask, topk_mask(block_score, 0.7))
    # Conv1D weight is (in, out): the merged export must be transposed back
    merged = method.merge(model).transformer.h[0].attn.c_attn
    assert type(merged).__name__ == "Conv1D" and merged.weight.shape == (32, 96)
    assert int((merged.weight == 0).sum()) == 3 * num_pruned(32 * 32, 0.7)


@pytest.mark.parametrize("build, model_cfg", [(tiny_bert, "tiny-bert"), (tiny_gpt2, "tiny-gpt2")])
def test_training_reaches_target_and_merge_equals_forward(build, model_cfg, tmp_path):
    model = build()
    w0 = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}
    cfg = make_cfg(model_cfg, sparsity=0.8)
    cfg.mask_schedule.warmup, cfg.mask_schedule.cooldown = 0.2, 0.2
    method = apply_pst(model, cfg, total_steps=10)
    torch.manual_seed(4)
    batch = {"input_ids": torch.randint(1, 60, (4, 12)), "labels": torch.randint(0, 2, (4,))}
    run_steps(model, method, 10, batch)

    assert method.achieved() == pytest.approx(
        sum(num_pruned(l.mask.numel() // len(l.splits), 0.8) * len(l.splits) for l in method.layers.values())
        / sum(l.mask.numel() for l in method.layers.values()))
    for name, layer in method.layers.items():
        assert torch.equal(layer.weight, w0[f"{name}.weight"].t() if layer.transposed else w0[f"{name}.weight"])
        assert layer.V.abs().sum() > 0 and layer.R.abs().sum() > 0  # the factors did train
    after, reloaded = merge_and_reload(model, method, batch["input_ids"], tmp_path)
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=batch["input_ids"]).logits, after, atol=1e-6)


def test_state_for_resume_lives_in_the_state_dict():
    model = tiny_bert()
    apply_pst(model, make_cfg("tiny-bert"))
    keys = model.state_dict().keys()
    prefix = "bert.encoder.layer.0.attention.self.query."
    assert {prefix + k for k in ("U", "V", "A", "B", "R", "C", "mask", "current_sparsity", "weight")} <= set(keys)


@pytest.mark.parametrize("bad, message", [
    ({"score_terms": ["magnitude", "movement"]}, "score_terms"),
    ({"score_terms": []}, "score_terms"),
    ({"r1": 0}, "r1"),
    ({"r2": -1}, "r2"),
    ({"scope": "layer"}, "scope"),
    ({"sparsity": 1.0}, "sparsity"),
])
def test_bad_config_fails_early(bad, message):
    cfg = make_cfg("tiny-bert", **bad)
    with pytest.raises(ValueError, match=message):
        METHODS.get("pst")(cfg).validate(cfg)


def test_r1_is_free_when_the_lowrank_term_is_off():
    cfg = make_cfg("tiny-bert", method="pst-ablation-structured")
    METHODS.get("pst")(cfg).validate(cfg)
    assert cfg.method.r1 == 0 and list(cfg.method.score_terms) == ["structured"]


# ---- dry run: the paper's Table 2 counts on meta skeletons ----------------------------------------------

def skeleton(model_name):
    cfg = make_cfg(model_name)
    arch = OmegaConf.to_container(cfg.model.arch)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(arch.pop("model_type"), **arch))
    return model, cfg


@pytest.mark.parametrize("model_name, paper, hidden, ffn, layers, head", [
    ("bert-base-uncased", 2.91e6, 768, 3072, 12, 768 * 2 + 2),
    ("roberta-large", 7.77e6, 1024, 4096, 24, 1024 * 2 + 2),  # classifier.out_proj only (train_head=final)
])
def test_dry_run_counts_match_paper(model_name, paper, hidden, ffn, layers, head, monkeypatch):
    model, cfg = skeleton(model_name)
    monkeypatch.setattr(PSTLinear, "importance", lambda self: pytest.fail("dry run computed a mask"))
    apply_pst(model, cfg, total_steps=0, dry_run=True)
    counts = count_params(model)
    assert abs(counts["trainable"] - paper) / paper < 0.01, counts["trainable"]

    # (n + k)(r1 + r2 + 1) per target matrix: 4 attention (h x h) and 2 FFN (h x ffn / ffn x h) per layer
    pairs = [(hidden, hidden)] * 4 + [(ffn, hidden), (hidden, ffn)]
    expected = {
        "target.U": layers * sum(n * 8 for n, _ in pairs), "target.V": layers * sum(8 * k for _, k in pairs),
        "target.A": layers * sum(n * 8 for n, _ in pairs), "target.B": layers * sum(8 * k for _, k in pairs),
        "target.R": layers * sum(n for n, _ in pairs), "target.C": layers * sum(k for _, k in pairs),
        "target.bias": layers * sum(n for n, _ in pairs), "head": head,
    }
    assert counts["trainable_breakdown"] == expected
    factors = sum(v for k, v in expected.items() if k not in ("target.bias", "head"))
    assert factors == layers * sum((n + k) * 17 for n, k in pairs)
    assert counts["trainable"] == factors + expected["target.bias"] + head
    assert math.isclose(counts["trainable"], {"bert-base-uncased": 2_904_578, "roberta-large": 7_743_490}[model_name])
