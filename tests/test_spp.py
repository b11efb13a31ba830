"""SPP layer (eq. 4-5 and the memory-efficient eq. 7), the SPP and LoRA* methods on a tiny pruned LLaMA."""
import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

from sparsetune.layers.spp import SPPLinear
from sparsetune.methods.base import MethodContext
from sparsetune.methods.lora_star import LoraStar, LoraStarConfig
from sparsetune.methods.spp import SPP, SPPConfig
from sparsetune.pruning.magnitude import magnitude_mask
from sparsetune.targets import find_targets

torch.set_num_threads(1)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ARCH = dict(model_type="llama", vocab_size=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def pruned_linear(m=8, n=8, nm=None, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n, m)
    with torch.no_grad():
        lin.weight.mul_(magnitude_mask(lin.weight, 0.5, nm))
    return lin


def randomized(layer, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.alpha.copy_(torch.randn(layer.alpha.shape, generator=g))
        layer.beta.copy_(torch.randn(layer.beta.shape, generator=g))
    return layer


def explicit_delta_weight(w, alpha, beta, r):
    """W~'[i, j] = W~[i, j] * alpha[i // (m/r), j] * beta[i], entry by entry."""
    m, n = w.shape
    out = torch.zeros_like(w)
    for i in range(m):
        for j in range(n):
            out[i, j] = w[i, j] * alpha[i // (m // r), j] * beta[i, 0]
    return out


# ---- the layer ------------------------------------------------------------------------------------
def test_eq7_equals_naive_equals_explicit_formula_with_equal_gradients():
    lin = pruned_linear(m=8, n=6)
    blocked = randomized(SPPLinear(lin, r=4, scaling=2.0, impl="blocked")).eval()
    naive = randomized(SPPLinear(lin, r=4, scaling=2.0, impl="naive")).eval()
    x = torch.randn(2, 3, 6, requires_grad=True)
    xn = x.detach().clone().requires_grad_(True)
    y_blocked, y_naive = blocked(x), naive(xn)
    delta = explicit_delta_weight(lin.weight.detach(), blocked.alpha.detach(), blocked.beta.detach(), 4)
    y_explicit = x @ lin.weight.detach().t() + lin.bias.detach() + 2.0 * x @ delta.t()
    assert torch.allclose(y_blocked, y_naive, atol=1e-5)
    assert torch.allclose(y_blocked, y_explicit, atol=1e-5)
    g = torch.randn_like(y_blocked)
    (y_blocked * g).sum().backward()
    (y_naive * g).sum().backward()
    assert torch.allclose(blocked.alpha.grad, naive.alpha.grad, atol=1e-5)
    assert torch.allclose(blocked.beta.grad, naive.beta.grad, atol=1e-5)
    assert torch.allclose(x.grad, xn.grad, atol=1e-5)
    assert blocked.weight.grad is None and not blocked.weight.requires_grad


def test_init_is_the_pruned_layer_and_dropout_only_touches_the_adapter():
    lin = pruned_linear(m=8, n=6)
    layer = SPPLinear(lin, r=4, scaling=1.0, dropout=0.5).train()
    assert torch.all(layer.beta == 0) and layer.beta.shape == (8, 1) and layer.alpha.shape == (4, 6)
    assert layer.alpha.abs().max() <= 1 / math.sqrt(6)  # Kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(in))
    x = torch.randn(5, 6)
    assert torch.equal(layer(x), lin(x))  # beta = 0: exactly the pruned layer, dropout or not
    layer.eval()
    randomized(layer)
    expected = lin(x) + x @ (layer.weight * layer.repeated_alpha() * layer.beta).t()
    assert torch.allclose(layer(x), expected, atol=1e-5)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_merge_keeps_the_zero_pattern_bit_for_bit(nm):
    lin = pruned_linear(m=16, n=8, nm=nm)
    layer = randomized(SPPLinear(lin, r=4, scaling=2.0)).eval()
    merged = layer.merged_weight()
    assert torch.equal(merged == 0, lin.weight == 0)
    plain = layer.to_plain()
    assert isinstance(plain, nn.Linear) and torch.equal(plain.weight == 0, lin.weight == 0)
    x = torch.randn(3, 8)
    assert torch.allclose(plain(x), layer(x), atol=1e-5)
    if nm:
        kept = (plain.weight != 0).view(16, 2, 4).sum(-1)
        assert torch.all(kept == 2)


def test_rank_must_divide_output_rows():
    with pytest.raises(ValueError, match="divide"):
        SPPLinear(nn.Linear(8, 12), r=5)
    with pytest.raises(ValueError, match="impl"):
        SPPLinear(nn.Linear(8, 12), r=4, impl="fast")


def test_parameter_count_matches_the_paper_for_llama_7b():
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000)
    with torch.device("meta"):
        model = LlamaModel(cfg)
        layers = [SPPLinear(m, r=16) for m in find_targets(model, TARGETS).values()]
    assert sum(l.alpha.numel() + l.beta.numel() for l in layers) == 19_578_880  # r*n + m per matrix


# ---- the methods --------------------------------------------------------------------------------
def make_cfg(config_cls, name, salience="wanda", **method):
    return OmegaConf.create({
        "method": OmegaConf.merge(OmegaConf.structured(config_cls), {"name": name, **method}),
        "model": {"name": "tiny-llama", "arch": ARCH, "target_modules": TARGETS, "attention_modules": TARGETS[:4],
                  "exclude_modules": [], "fused_modules": {}, "decoder_layers": "model.layers", "head_modules": ["score"]},
        "salience": {"name": salience, "options": {} if salience == "magnitude" else {
            "calibration": {"source": "train", "nsamples": 4, "seqlen": 8, "seed": 0, "batch_size": 2}}},
        "mask_schedule": {"name": "oneshot"},
        "task": {"kind": "causal_lm"},
    })


def tiny_model(seed=0):
    torch.manual_seed(seed)
    arch = {k: v for k, v in ARCH.items() if k != "model_type"}
    return LlamaForCausalLM(LlamaConfig(**{**arch, "vocab_size": 64})).eval()


def ctx_for(cfg, dry_run=False):
    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(3))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    return MethodContext(cfg, total_steps=3, dry_run=dry_run, batches=lambda n: iter([batch] * n)), batch


def target_weights(model):
    return {n: m.weight for n, m in find_targets(model, TARGETS).items()}


@pytest.mark.parametrize("salience,pattern,sparsity",
                         [("wanda", "unstructured", 0.5), ("sparsegpt", "2:4", None), ("magnitude", "unstructured", 0.6)])
def test_spp_method_trains_only_alpha_beta_and_exports_sparse(tmp_path, salience, pattern, sparsity):
    cfg = make_cfg(SPPConfig, "spp", salience, r=4, lora_alpha=8.0, pattern=pattern, sparsity=sparsity, dropout=0.0)
    method = SPP(cfg)
    method.validate(cfg)
    ctx, batch = ctx_for(cfg)
    model = method.apply(tiny_model(), ctx)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".alpha", ".beta")) for n in trainable)
    assert len(trainable) == 2 * 14
    zeros = {n: (l.weight == 0).clone() for n, l in method.layers.items()}
    for n, z in zeros.items():  # floor(numel*s) per matrix (Wanda: floor(in*s) per row)
        assert int(z.sum()) // z.shape[0] == math.floor(z.shape[1] * method.target_sparsity()), n
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    assert any(float(l.beta.detach().abs().max()) > 0 for l in method.layers.values())
    for n, layer in method.layers.items():
        assert torch.equal(layer.weight == 0, zeros[n]) and torch.equal(layer.merged_weight() == 0, zeros[n])
    with torch.no_grad():
        before = model(batch["input_ids"]).logits
    method.merge(model)
    assert all(type(m) is nn.Linear for m in find_targets(model, TARGETS).values())
    model.save_pretrained(tmp_path)
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    for n, w in target_weights(reloaded).items():
        assert torch.equal(w == 0, zeros[n])
    with torch.no_grad():
        assert torch.allclose(reloaded(batch["input_ids"]).logits, before, atol=1e-4)
    record = method.record()
    assert record["scaling"] == 2.0 and record["pruning"]["pruner"] == salience


