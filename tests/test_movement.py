"""Movement pruning (MvP) and the shared top-k binarizer: exact selection, the straight-through gradients
dW = G ⊙ M and dS = G ⊙ W on hand values, the score's sign convention under SGD, optimizer groups,
fused GPT-2 blocks, export, and the paper's 194.93M trainable count on a meta BERT-base."""
from __future__ import annotations

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

from sparsetune.layers.movement import MovementLinear
from sparsetune.masks import num_pruned, topk_mask
from sparsetune.methods.base import count_params
from sparsetune.registry import METHODS

torch.set_num_threads(1)


def make_cfg(model: str, schedule: str = "cubic", **method_overrides):
    return method_cfg(model, "movement", schedule, **method_overrides)


def apply_mvp(model, cfg, total_steps=10, dry_run=False):
    return apply_method(model, cfg, total_steps, dry_run)


def tiny_bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=30, num_hidden_layers=2, num_attention_heads=2, intermediate_size=50,
        max_position_embeddings=32))


def tiny_gpt2():
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(GPT2Config(vocab_size=60, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                                    pad_token_id=0))


def hand_layer():
    lin = nn.Linear(3, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.1, 0.2], [-0.3, 0.05, 0.4]]))
    return MovementLinear(lin)


# ---- straight-through gradients ------------------------------------------------------------------------

def test_scores_start_at_weight_magnitude():
    layer = hand_layer()
    assert torch.equal(layer.scores.detach(), layer.weight.detach().abs())
    assert layer.weight.requires_grad and layer.scores.requires_grad
    zero = MovementLinear(nn.Linear(3, 2), score_init="constant")
    assert not zero.scores.detach().any()


def test_ste_gradients_by_hand():
    layer = hand_layer()
    layer.mask.copy_(torch.tensor([[True, False, True], [False, True, True]]))
    g = torch.tensor([[1.0, 2.0, -1.0], [0.5, -2.0, 3.0]], dtype=torch.float64)  # dL/d(W ⊙ M)
    (layer.effective_weight() * g).sum().backward()
    # dW = G ⊙ M: pruned weights get nothing
    assert torch.allclose(layer.weight.grad, torch.tensor([[1.0, 0.0, -1.0], [0.0, -2.0, 3.0]], dtype=torch.float64))
    # dS = G ⊙ W, for every entry (pruned ones too: that is how they come back)
    assert torch.allclose(layer.scores.grad, torch.tensor([[0.5, -0.2, -0.2], [-0.15, -0.1, 1.2]], dtype=torch.float64))


def test_score_sgd_step_moves_by_minus_lr_grad_times_weight():
    """Through a real forward, G = grad_outᵀ x; one SGD step gives S' = S - lr * G ⊙ W, i.e. S accumulates
    -(dL/dW ⊙ W): weights moving away from zero (dL/dW opposite in sign to W) gain importance."""
    torch.manual_seed(5)
    layer = hand_layer()
    layer.mask.copy_(topk_mask(layer.scores, 0.5))
    x = torch.randn(4, 3, dtype=torch.float64)
    target = torch.randn(4, 2, dtype=torch.float64)
    s0, w0 = layer.scores.detach().clone(), layer.weight.detach().clone()
    ((layer(x) - target) ** 2).sum().backward()
    g = (2 * (layer(x) - target)).detach().t() @ x
    torch.optim.SGD([layer.scores], lr=0.1).step()
    assert torch.allclose(layer.scores.detach(), s0 - 0.1 * g * w0)


# ---- method -------------------------------------------------------------------------------------------

def run_steps(model, method, steps, batch):
    opt = torch.optim.AdamW(method.optimizer_groups(model), lr=1e-3)
    for t in range(steps):
        method.update_masks(t)  # what SparsityScheduleCallback does before each optimizer step
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    method.update_masks(steps)


