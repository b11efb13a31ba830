"""SPEFT: the sparse-delta layer, budgets and selection, static/dynamic masks, merge, records."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import TINY, compose_cfg
from omegaconf import OmegaConf, open_dict
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    TrainerControl,
    TrainerState,
)

from sparsetune.layers.sparse_delta import SparseDeltaLinear
from sparsetune.methods.base import MethodContext
from sparsetune.registry import METHODS
from sparsetune.salience import split_budget

BERT = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=16, num_labels=2)


def bert(seed=0, device=None):
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        return BertForSequenceClassification(BertConfig(**BERT))


def batches_from(seed):
    def batches(n):
        g = torch.Generator().manual_seed(seed)
        for _ in range(n):
            yield {"input_ids": torch.randint(0, 40, (4, 6), generator=g),
                   "attention_mask": torch.ones(4, 6, dtype=torch.long), "labels": torch.randint(0, 2, (4,), generator=g)}
    return batches


@functools.cache
def _composed(groups: tuple) -> object:
    return compose_cfg([*TINY, "method=speft", "mask_schedule=static", "salience.num_batches=2", *groups])


def make_cfg(*overrides):
    """Group choices (model=, mask_schedule=, salience=) are composed once and cached; key=value overrides
    are applied to a copy, which keeps the many small configurations of these tests fast."""
    groups = tuple(o for o in overrides if o.split("=")[0] in ("model", "mask_schedule", "salience"))
    cfg = copy.deepcopy(_composed(groups))
    with open_dict(cfg):
        for o in overrides:
            if o not in groups:
                key, value = o.lstrip("+").split("=", 1)
                OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    return cfg


def speft(*overrides, model=None, batches=None, dry_run=False):
    cfg = make_cfg(*overrides)
    method = METHODS.get("speft")(cfg)
    method.validate(cfg)
    model = model if model is not None else bert()
    ctx = MethodContext(cfg=cfg, total_steps=20, dry_run=dry_run, batches=batches or batches_from(0))
    return method.apply(model, ctx), method


def lora_count(method, r):
    return sum(r * (l.in_features + l.out_features) for l in method.layers.values())


# ---- the layer ------------------------------------------------------------------------------
def test_layer_matches_dense_reference_forward_and_backward():
    torch.manual_seed(0)
    base = nn.Linear(5, 4)
    layer = SparseDeltaLinear(base)
    layer.select_(torch.tensor([19, 0, 7]))
    with torch.no_grad():
        layer.values.copy_(torch.tensor([2.0, 0.5, -1.0]))
    layer.bias.requires_grad_(True)
    x = torch.randn(2, 3, 5, requires_grad=True)
    layer(x).square().sum().backward()

    dense = base.weight.detach().clone()
    dense.view(-1)[torch.tensor([19, 0, 7])] += torch.tensor([2.0, 0.5, -1.0])
    dense.requires_grad_(True)
    x2, b2 = x.detach().clone().requires_grad_(True), base.bias.detach().clone().requires_grad_(True)
    F.linear(x2, dense, b2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.values.grad, dense.grad.view(-1)[torch.tensor([19, 0, 7])])
    torch.testing.assert_close(layer.bias.grad, b2.grad)
    torch.testing.assert_close(layer.merged_weight(), dense.detach())
    assert layer.indices.dtype == torch.int32 and layer.values.numel() == 3
    assert not layer.weight.requires_grad and layer.weight.grad is None

    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision: computed like F.linear under autocast
        y = layer(x)
        ref = F.linear(x, dense.detach(), base.bias.detach())
    assert y.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("picked", [[9, 10, 17, 18, 41], [], list(range(0, 48, 5))])
def test_values_gradient_on_concentrated_empty_and_spread_selections(picked):
    torch.manual_seed(0)
    base = nn.Linear(8, 6, bias=False)
    layer = SparseDeltaLinear(base)
    layer.select_(torch.tensor(picked, dtype=torch.long))
    support = layer._support()
    assert (support is not None) == (len(picked) == 5)  # rows {1, 2, 5} x cols {1, 2} = 6 of 48 entries
    x = torch.randn(4, 8)
    layer(x).pow(3).sum().backward()
    w = base.weight.detach().clone().requires_grad_(True)
    F.linear(x, w).pow(3).sum().backward()
    torch.testing.assert_close(layer.values.grad, w.grad.view(-1)[torch.tensor(picked, dtype=torch.long)])


def test_layer_keeps_no_dense_tensor_for_backward():
    layer = SparseDeltaLinear(nn.Linear(64, 48))
    layer.select_(torch.arange(0, 3072, 97))
    x = torch.randn(3, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = layer(x)
    dense_new = [t for t in saved if t.numel() == 64 * 48 and t.data_ptr() != layer.weight.data_ptr()]
    assert not dense_new, "a dense (out x in) temporary is kept alive until backward"
    y.sum().backward()
    assert layer.values.grad.shape == (32,)


def test_select_keeps_the_parameter_and_loading_takes_the_checkpoint_size():
    layer = SparseDeltaLinear(nn.Linear(6, 5))
    values = layer.values
    layer.select_(torch.tensor([3, 1, 4]))
    assert layer.values is values and layer.indices.tolist() == [3, 1, 4]
    with pytest.raises(ValueError, match="unique"):
        layer.select_(torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="out of range"):
        layer.select_(torch.tensor([30]))
    other = SparseDeltaLinear(nn.Linear(6, 5))
    other.select_(torch.tensor([0, 9, 11, 29, 5]))
    with torch.no_grad():
        other.values.copy_(torch.arange(1.0, 6.0))
    layer.load_state_dict(other.state_dict())
    assert layer.values is values and layer.values.tolist() == [1, 2, 3, 4, 5]
    assert torch.equal(layer.merged_weight(), other.merged_weight())


# ---- budgets and selection ------------------------------------------------------------------
def test_match_lora_rank_global_and_local_counts():
    model, method = speft("method.match_lora_rank=4")
    per = {n: l.num_selected for n, l in method.layers.items()}
    assert sum(per.values()) == lora_count(method, 4) == 8 * 4 * 64  # 8 attention matrices 32x32
    assert len(set(per.values())) > 1  # global ranking: the layers get different shares
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.values" for n in method.layers} | {"classifier.weight", "classifier.bias"}

    model, method = speft("method.match_lora_rank=4", "method.scope=local", "method.targets=all")
    assert len(method.layers) == 12
    for layer in method.layers.values():
        assert layer.num_selected == 4 * (layer.in_features + layer.out_features)


def test_density_global_and_local_counts():
    over = ["method.match_lora_rank=null", "method.density=0.03", "method.targets=all"]
    _, method = speft(*over)
    numel = sum(l.weight.numel() for l in method.layers.values())
    assert sum(l.num_selected for l in method.layers.values()) == int(0.03 * numel)
    _, method = speft(*over, "method.scope=local")
    for l in method.layers.values():
        assert l.num_selected == int(0.03 * l.weight.numel())
    assert method.record()["density"] == pytest.approx(sum(int(0.03 * l.weight.numel()) for l in method.layers.values()) / numel)


def test_global_selection_is_the_top_k_of_all_scores():
    model, method = speft("method.match_lora_rank=2")  # salience=magnitude: |theta0|
    chosen = torch.cat([l.weight.view(-1)[l.indices.long()].abs() for l in method.layers.values()])
    rest = torch.cat([l.weight.abs().view(-1)[torch.ones(l.weight.numel(), dtype=torch.bool).index_fill_(0, l.indices.long(), False)]
                      for l in method.layers.values()])
    assert chosen.min() >= rest.max()


def test_local_scope_splits_fused_blocks():
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=40, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                                     pad_token_id=0))
    _, method = speft("model=tiny-gpt2", "method.scope=local", "method.match_lora_rank=2", model=model,
                      batches=batches_from(0))
    layer = method.layers["transformer.h.0.attn.c_attn"]
    assert layer.splits == (32, 32, 32) and layer.num_selected == 2 * (32 + 96)
    rows = layer.indices.long() // layer.in_features
    per_block = [int(((rows >= 32 * i) & (rows < 32 * (i + 1))).sum()) for i in range(3)]
    assert per_block == split_budget(2 * 128, [1024] * 3)


# ---- training ------------------------------------------------------------------------------
def adam_steps(model, steps=3, seed=1, optimizer=None):
    opt = optimizer or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    for batch in batches_from(seed)(steps):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return opt


def test_only_selected_entries_ever_change():
    model, method = speft("salience=gradient")
    theta0 = {n: l.weight.detach().clone() for n, l in method.layers.items()}
    head0 = model.classifier.weight.detach().clone()
    opt = adam_steps(model)
    k = sum(l.num_selected for l in method.layers.values())
    for n, l in method.layers.items():
        assert torch.equal(l.weight, theta0[n])  # θ0 itself is frozen
        changed = (l.merged_weight() != theta0[n]).view(-1).nonzero().squeeze(1)
        assert set(changed.tolist()) <= set(l.indices.tolist())
    assert sum(int((l.values != 0).sum()) for l in method.layers.values()) > 0.9 * k
    assert not torch.equal(model.classifier.weight, head0)  # the head trains (the reference's frozen head: fixed)
    # parameters and optimizer state scale with k, not with the matrices
    for l in method.layers.values():
        st = opt.state[l.values]
        assert st["exp_avg"].numel() == st["exp_avg_sq"].numel() == l.num_selected


def test_dynamic_update_merges_moves_the_mask_and_resets_adam():
    calls = []

    def fresh_batches(n):  # different data at every scoring, so the gradient salience changes
        calls.append(n)
        return batches_from(len(calls))(n)

    model, method = speft("mask_schedule=dynamic", "mask_schedule.update_every=3", "salience=gradient",
                          batches=fresh_batches)
    [callback] = method.callbacks()
    opt = adam_steps(model)
    values = {n: l.values for n, l in method.layers.items()}
    old = {n: set(l.indices.tolist()) for n, l in method.layers.items()}
    merged = {n: l.merged_weight().clone() for n, l in method.layers.items()}
    probe = next(iter(batches_from(9)(1)))
    model.eval()
    out_before = model(**probe).logits
    state = TrainerState(global_step=2, max_steps=10)
    callback.on_step_end(None, state, TrainerControl(), optimizer=opt)  # not a multiple of 3: nothing happens
    assert len(calls) == 1
    state.global_step = 3
    callback.on_step_end(None, state, TrainerControl(), optimizer=opt)
    assert len(calls) == 2
    for n, l in method.layers.items():
        assert l.values is values[n] and torch.all(l.values == 0)
        torch.testing.assert_close(l.merged_weight(), merged[n], rtol=0, atol=0)  # θ0 absorbed θ_sp exactly
        st = opt.state[l.values]
        assert st["exp_avg"].shape == l.values.shape and torch.all(st["exp_avg"] == 0) and torch.all(st["exp_avg_sq"] == 0)
        assert float(st["step"]) == 0
    moved = sum(len(set(l.indices.tolist()) - old[n]) for n, l in method.layers.items())
    assert moved > 0 and method.history[-1]["entries_newly_selected"] == moved
    assert sum(l.num_selected for l in method.layers.values()) == lora_count(method, 8)
    torch.testing.assert_close(model(**probe).logits, out_before)
    model.train()
    adam_steps(model, steps=1, optimizer=opt)  # the optimizer keeps working on the resized values
    for n, l in method.layers.items():
        changed = set((l.merged_weight() != merged[n]).view(-1).nonzero().squeeze(1).tolist())
        assert changed <= set(l.indices.tolist())
    state.global_step = 9
    callback.on_step_end(None, state, TrainerControl(), optimizer=opt)
    state.global_step = 10  # the last step: no update after training ends
    callback.on_step_end(None, state, TrainerControl(), optimizer=opt)
    assert len(calls) == 3


def test_dynamic_rescoring_asks_for_fresh_seeded_batches():
    seeds = []

    def batches(n, batch_size=None, seed=None):
        seeds.append(seed)
        return batches_from(seed or 0)(n)

    model, method = speft("mask_schedule=dynamic", "mask_schedule.update_every=2", "salience=gradient",
                          batches=batches)
    opt = adam_steps(model, steps=1)
    method.callbacks()[0].on_step_end(None, TrainerState(global_step=4, max_steps=10), TrainerControl(), optimizer=opt)
    assert seeds == [None, make_cfg().seed + 4]


def test_merge_returns_plain_layers_with_identical_outputs_and_records():
    model, method = speft("salience=snip")
    adam_steps(model, steps=2)
    model.eval()
    probe = next(iter(batches_from(5)(1)))
    before = model(**probe).logits
    moved = sum(int((l.values != 0).sum()) for l in method.layers.values())
    merged = method.merge(model)
    assert not any(isinstance(m, SparseDeltaLinear) for m in merged.modules())
    torch.testing.assert_close(merged(**probe).logits, before)
    rec = method.record()
    assert rec["merged_entries_changed"] == moved
    assert rec["salience"]["name"] == "snip" and rec["scope"] == "global" and rec["mask_schedule"] == "static"
    assert rec["selected_total"] == sum(rec["selected_per_layer"].values()) == 8 * 8 * 64
    assert rec["salience_seconds"] > 0 and "head" in rec["choices"]


def test_dry_run_builds_shapes_on_meta():
    model, method = speft(model=bert(device="meta"), dry_run=True)
    k = sum(l.num_selected for l in method.layers.values())
    assert k == lora_count(method, 8)
    assert all(l.values.device.type == "meta" for l in method.layers.values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == k + 32 * 2 + 2


@pytest.mark.parametrize("overrides, message", [
    (["method.density=0.1"], "exactly one budget"),
    (["method.match_lora_rank=null"], "exactly one budget"),
    (["method.match_lora_rank=0"], "method.match_lora_rank must be >= 1"),
    (["method.match_lora_rank=null", "method.density=1.5"], r"\(0, 1\]"),
    (["method.scope=layer"], r"method.scope must be one of \['local', 'global'\]"),
    (["mask_schedule=cubic"], "mask_schedule=static"),
    (["mask_schedule=dynamic", "mask_schedule.reset_optimizer=false"], "reset_optimizer=true"),
    (["mask_schedule=dynamic", "mask_schedule.update_every=0"], "update_every"),
    (["salience=wanda"], "unknown salience"),
    (["salience=grasp", "+salience.options.temp=3"], "allowed"),
])
def test_bad_configuration_fails_early(overrides, message):
    cfg = make_cfg(*overrides)
    with pytest.raises(ValueError, match=message):
        METHODS.get("speft")(cfg).validate(cfg)


def test_local_budget_larger_than_a_matrix_fails():
    with pytest.raises(ValueError, match="scope=global"):
        speft("method.match_lora_rank=20", "method.scope=local")
