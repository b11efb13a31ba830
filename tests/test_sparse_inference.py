"""sparsify_linears on tiny random models (NOT pretrained): same outputs, per-module decisions, checkpoints."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.pytorch_utils import Conv1D

from sparsetune.masks import topk_mask
from sparsetune.sparse_inference import LAYOUTS, SparseLinear, sparsify_linears
from sparsetune.targets import set_weight_out_in, weight_out_in

LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_llama(tie: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg).eval()


def prune(model: nn.Module, sparsity: float, suffixes=None) -> None:
    """Magnitude-prune every Linear/Conv1D whose name ends with one of `suffixes` (all when None)."""
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D)) and (suffixes is None or name.endswith(tuple(suffixes))):
            w = weight_out_in(mod)
            set_weight_out_in(mod, w * topk_mask(w.abs(), sparsity))


def ids(batch=1, length=9, vocab=96):
    return torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


def converted_names(model):
    return {n for n, m in model.named_modules() if isinstance(m, SparseLinear)}


@torch.no_grad()
def test_llama_csr_same_logits_and_greedy_generation():
    dense = tiny_llama()
    prune(dense, 0.9, LLAMA_LINEARS)
    sparse = copy.deepcopy(dense)
    report = sparsify_linears(sparse, min_sparsity=0.5, layout="csr")
    # every pruned projection converted, the dense LM head (0 % zeros) left alone with its reason
    assert converted_names(sparse) == {d.name for d in report.converted}
    assert len(report.converted) == 2 * len(LLAMA_LINEARS)
    assert all(d.layout == "csr" and d.sparsity == pytest.approx(0.9, abs=1e-3) for d in report.converted)
    assert [d.name for d in report.kept_dense] == ["lm_head"]
    assert "not sparse enough" in report.kept_dense[0].reason
    assert isinstance(sparse.lm_head, nn.Linear)
    x = ids(2, 11)
    assert torch.allclose(dense(x).logits, sparse(x).logits, atol=1e-5, rtol=1e-4)
    # batch-1 decode with a KV cache runs the one-row (addmv) path; greedy tokens must match
    prompt = ids(1, 6)
    kw = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "attention_mask": torch.ones_like(prompt)}
    assert torch.equal(dense.generate(prompt, **kw), sparse.generate(prompt, **kw))
    assert "layout=csr" in repr(sparse.model.layers[0].self_attn.q_proj)


@torch.no_grad()
def test_modules_below_min_sparsity_stay_dense():
    model = tiny_llama()
    prune(model, 0.8, ["q_proj"])
    prune(model, 0.3, ["up_proj"])
    report = sparsify_linears(model, min_sparsity=0.5, layout="csr")
    assert converted_names(model) == {"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"}
    kept = {d.name: d for d in report.kept_dense}
    up = kept["model.layers.0.mlp.up_proj"]
    assert up.sparsity == pytest.approx(0.3, abs=1e-3) and "not sparse enough (30.0% < min_sparsity 50%)" in up.reason
    assert isinstance(model.model.layers[0].mlp.up_proj, nn.Linear)
    assert len(report.decisions) == 2 * len(LLAMA_LINEARS) + 1  # every linear layer is accounted for
    assert "2 converted" in str(report) and "model.layers.0.mlp.up_proj" in str(report)


@torch.no_grad()
def test_auto_layout_times_and_keeps_outputs():
    dense = tiny_llama()
    prune(dense, 0.9, LLAMA_LINEARS)
    sparse = copy.deepcopy(dense)
    report = sparsify_linears(sparse, layout="auto", tokens=[4, 1, 1], repeats=2)
    assert report.tokens == {1: 2, 4: 1}
    timed = [d for d in report.decisions if d.name != "lm_head"]
    # which side wins is the machine's call; every decision carries both timings and matches the model
    assert all(d.dense_us > 0 and d.sparse_us > 0 for d in timed)
    assert converted_names(sparse) == {d.name for d in report.converted}
    for d in report.kept_dense:
        assert isinstance(sparse.get_submodule(d.name), nn.Linear)
        assert d.name == "lm_head" or d.reason.startswith("sparse slower")
    x = ids(1, 7)
    assert torch.allclose(dense(x).logits, sparse(x).logits, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_state_dict_is_the_dense_checkpoint_and_loads_back(tmp_path):
    dense = tiny_llama()
    prune(dense, 0.75, LLAMA_LINEARS)
    sparse = copy.deepcopy(dense)
    sparsify_linears(sparse, layout="csr")
    ref, got = dense.state_dict(), sparse.state_dict()
    assert list(ref) == list(got)  # same keys in the same order
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    # a dense checkpoint with other weights loads (strict) into the sparse model and is re-compressed
    other = tiny_llama()
    torch.manual_seed(5)
    for p in other.parameters():
        p.normal_()
    prune(other, 0.9, LLAMA_LINEARS)
    sparse.load_state_dict(other.state_dict())
    q = sparse.model.layers[1].self_attn.q_proj
    assert isinstance(q, SparseLinear) and q.nnz == int((other.model.layers[1].self_attn.q_proj.weight != 0).sum())
    x = ids(1, 5)
    assert torch.allclose(other(x).logits, sparse(x).logits, atol=1e-4, rtol=1e-4)
    # save_pretrained writes an ordinary dense checkpoint that from_pretrained reads
    sparse.save_pretrained(tmp_path)
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded.model.layers[1].self_attn.q_proj.weight, other.model.layers[1].self_attn.q_proj.weight)


@torch.no_grad()
def test_deepcopy_and_dtype_move_keep_working():
    model = tiny_llama()
    prune(model, 0.9, LLAMA_LINEARS)
    sparse = copy.deepcopy(model)
    sparsify_linears(sparse, layout="csr")
    twin = copy.deepcopy(sparse)
    x = ids(1, 6)
    assert torch.equal(twin(x).logits, sparse(x).logits)
    wide = twin.to(torch.float64)
    q = wide.model.layers[0].self_attn.q_proj
    assert q.weight.dtype == torch.float64 and q.crow_indices.dtype == torch.int32
    assert torch.allclose(wide(x).logits.float(), model(x).logits, atol=1e-4)


@torch.no_grad()
def test_gpt2_conv1d_converted_with_original_state_dict_shapes():
    torch.manual_seed(0)
    dense = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=2, n_head=2)).eval()
    prune(dense, 0.8, ["c_attn", "c_proj", "c_fc"])
    sparse = copy.deepcopy(dense)
    report = sparsify_linears(sparse, layout="csr")
    assert len(report.converted) == 2 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block
    # the tied LM head (= token embeddings) is never converted
    assert {d.name: d.reason for d in report.kept_dense} == {"lm_head": "weight tied to another module"}
    x = ids(2, 8)
    assert torch.allclose(dense(x).logits, sparse(x).logits, atol=1e-5, rtol=1e-4)
    ref, got = dense.state_dict(), sparse.state_dict()
    assert got["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D keeps (in x out)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


@torch.no_grad()
def test_bert_classification_multirow_and_modules_filter():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64, num_labels=3)
    dense = BertForSequenceClassification(cfg).eval()
    prune(dense, 0.85, ["query", "key", "value", "dense"])
    sparse = copy.deepcopy(dense)
    report = sparsify_linears(sparse, layout="csr", modules=["query", "intermediate.dense"])
    assert converted_names(sparse) == {f"bert.encoder.layer.{i}.{s}" for i in range(2)
                                       for s in ("attention.self.query", "intermediate.dense")}
    assert len(report.decisions) == 4  # only the modules asked for are considered
    x = ids(3, 10)
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    assert torch.allclose(dense(x, attention_mask=mask).logits, sparse(x, attention_mask=mask).logits, atol=1e-5)


@torch.no_grad()
def test_bsr_layout_and_indivisible_shapes():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    for layer in (model[0], model[2]):  # whole 4x4 blocks of zeros
        w = layer.weight
        blocks = torch.rand(w.shape[0] // 2, (w.shape[1] + 3) // 4, generator=torch.Generator().manual_seed(2)) < 0.8
        keep = blocks.repeat_interleave(2, 0).repeat_interleave(4, 1)[: w.shape[0], : w.shape[1]]
        w.mul_(~keep)
    dense = copy.deepcopy(model)
    report = sparsify_linears(model, layout="bsr", min_sparsity=0.3)
    assert isinstance(model[0], SparseLinear) and model[0].layout == "bsr"
    assert {d.name: d.reason for d in report.kept_dense} == {"2": "shape not divisible by blocksize 4"}
    x = torch.randn(5, 16)
    assert torch.allclose(dense(x), model(x), atol=1e-5)
    assert torch.allclose(dense(x[:1]), model(x[:1]), atol=1e-5)


@torch.no_grad()
def test_bfloat16_is_converted_only_where_torch_has_a_kernel():
    model = tiny_llama().to(torch.bfloat16)
    prune(model, 0.9, ["q_proj"])
    dense = copy.deepcopy(model)
    report = sparsify_linears(model, layout="csr")
    for d in report.decisions:
        if d.sparsity >= 0.5:
            assert d.layout == "csr" or "no torch sparse kernel" in d.reason
    x = ids(1, 4)
    assert torch.allclose(dense(x).logits.float(), model(x).logits.float(), atol=2e-2)


def test_bad_arguments_fail_with_the_valid_choices():
    model = tiny_llama()
    with pytest.raises(ValueError, match="layout 'coo' is not valid; valid: auto, csr, bsr"):
        sparsify_linears(model, layout="coo")
    assert LAYOUTS == ("auto", "csr", "bsr")
    with pytest.raises(ValueError, match=r"matched no Linear/Conv1D layer; linear layer names here: .*q_proj"):
        sparsify_linears(model, modules=["attention"])
    with pytest.raises(ValueError, match="min_sparsity must be in"):
        sparsify_linears(model, min_sparsity=1.5)
    with pytest.raises(ValueError, match="tokens must be a positive int"):
        sparsify_linears(model, tokens=0)
    assert all(isinstance(m, nn.Linear) for n, m in model.named_modules() if n.endswith("_proj"))