def test_spp_validate_rejects_rank_not_dividing_outputs_and_wrong_schedule():
    cfg = make_cfg(SPPConfig, "spp", r=32)  # k_proj has 2 kv heads * 8 = 16 output rows
    with pytest.raises(ValueError, match="k_proj"):
        SPP(cfg).validate(cfg)
    cfg = make_cfg(SPPConfig, "spp")
    cfg.mask_schedule.name = "cubic"
    with pytest.raises(ValueError, match="oneshot"):
        SPP(cfg).validate(cfg)
    cfg = make_cfg(SPPConfig, "spp", salience="snip")
    with pytest.raises(ValueError, match="wanda"):
        SPP(cfg).validate(cfg)


def test_spp_prune_false_needs_a_pruned_checkpoint_and_dry_run_builds_shapes():
    cfg = make_cfg(SPPConfig, "spp", prune=False, r=4)
    ctx, _ = ctx_for(cfg)
    with pytest.raises(ValueError, match="prune=false"):
        SPP(cfg).apply(tiny_model(), ctx)
    with torch.device("meta"):
        model = tiny_model()
    meta_ctx, _ = ctx_for(make_cfg(SPPConfig, "spp", r=4), dry_run=True)
    method = SPP(meta_ctx.cfg)
    method.apply(model, meta_ctx)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = sum(4 * l.in_features + l.out_features for l in method.layers.values())
    assert n_trainable == expected and next(iter(method.layers.values())).alpha.is_meta


