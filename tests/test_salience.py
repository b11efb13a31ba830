"""Salience metrics against hand-computed values, statistics against closed forms / reference loops."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from sparsetune.layers.base import TargetLinear
from sparsetune.registry import SALIENCE
from sparsetune.salience import compute_salience, get_metric, order_keys, split_budget, topk_indices
from sparsetune.salience.gradients import gradient_moments, hessian_gradient_product
from sparsetune.salience.losses import per_example_loss
from sparsetune.salience.synflow import synaptic_flow

W = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
STATS = {
    "grad": torch.tensor([[0.5, 0.5], [-1.0, 2.0]]),
    "grad_sq": torch.tensor([[0.25, 1.0], [4.0, 0.0]]),
    "hvp": torch.tensor([[2.0, -1.0], [0.0, 0.5]]),
    "synflow_grad": torch.tensor([[1.0, 0.5], [2.0, 0.25]]),
}
EXPECTED = {
    "magnitude": [[1.0, 2.0], [3.0, 4.0]],
    "gradient": [[0.5, 0.5], [1.0, 2.0]],
    "snip": [[0.5, 1.0], [3.0, 8.0]],
    "force": [[-0.5, 1.0], [3.0, 8.0]],
    "taylor_fo": [[0.25, 1.0], [9.0, 64.0]],
    "grasp": [[-2.0, -2.0], [0.0, 2.0]],
    "fisher": [[0.25, 1.0], [4.0, 0.0]],
    "synflow": [[1.0, 1.0], [6.0, 1.0]],
}


def scfg(name, **kw):
    return OmegaConf.create({"name": name, "num_batches": kw.pop("num_batches", 2), "batch_size": 4, "options": kw})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metric_matches_hand_values(name):
    assert torch.equal(get_metric(name).score(W, STATS), torch.tensor(EXPECTED[name]))


def test_registry_lists_the_eight_metrics_and_rejects_bad_input():
    assert set(EXPECTED) <= set(SALIENCE.names())
    with pytest.raises(ValueError, match="valid options"):
        get_metric("nope")
    with pytest.raises(ValueError, match="allowed"):
        get_metric("grasp").resolve_options({"temp": 1})
    layer = {"l": TargetLinear(nn.Linear(2, 2))}
    with pytest.raises(ValueError, match="needs training batches"):
        compute_salience(nn.Sequential(layer["l"]), layer, scfg("gradient"), None)


# ---- statistics -----------------------------------------------------------------------------
class Net(nn.Module):
    """Batches are dicts {x, labels}: what the HF models get as input_ids/attention_mask/labels."""

    def __init__(self, *mods):
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)


def linear_regression(d=3, seed=0):
    torch.manual_seed(seed)
    net = Net(TargetLinear(nn.Linear(d, 1, bias=False)))
    return net, {"lin": net.body[0]}


def test_mean_gradient_and_fisher_of_linear_regression_closed_form():
    net, layers = linear_regression()
    xs, ys = torch.randn(7, 3), torch.randn(7)
    batches = [{"x": xs[:4], "labels": ys[:4]}, {"x": xs[4:], "labels": ys[4:]}]  # unequal sizes
    stats = gradient_moments(net, layers, batches, {}, {"grad", "grad_sq"})["lin"]
    w = layers["lin"].weight.detach()
    per_example = 2 * (xs @ w.t() - ys[:, None]) * xs  # g_n = 2 (w.x_n - y_n) x_n
    torch.testing.assert_close(stats["grad"], per_example.mean(0, keepdim=True))
    torch.testing.assert_close(stats["grad_sq"], (per_example**2).mean(0, keepdim=True))
    assert layers["lin"].weight.grad is None and not layers["lin"].weight.requires_grad


def sequence_mlp(seed=0):
    """(B, T, 4) -> Linear -> ReLU -> Linear -> mean over tokens -> 3 classes."""
    torch.manual_seed(seed)

    class SeqNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = TargetLinear(nn.Linear(4, 5)), TargetLinear(nn.Linear(5, 3))

        def forward(self, x):
            return self.b(torch.relu(self.a(x))).mean(1)

    net = SeqNet()
    return net, {"a": net.a, "b": net.b}


def reference_per_example_grads(net, layers, xs, ys):
    grads = {n: [] for n in layers}
    for x, y in zip(xs, ys):
        loss = F.cross_entropy(net(x[None]), y[None])
        for n, g in zip(layers, torch.autograd.grad(loss, [l.weight for l in layers.values()])):
            grads[n].append(g)
    return {n: torch.stack(g) for n, g in grads.items()}


def test_per_example_statistics_of_a_sequence_mlp_match_a_loop():
    net, layers = sequence_mlp()
    for layer in layers.values():
        layer.weight.requires_grad_(True)  # for the reference loop only
    xs, ys = torch.randn(6, 3, 4), torch.randint(0, 3, (6,))
    ref = reference_per_example_grads(net, layers, xs, ys)
    for layer in layers.values():
        layer.weight.requires_grad_(False)
    batches = [{"x": xs[:3], "labels": ys[:3]}, {"x": xs[3:], "labels": ys[3:]}]
    stats = gradient_moments(net, layers, batches, {"chunk_elements": 25}, {"grad", "grad_sq"})  # chunks of 1 example
    for n in layers:
        torch.testing.assert_close(stats[n]["grad"], ref[n].mean(0))
        torch.testing.assert_close(stats[n]["grad_sq"], (ref[n] ** 2).mean(0))


def test_per_example_loss_kinds():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(per_example_loss(logits, torch.tensor([0, 0])),
                               torch.tensor([-F.log_softmax(logits[0], 0)[0], -F.log_softmax(logits[1], 0)[0]]))
    torch.testing.assert_close(per_example_loss(logits / 2, torch.tensor([0, 0])),
                               per_example_loss(logits, torch.tensor([0, 0]), temperature=2.0))
    torch.testing.assert_close(per_example_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([0.5, 1.0])),
                               torch.tensor([0.25, 4.0]))
    lm = torch.randn(2, 4, 5)
    labels = torch.tensor([[1, 2, -100, 3], [4, -100, -100, -100]])  # example 2 has no labelled next token
    out = per_example_loss(lm, labels)
    nll = -F.log_softmax(lm, -1)
    torch.testing.assert_close(out, torch.stack([(nll[0, 0, 2] + nll[0, 2, 3]) / 2, torch.tensor(0.0)]))


def test_grasp_hvp_of_linear_regression_closed_form():
    net, layers = linear_regression(d=4)
    xs, ys = torch.randn(9, 4), torch.randn(9)
    batches = [{"x": xs[:5], "labels": ys[:5]}, {"x": xs[5:], "labels": ys[5:]}]
    hv = hessian_gradient_product(net, layers, batches, {"temperature": 200.0}, {"hvp"})["lin"]["hvp"]
    w = layers["lin"].weight.detach()
    g = 2 / 9 * (xs @ w.t() - ys[:, None]).t() @ xs  # regression: the temperature does not apply
    h = 2 / 9 * xs.t() @ xs
    torch.testing.assert_close(hv, g @ h)
    scores = compute_salience(net, layers, scfg("grasp"), lambda n: batches)
    torch.testing.assert_close(scores["lin"], -(g @ h) * w)


def test_grasp_hvp_with_temperature_matches_autograd_hvp():
    torch.manual_seed(1)
    net = Net(TargetLinear(nn.Linear(3, 4)))
    layer = net.body[0]
    xs, ys = torch.randn(6, 3), torch.randint(0, 4, (6,))
    t = 5.0

    def loss(w):
        return F.cross_entropy(F.linear(xs, w, layer.bias.detach()) / t, ys)

    w0 = layer.weight.detach().clone()
    g = torch.func.grad(loss)(w0)
    _, ref = torch.autograd.functional.hvp(loss, w0, g)
    hv = hessian_gradient_product(net, {"l": layer}, [{"x": xs, "labels": ys}], {"temperature": t}, {"hvp"})
    torch.testing.assert_close(hv["l"]["hvp"], ref)


def test_synflow_closed_form_two_layer_relu_and_restores_the_model():
    torch.manual_seed(0)
    net = Net(TargetLinear(nn.Linear(3, 4)), nn.ReLU(), TargetLinear(nn.Linear(4, 2)))
    l1, l2 = net.body[0], net.body[2]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe = torch.randn(5, 3)
    out_before = net(probe)
    stats = synaptic_flow(net, {"l1": l1, "l2": l2}, None, {"dtype": "float64"}, {"synflow_grad"})
    a1, b1, a2 = l1.weight.abs().double(), l1.bias.abs().double(), l2.weight.abs().double()
    g1 = a2.sum(0)[:, None].expand(4, 3)  # dR/d|W1|_ij = sum_k |W2|_ki (all-ones input)
    g2 = (a1.sum(1) + b1)[None, :].expand(2, 4)  # dR/d|W2|_ki = hidden_i
    peak = max(g1.max(), g2.max())
    torch.testing.assert_close(stats["l1"]["synflow_grad"], (g1 / peak).float())
    torch.testing.assert_close(stats["l2"]["synflow_grad"], (g2 / peak).float())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert torch.equal(net(probe), out_before)  # no hook left behind: ReLU is a ReLU again
    assert not l1._forward_hooks and not net.body[1]._forward_hooks


class Gated(nn.Module):
    """A SwiGLU-style block: silu(gate(x)) * up(x); linearised, it is the product of two linear paths."""

    def __init__(self, width):
        super().__init__()
        self.gate, self.up, self.act = TargetLinear(nn.Linear(width, width)), TargetLinear(nn.Linear(width, width)), nn.SiLU()

    def forward(self, x):
        return self.act(self.gate(x)) * self.up(x)


def test_synflow_on_a_deep_gated_network_says_why_it_overflows():
    torch.manual_seed(0)
    net = Net(*[Gated(8) for _ in range(12)])  # the flow's degree doubles per block: 2**12 over float64's range
    layers = {f"b{i}.{k}": getattr(b, k) for i, b in enumerate(net.body) for k in ("gate", "up")}
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="overflowed in torch.float64; float64 is the widest: .* gated MLP"):
        synaptic_flow(net, layers, None, {"dtype": "float64"}, {"synflow_grad"})
    with pytest.raises(ValueError, match="overflowed in torch.float32; use salience.options.dtype=float64"):
        synaptic_flow(net, layers, None, {"dtype": "float32"}, {"synflow_grad"})
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # signs restored after the error


def test_synflow_keeps_rmsnorm_a_normaliser_so_a_deep_gated_network_stays_finite():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    net = Net(*[m for _ in range(12) for m in (LlamaRMSNorm(8), Gated(8))])  # pre-norm blocks, as in LLaMA
    layers = {f"b{i}.{k}": getattr(b, k) for i, b in enumerate(net.body) if isinstance(b, Gated) for k in ("gate", "up")}
    stats = synaptic_flow(net, layers, None, {"dtype": "float64"}, {"synflow_grad"})
    flow = torch.cat([v["synflow_grad"].flatten() for v in stats.values()])
    assert torch.isfinite(flow).all() and flow.abs().max() == 1.0
    assert all(v["synflow_grad"].abs().max() > 0 for v in stats.values())  # every layer gets flow, none is cut


def test_synflow_linearises_layernorm_to_its_affine_part():
    torch.manual_seed(0)
    net = Net(TargetLinear(nn.Linear(3, 4)), nn.LayerNorm(4), nn.GELU(), TargetLinear(nn.Linear(4, 2, bias=False)))
    with torch.no_grad():
        net.body[1].weight.uniform_(-2, 2)
        net.body[1].bias.uniform_(-1, 1)
    l1, ln, l2 = net.body[0], net.body[1], net.body[3]
    stats = synaptic_flow(net, {"l1": l1, "l2": l2}, None, {"dtype": "float64"}, {"synflow_grad"})
    a1, b1, a2 = l1.weight.abs().double(), l1.bias.abs().double(), l2.weight.abs().double()
    gamma, beta = ln.weight.abs().double(), ln.bias.abs().double()
    z = (a1.sum(1) + b1) * gamma + beta
    g2 = z[None, :].expand(2, 4)
    g1 = (a2.sum(0) * gamma)[:, None].expand(4, 3)
    peak = max(g1.max(), g2.max())
    torch.testing.assert_close(stats["l1"]["synflow_grad"], (g1 / peak).float())
    torch.testing.assert_close(stats["l2"]["synflow_grad"], (g2 / peak).float())


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(cfg)
    layers = {}
    for name, mod in list(model.named_modules()):
        if name.endswith(("query", "value", "intermediate.dense")):
            parent, _, child = name.rpartition(".")
            layers[name] = TargetLinear(mod)
            setattr(model.get_submodule(parent), child, layers[name])
    return model, layers


def bert_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 40, (4, 6), generator=g), "attention_mask": torch.ones(4, 6, dtype=torch.long),
             "labels": torch.randint(0, 2, (4,), generator=g)} for _ in range(n)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_metric_runs_on_tiny_bert_and_leaves_it_untouched(name):
    model, layers = tiny_bert()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = compute_salience(model, layers, scfg(name), lambda n: bert_batches(n))
    assert set(scores) == set(layers)
    for n, s in scores.items():
        assert s.shape == layers[n].weight.shape and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    if name == "synflow":  # identical all-ones tokens: softmax attention is constant in the query weights
        top = max(float(s.max()) for s in scores.values())
        assert all(torch.equal(scores[n], torch.zeros_like(scores[n])) for n in scores if n.endswith("query"))
        assert all(scores[n].abs().max() > 1e-3 * top for n in scores if n.endswith("value"))


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_synflow_runs_attention_eager_and_switches_back(attention):
    # sdpa's CPU backward gave MiniLM-L6's query weights scores of +-1e102 where the exact value is 0
    model, layers = tiny_bert()
    model.set_attn_implementation(attention)
    scores = compute_salience(model, layers, scfg("synflow"), lambda n: bert_batches(n))
    assert model.config._attn_implementation == attention
    assert all(torch.equal(scores[n], torch.zeros_like(scores[n])) for n in scores if n.endswith("query"))


# ---- selection ------------------------------------------------------------------------------
def test_order_keys_are_monotone():
    x = torch.tensor([float("-inf"), -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, float("inf")])
    keys = order_keys(x)
    assert (keys[1:] > keys[:-1]).all()
    with pytest.raises(ValueError, match="NaN"):
        order_keys(torch.tensor([1.0, float("nan")]))


def test_topk_indices_global_and_ties_are_exact_and_deterministic():
    a = torch.tensor([[3.0, 1.0], [2.0, 2.0]])
    b = torch.tensor([2.0, 5.0, -1.0])
    got = topk_indices([a, b], 4)  # 5, 3, then two of the three 2s, earliest first
    assert got[0].tolist() == [0, 2, 3] and got[1].tolist() == [1]
    assert [t.tolist() for t in topk_indices([a, b], 0)] == [[], []]
    assert [t.tolist() for t in topk_indices([a, b], 7)] == [[0, 1, 2, 3], [0, 1, 2]]
    torch.manual_seed(0)
    big = [torch.randn(50, 30), torch.randn(700)]
    picked = topk_indices(big, 123)
    flat = torch.cat([t.reshape(-1) for t in big])
    ref = set(torch.topk(flat, 123).indices.tolist())
    assert set(picked[0].tolist()) | {1500 + i for i in picked[1].tolist()} == ref
    with pytest.raises(ValueError):
        topk_indices([a], 5)


def test_split_budget_is_proportional_and_exact():
    assert split_budget(10, [3, 3, 4]) == [3, 3, 4]
    assert split_budget(5, [10, 10, 20]) == [1, 1, 3]  # shares 1.25, 1.25, 2.5: the .5 remainder wins
    parts = split_budget(1001, [768 * 768, 768 * 3072, 7])
    assert sum(parts) == 1001 and parts[2] == 0
