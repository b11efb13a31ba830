"""LoRA / PiSSA through peft: trainable counts equal SPEFT's match_lora_rank, merge is exact."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import yaml
from conftest import TINY, compose_cfg
from omegaconf import OmegaConf, open_dict
from peft import PeftModel
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification

from sparsetune.methods.base import MethodContext
from sparsetune.registry import METHODS

BERT = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=16, num_labels=2)


def bert(seed=0, device="cpu"):
    torch.manual_seed(seed)
    with torch.device(device):
        return BertForSequenceClassification(BertConfig(**BERT))


def gpt2(seed=0):
    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(GPT2Config(vocab_size=40, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                                    pad_token_id=0))


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield {"input_ids": torch.randint(1, 40, (4, 6), generator=g), "attention_mask": torch.ones(4, 6, dtype=torch.long),
               "labels": torch.randint(0, 2, (4,), generator=g)}


@functools.cache
def _composed(groups: tuple) -> object:
    return compose_cfg([*TINY, *groups])


def make_cfg(*overrides):
    """Group choices are composed once and cached; key=value overrides go to a copy (fast tests)."""
    groups = tuple(o for o in overrides if o.split("=")[0] in ("model", "method", "mask_schedule"))
    cfg = copy.deepcopy(_composed(groups))
    with open_dict(cfg):
        for o in overrides:
            if o not in groups:
                key, value = o.split("=", 1)
                OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    return cfg


def apply(*overrides, model=None, dry_run=False):
    cfg = make_cfg(*overrides)
    method = METHODS.get(cfg.method.name)(cfg)
    method.validate(cfg)
    ctx = MethodContext(cfg=cfg, total_steps=10, dry_run=dry_run, batches=batches)
    return method.apply(model if model is not None else bert(), ctx), method


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("targets", ["attention", "all"])
@pytest.mark.parametrize("r", [2, 8])
def test_trainable_count_equals_speft_match_lora_rank(targets, r):
    peft_model, lora = apply("method=lora", f"method.r={r}", f"method.targets={targets}")
    sparse, speft = apply("method=speft", "mask_schedule=static", f"method.match_lora_rank={r}",
                          f"method.targets={targets}")
    n_targets = 8 if targets == "attention" else 12
    adapters = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    expected = r * (8 * (32 + 32) + (n_targets - 8) // 2 * 2 * (32 + 64))
    assert adapters == lora.adapter_numel == expected
    assert sum(l.num_selected for l in speft.layers.values()) == expected
    assert trainable(peft_model) == trainable(sparse) == expected + 32 * 2 + 2  # + the classifier head
    assert lora.record()["target_matrices"] == len(speft.layers) == n_targets


def perturb_adapters(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "classifier" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["lora", "pissa"])
def test_merge_and_unload_gives_the_adapted_outputs(name):
    probe = next(batches(1, seed=7))
    probe.pop("labels")
    base = bert()
    base.eval()
    original = base(**probe).logits
    model, method = apply(f"method={name}", model=bert())
    assert isinstance(model, PeftModel)
    model.eval()
    if name == "pissa":  # W = residual + B A at init: the adapted model still computes the original function
        torch.testing.assert_close(model(**probe).logits, original, atol=1e-5, rtol=1e-5)
        q = model.base_model.model.bert.encoder.layer[0].attention.self.query
        assert not torch.allclose(q.base_layer.weight, base.bert.encoder.layer[0].attention.self.query.weight)
    perturb_adapters(model)
    adapted = model(**probe).logits
    assert not torch.allclose(adapted, original)
    merged = method.merge(model)
    assert isinstance(merged, BertForSequenceClassification)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(merged(**probe).logits, adapted, atol=1e-5, rtol=1e-5)
    assert method.record()["init"] == ("pissa" if name == "pissa" else "kaiming_A_zero_B")


def test_lora_on_gpt2_conv1d_with_fused_attention():
    model, method = apply("model=tiny-gpt2", "method=lora", "method.targets=all", model=gpt2())
    assert method.peft_config.fan_in_fan_out
    assert method.adapter_numel == 8 * 2 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))
    probe = next(batches(1))
    probe.pop("labels")
    model.eval()
    perturb_adapters(model)
    adapted = model(**probe).logits
    torch.testing.assert_close(method.merge(model)(**probe).logits, adapted, atol=1e-5, rtol=1e-5)


def test_only_adapters_and_head_train():
    model, _ = apply("method=lora")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or "classifier" in n for n in names)
    model, _ = apply("method=lora", "method.train_head=none")
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["lora", "pissa"])
def test_dry_run_on_meta(name):
    model, method = apply(f"method={name}", model=bert(device="meta"), dry_run=True)
    assert trainable(model) == 8 * 8 * 64 + 66


@pytest.mark.parametrize("overrides, message", [
    (["method=lora", "method.r=0"], "method.r must be >= 1"),
    (["method=lora", "method.alpha=0"], "alpha"),
    (["method=lora", "method.dropout=1.0"], "dropout"),
    (["method=lora", "method.targets=mlp"], r"method.targets must be one of \['all', 'attention'\]"),
    (["method=pissa", "method.pissa_niter=0"], "pissa_niter"),
])
def test_bad_configuration_fails_early(overrides, message):
    cfg = make_cfg(*overrides)
    with pytest.raises(ValueError, match=message):
        METHODS.get(cfg.method.name)(cfg).validate(cfg)