@pytest.mark.parametrize("remask", [True, False])
def test_lora_star_remasks_the_merged_weights(remask):
    cfg = make_cfg(LoraStarConfig, "lora_star", "wanda", r=2, lora_alpha=4.0, dropout=0.0, remask=remask)
    method = LoraStar(cfg)
    method.validate(cfg)
    ctx, batch = ctx_for(cfg)
    model = method.apply(tiny_model(), ctx)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    expected = {}
    for name, layer in method.lora_layers.items():
        nn.init.normal_(layer.lora_B["default"].weight)  # as if trained: LoRA update now dense
        base = layer.get_base_layer().weight.detach().clone()
        assert torch.equal(base == 0, ~layer.prune_mask)
        dense = base + 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        expected[name] = dense * layer.prune_mask if remask else dense
    method.callbacks()[0].on_train_end(None, None, None)  # merge + re-mask at the end of training
    assert method.merge_record["density_before_remask"] == 1.0
    method.merge(model)
    for name, w in target_weights(model).items():
        assert type(model.get_submodule(name)) is nn.Linear
        assert torch.allclose(w, expected[name], atol=1e-6)
        assert torch.equal(w == 0, expected[name] == 0)
    assert method.target_sparsity() == (0.5 if remask else 0.0)
    assert not any("lora" in k or "prune_mask" in k for k in model.state_dict())


def test_lora_star_dry_run_on_meta_counts_lora_parameters():
    cfg = make_cfg(LoraStarConfig, "lora_star", r=2)
    with torch.device("meta"):
        model = tiny_model()
    ctx, _ = ctx_for(cfg, dry_run=True)
    method = LoraStar(cfg)
    method.apply(model, ctx)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = sum(2 * (l.in_features + l.out_features) for l in (x.get_base_layer() for x in method.lora_layers.values()))
    assert trainable == expected == 2048


@pytest.mark.parametrize("impl", ["blocked", "naive"])
def test_adapters_stay_fp32_under_a_16_bit_base_and_a_grad_scaler_steps(impl):
    # SPP's experiment preset loads LLaMA in fp16 with fp16 mixed precision: alpha/beta must be fp32, or
    # GradScaler.unscale_ fails ("Attempting to unscale FP16 gradients")
    lin = pruned_linear(m=8, n=8).half()
    layer = randomized(SPPLinear(lin, r=4, scaling=2.0, impl=impl))
    assert layer.weight.dtype == torch.float16 and layer.alpha.dtype == layer.beta.dtype == torch.float32
    x = torch.randn(5, 8).half()
    y = layer(x)
    assert y.dtype == torch.float16
    opt = torch.optim.AdamW([layer.alpha, layer.beta], lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    scaler.scale(y.float().pow(2).mean()).backward()
    scaler.unscale_(opt)
    assert torch.isfinite(layer.alpha.grad).all() and layer.alpha.grad.abs().sum() > 0
    scaler.step(opt)
    scaler.update()
    merged = layer.merged_weight()
    assert merged.dtype == torch.float16
    assert torch.equal(merged == 0, lin.weight == 0)  # the sparsity pattern survives the fp16 merge
    expected = lin.weight.float() + 2.0 * explicit_delta_weight(lin.weight.float(), layer.alpha.detach(), layer.beta.detach(), 4)
    assert torch.allclose(merged.float(), expected, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("use_beta,zero_init,trainable", [
    (True, "beta", {"alpha", "beta"}), (True, "alpha", {"alpha", "beta"}), (True, "none", {"alpha", "beta"}),
    (False, "alpha", {"alpha"}), (False, "none", {"alpha"}),
])
def test_ablation_switches_of_tables_4_and_8(use_beta, zero_init, trainable):
    lin = pruned_linear(m=8, n=8)
    layer = SPPLinear(lin, r=4, scaling=2.0, use_beta=use_beta, zero_init=zero_init)
    assert {n for n, _ in layer.named_parameters() if n not in ("weight", "bias")} == trainable
    assert bool((layer.alpha == 0).all()) == (zero_init == "alpha")
    if use_beta:
        assert bool((layer.beta == 0).all()) == (zero_init == "beta")
    else:
        assert torch.equal(layer.beta, torch.ones(8, 1))  # a constant: W~' = W~ * Repeat0(alpha)
    starts_at_pruned = zero_init in ("alpha", "beta")
    assert torch.equal(layer.merged_weight(), lin.weight.detach()) == starts_at_pruned
    assert torch.equal(layer.merged_weight() == 0, lin.weight == 0)  # zeros kept whatever the init


def test_ablation_switch_without_beta_cannot_zero_init_beta():
    with pytest.raises(ValueError, match="needs W_beta"):
        SPPLinear(pruned_linear(), r=4, use_beta=False, zero_init="beta")