def test_every_parameter_trains_and_scores_get_their_own_group():
    model = tiny_bert()
    method = apply_mvp(model, make_cfg("tiny-bert", score_lr=0.05))
    assert all(p.requires_grad for p in model.parameters())
    groups = method.optimizer_groups(model)
    ids = [id(p) for grp in groups for p in grp["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    scores, decay, no_decay = groups
    assert scores["lr"] == 0.05 and scores["weight_decay"] == 0.0
    assert {id(p) for p in scores["params"]} == {id(l.scores) for l in method.layers.values()}
    assert "lr" not in decay and "weight_decay" not in decay  # the Trainer's lr and weight decay
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    torch.optim.AdamW(groups, lr=1e-3)  # a valid optimizer spec


@pytest.mark.parametrize("sparsity", [0.333, 0.9])
def test_mask_is_topk_of_scores_with_exact_count(sparsity):
    model = tiny_bert()
    method = apply_mvp(model, make_cfg("tiny-bert", sparsity=sparsity))
    with torch.no_grad():
        for layer in method.layers.values():
            layer.scores.normal_()
    method.set_masks(sparsity)
    for name, layer in method.layers.items():
        assert torch.equal(layer.mask, topk_mask(layer.scores.detach(), sparsity)), name
        assert int((layer.merged_weight() == 0).sum()) == num_pruned(layer.weight.numel(), sparsity), name


def test_gpt2_fused_blocks_are_masked_separately():
    model = tiny_gpt2()
    method = apply_mvp(model, make_cfg("tiny-gpt2", sparsity=0.7))
    layer = method.layers["transformer.h.1.attn.c_attn"]
    with torch.no_grad():
        layer.scores[64:] += 10  # a whole-matrix top-k would keep mostly the v block
    method.set_masks(0.7)
    for block in layer.blocks(layer.mask):
        assert int((~block).sum()) == num_pruned(32 * 32, 0.7)


@pytest.mark.parametrize("build, model_cfg", [(tiny_bert, "tiny-bert"), (tiny_gpt2, "tiny-gpt2")])
def test_training_reaches_target_and_export_is_exactly_sparse(build, model_cfg, tmp_path):
    model = build()
    cfg = make_cfg(model_cfg, sparsity=0.8)
    cfg.mask_schedule.warmup, cfg.mask_schedule.cooldown = 0.2, 0.2
    method = apply_mvp(model, cfg, total_steps=10)
    s_init = {n: l.scores.detach().clone() for n, l in method.layers.items()}
    torch.manual_seed(4)
    batch = {"input_ids": torch.randint(1, 60, (4, 12)), "labels": torch.randint(0, 2, (4,))}
    run_steps(model, method, 10, batch)
    for name, layer in method.layers.items():
        assert not torch.equal(layer.scores.detach(), s_init[name])
        for block in layer.blocks(layer.mask):
            assert int((~block).sum()) == num_pruned(block.numel(), 0.8), name
    after, reloaded = merge_and_reload(model, method, batch["input_ids"], tmp_path)
    for name in s_init:  # exactly the masked count: pruned weights were never re-zeroed, the export zeroes them
        w = reloaded.get_submodule(name).weight
        n_blocks = 3 if name.endswith("c_attn") else 1
        assert int((w == 0).sum()) == n_blocks * num_pruned(w.numel() // n_blocks, 0.8), name
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=batch["input_ids"]).logits, after, atol=1e-6)


@pytest.mark.parametrize("bad, message", [({"score_init": "kaiming"}, "score_init"), ({"score_lr": 0.0}, "score_lr"),
                                          ({"scope": "layer"}, "scope")])
def test_bad_config_fails_early(bad, message):
    cfg = make_cfg("tiny-bert", **bad)
    with pytest.raises(ValueError, match=message):
        METHODS.get("movement")(cfg).validate(cfg)


def test_dry_run_count_matches_paper(monkeypatch):
    cfg = make_cfg("bert-base-uncased")
    arch = OmegaConf.to_container(cfg.model.arch)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(arch.pop("model_type"), **arch))
    dense = sum(p.numel() for p in model.parameters())
    monkeypatch.setattr(METHODS.get("movement"), "scores", lambda self, layer: pytest.fail("dry run computed a mask"))
    method = apply_mvp(model, cfg, total_steps=0, dry_run=True)
    counts = count_params(model)
    scores = 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert counts["trainable_breakdown"]["target.scores"] == scores == 84_934_656
    assert counts["trainable"] == dense + scores
    assert abs(counts["trainable"] - 194.93e6) / 194.93e6 < 0.01
    assert all(l.scores.device.type == "meta" for l in method.layers.values())
