"""Post-training pruners: exact ratios / N:M groups, Wanda and SparseGPT against plain reference
computations written here, and the block-by-block driver's propagation through pruned blocks."""
import math

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from sparsetune.pruning import CalibrationSettings, PruneSpec, calibration_samples, prune_model
from sparsetune.pruning.calibration import (
    capture_block_inputs,
    documents_from_batches,
    run_block,
    sample_document_windows,
    sample_stream_windows,
)
from sparsetune.pruning.magnitude import magnitude_mask, pattern_sparsity
from sparsetune.pruning.sparsegpt import HessianStats, sparsegpt_prune
from sparsetune.pruning.wanda import InputNormStats, wanda_mask
from sparsetune.targets import find_targets

torch.set_num_threads(1)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_llama(seed=0, boost_block0=1.0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).double().eval()
    with torch.no_grad():  # make block 0's output matter, so pruning it visibly changes block 1's inputs
        for mod in (model.model.layers[0].self_attn.o_proj, model.model.layers[0].mlp.down_proj):
            mod.weight.mul_(boost_block0)
    return model


def samples(n=6, seqlen=12, seed=1):
    return torch.randint(0, 64, (n, seqlen), generator=torch.Generator().manual_seed(seed))


# ---- magnitude and patterns -----------------------------------------------------------------------
def test_magnitude_hand_example_and_exact_count_with_ties():
    w = torch.tensor([[1.0, -2.0, 3.0], [0.5, 2.5, -1.5]])
    # |W| sorted: 0.5, 1, 1.5 | 2, 2.5, 3 -> floor(6*0.5) = 3 smallest pruned
    assert magnitude_mask(w, 0.5, None).tolist() == [[False, True, True], [False, True, False]]
    ties = torch.ones(4, 4)  # the reference's "<= threshold" would prune all 16
    assert int((~magnitude_mask(ties, 0.5, None)).sum()) == 8
    assert int((~magnitude_mask(torch.randn(7, 9), 0.3, None)).sum()) == math.floor(63 * 0.3)


def test_nm_keeps_n_of_every_m():
    row = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.1, 5.0, -6.0, 0.2]])
    assert magnitude_mask(row, 0.5, (2, 4)).tolist() == [[False, True, True, False, False, True, True, False]]
    assert magnitude_mask(row, 0.75, (2, 8)).tolist() == [[False, False, False, False, False, True, True, False]]
    assert pattern_sparsity("2:4", None) == 0.5 and pattern_sparsity("2:8", None) == 0.75
    assert pattern_sparsity("4:8", 0.5) == 0.5 and pattern_sparsity("unstructured", 0.3) == 0.3
    with pytest.raises(ValueError, match="contradicts"):
        pattern_sparsity("2:8", 0.5)
    with pytest.raises(ValueError, match="unstructured"):
        pattern_sparsity("2-4", 0.5)
    with pytest.raises(ValueError, match="valid options"):
        PruneSpec("snip", 0.5)


@pytest.mark.parametrize("pruner", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("2:4", None), ("4:8", None), ("2:8", None)])
def test_pruners_hit_ratio_and_pattern(pruner, pattern, sparsity):
    model = tiny_llama()
    targets = find_targets(model, TARGETS)
    spec = PruneSpec(pruner, sparsity, pattern, blocksize=16)
    result = prune_model(model, spec, targets, "model.layers", samples(), batch_size=4)
    for name, mod in targets.items():
        w, mask = mod.weight, result.masks[name]
        assert torch.equal(w == 0, ~mask), name  # zeros exactly where the mask prunes
        rows, cols = w.shape
        if pattern == "unstructured":
            pruned_rows = (~mask).sum(dim=1)
            if pruner == "wanda":  # per-row comparison group
                assert torch.all(pruned_rows == cols // 2)
            else:
                assert int(pruned_rows.sum()) == rows * cols // 2
        else:
            keep, group = (int(x) for x in pattern.split(":"))
            kept = mask.view(rows, cols // group, group).sum(dim=2)
            assert torch.all(kept == keep), name
    assert result.sparsity() == pytest.approx(spec.sparsity)


def test_magnitude_fused_blocks_are_ranked_separately():
    lin = nn.Linear(4, 6, bias=False)
    with torch.no_grad():  # first block (rows 0-2) small, second big: one ranking would prune only block 0
        lin.weight.copy_(torch.cat([torch.rand(3, 4) * 0.1, 1 + torch.rand(3, 4)]))
    result = prune_model(nn.Sequential(lin), PruneSpec("magnitude", 0.5), {"0": lin}, splits={"0": (3, 3)})
    assert int((~result.masks["0"][:3]).sum()) == 6 and int((~result.masks["0"][3:]).sum()) == 6


# ---- Wanda against explicit loops ------------------------------------------------------------------
def reference_wanda(model, ids, sparsity, nm=None):
    """Sequential Wanda written plainly: statistics from a full forward of the model pruned so far."""
    for block in model.model.layers:
        linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
        sq = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in linears.items()}
        def accumulate(name, sq=sq):  # this block's sums (bound now, not the loop's last)
            def hook(mod, args, out):
                sq[name].add_(args[0].reshape(-1, args[0].shape[-1]).pow(2).sum(0))
            return hook

        hooks = [m.register_forward_hook(accumulate(n)) for n, m in linears.items()]
        with torch.no_grad():
            model(ids, use_cache=False)
        for h in hooks:
            h.remove()
        for n, m in linears.items():
            norm = (sq[n] / ids.shape[0]).sqrt()
            w = m.weight.detach().clone()
            for r in range(w.shape[0]):
                score = [abs(float(w[r, j])) * float(norm[j]) for j in range(w.shape[1])]
                if nm is None:
                    pruned = sorted(range(w.shape[1]), key=lambda j: score[j])[: int(w.shape[1] * sparsity)]
                else:
                    keep, group = nm
                    pruned = []
                    for g in range(0, w.shape[1], group):
                        pruned += sorted(range(g, g + group), key=lambda j: score[j])[: group - keep]
                w[r, pruned] = 0.0
            with torch.no_grad():
                m.weight.copy_(w)
    return model


@pytest.mark.parametrize("pattern,sparsity,nm", [("unstructured", 0.7, None), ("2:4", None, (2, 4))])
def test_wanda_matches_plain_sequential_reference(pattern, sparsity, nm):
    ids = samples()
    model = tiny_llama(boost_block0=30.0)
    expected = reference_wanda(tiny_llama(boost_block0=30.0), ids, pattern_sparsity(pattern, sparsity), nm)
    prune_model(model, PruneSpec("wanda", sparsity, pattern), find_targets(model, TARGETS), "model.layers", ids, batch_size=4)
    for (name, got), want in zip(model.named_parameters(), expected.parameters()):
        assert torch.equal(got == 0, want == 0), name
        assert torch.equal(got, want), name


def test_driver_feeds_next_block_the_pruned_blocks_outputs():
    """Block 1's masks follow from pruned block 0's outputs (the reference test above checks equality
    with a full forward of the partly pruned model); dense propagation would give other masks."""
    ids = samples()
    model = tiny_llama(boost_block0=30.0)
    prune_model(model, PruneSpec("wanda", 0.7), find_targets(model, TARGETS), "model.layers", ids, batch_size=4)
    got = model.model.layers[1].self_attn.q_proj.weight != 0
    dense = tiny_llama(boost_block0=30.0)
    blocks = dense.model.layers
    stats = InputNormStats(32, torch.device("cpu"))
    hook = blocks[1].self_attn.q_proj.register_forward_hook(lambda m, a, o: stats.add_batch(a[0]))
    run_block(blocks[1], run_block(blocks[0], capture_block_inputs(dense, blocks[0], ids, 4)))
    hook.remove()
    dense_mask = wanda_mask(blocks[1].self_attn.q_proj.weight, stats.mean_sq_norm(), 0.7, None)
    assert not torch.equal(got, dense_mask)


# ---- SparseGPT against a column-by-column OBS loop ---------------------------------------------------
def reference_obs(w, h, sparsity, nm, blocksize, percdamp):
    """One column at a time, updating all later columns immediately (no lazy batching), float64."""
    w, h = w.double().clone(), h.double().clone()
    rows, cols = w.shape
    h += percdamp * torch.diag(h).mean() * torch.eye(cols, dtype=torch.float64)
    u = torch.linalg.cholesky(torch.linalg.inv(h), upper=True)
    d = torch.diag(u)
    pruned = torch.zeros(rows, cols, dtype=torch.bool)
    for i in range(cols):
        if nm is None and i % blocksize == 0:
            end = min(i + blocksize, cols)
            score = (w[:, i:end] ** 2 / d[i:end] ** 2).reshape(-1)
            k = math.floor(rows * end * sparsity) - math.floor(rows * i * sparsity)
            flat = torch.zeros(score.numel(), dtype=torch.bool)
            flat[torch.argsort(score)[:k]] = True
            pruned[:, i:end] = flat.view(rows, end - i)
        if nm is not None and i % nm[1] == 0:
            for r in range(rows):
                score = w[r, i : i + nm[1]] ** 2 / d[i : i + nm[1]] ** 2
                pruned[r, i + torch.argsort(score)[: nm[1] - nm[0]]] = True
        err = w[:, i] * pruned[:, i] / u[i, i]
        w[:, i:] -= torch.outer(err, u[i, i:])
        w[pruned[:, i], i] = 0.0
    return w, ~pruned


def random_problem(rows=6, cols=16, tokens=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(tokens, cols, generator=g) * torch.linspace(0.2, 3.0, cols)  # uneven input scales
    stats = HessianStats(cols, torch.device("cpu"))
    stats.add_batch(x.view(4, tokens // 4, cols))
    return w, x, stats.hessian()


@pytest.mark.parametrize("sparsity,nm,blocksize", [(0.5, None, 4), (0.3, None, 5), (0.5, None, 128), (0.5, (2, 4), 4), (0.75, (2, 8), 8)])
def test_sparsegpt_matches_column_by_column_obs(sparsity, nm, blocksize):
    w, x, h = random_problem()
    got_w, got_mask = sparsegpt_prune(w, h, sparsity, nm, blocksize=blocksize, percdamp=0.01)
    want_w, want_mask = reference_obs(w, h, sparsity, nm, blocksize, 0.01)
    assert torch.equal(got_mask, want_mask)
    assert torch.allclose(got_w.double(), want_w, atol=1e-4)
    assert torch.equal(got_w == 0, ~got_mask)
    assert int((~got_mask).sum()) == math.floor(w.numel() * sparsity)


def test_sparsegpt_hessian_is_2_over_n_xxt_and_beats_plain_masking():
    w, x, h = random_problem()
    assert torch.allclose(h, 2.0 / 4 * x.t() @ x, rtol=1e-5, atol=1e-5)
    new_w, mask = sparsegpt_prune(w, h, 0.5, blocksize=4)
    obs_error = (x @ (w - new_w).t()).pow(2).sum()
    masked_error = (x @ (w - w * mask).t()).pow(2).sum()
    assert obs_error < masked_error


def test_sparsegpt_row_groups_and_dead_columns_and_errors():
    w, x, h = random_problem(rows=6, cols=8)
    h[3, :], h[:, 3] = 0.0, 0.0  # an input that is always zero
    new_w, mask = sparsegpt_prune(w, h, 0.5, blocksize=4, row_groups=[2, 4])
    assert torch.all(new_w[:, 3] == 0)
    assert int((~mask[:2]).sum()) == 8 and int((~mask[2:]).sum()) == 16
    with pytest.raises(ValueError, match="percdamp"):
        sparsegpt_prune(torch.randn(2, 2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]), 0.5, percdamp=0.0)
    with pytest.raises(ValueError, match="divide"):
        sparsegpt_prune(torch.randn(2, 6), torch.eye(6), 0.5, (2, 4))


# ---- calibration ----------------------------------------------------------------------------------
def test_calibration_windows_from_unpadded_training_batches_any_nsamples():
    batches = [
        {"input_ids": torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])},
        {"input_ids": torch.tensor([[10, 11, 12, 13]]), "attention_mask": torch.tensor([[1, 1, 1, 1]])},
    ]
    docs = documents_from_batches(iter(batches), needed_tokens=100, max_batches=10)
    assert [d.tolist() for d in docs] == [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    settings = CalibrationSettings(source="train", nsamples=5, seqlen=3, seed=0)  # 5, not the reference's 128
    out = calibration_samples(settings, batches=lambda n: iter(batches))
    stream = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert out.shape == (5, 3)
    for row in out.tolist():
        assert any(stream[i : i + 3] == row for i in range(len(stream) - 2))
    assert torch.equal(out, calibration_samples(settings, batches=lambda n: iter(batches)))  # seeded
    with pytest.raises(ValueError, match="seqlen"):
        sample_stream_windows(torch.arange(5), 2, 6, 0)
    with pytest.raises(ValueError, match="allowed"):
        CalibrationSettings.from_options({"n_samples": 3})
    with pytest.raises(ValueError, match="local"):
        CalibrationSettings.from_options({"source": "/nonexistent/c4.jsonl"})


def test_document_sampling_takes_windows_of_long_documents_only(tmp_path):
    docs = [torch.arange(3), torch.arange(100, 110), torch.arange(200, 212)]
    out = sample_document_windows(docs, nsamples=8, seqlen=5, seed=0)
    for row in out.tolist():  # windows of the two documents longer than seqlen, consecutive tokens
        assert row[0] >= 100 and row == list(range(row[0], row[0] + 5))
        assert row[-1] < 110 or row[0] >= 200
    path = tmp_path / "calib.jsonl"
    path.write_text("\n".join('{"text": "%s"}' % ("x" * n) for n in (2, 30)))
    char_tok = lambda t: {"input_ids": [ord(c) for c in t]}
    settings = CalibrationSettings(source=str(path), nsamples=3, seqlen=10, sampling="document")
    assert calibration_samples(settings, char_tok).tolist() == [[ord("x")] * 10] * 3


def test_prune_model_rejects_targets_outside_the_decoder():
    model = tiny_llama()
    targets = find_targets(model, TARGETS + ["lm_head"])
    with pytest.raises(ValueError, match="outside"):
        prune_model(model, PruneSpec("wanda", 0.5), targets, "model.layers", samples())


# ---- other architectures: GPT-2 passes its mask positionally and stores Conv1D weights transposed ----
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("make,path", [(tiny_llama, "model.layers"), (tiny_gpt2, "transformer.h")])
def test_captured_inputs_replay_the_full_forward(make, path):
    model, ids = make(), samples()
    blocks = model.get_submodule(path)
    inputs = capture_block_inputs(model, blocks[0], ids, batch_size=4)
    assert inputs.nsamples == 6 and len(inputs.hidden) == 2
    with torch.no_grad():
        full = model(ids, output_hidden_states=True).hidden_states
    after_block0 = torch.cat(run_block(blocks[0], inputs).hidden)
    assert torch.allclose(after_block0, full[1], atol=1e-6)


@pytest.mark.parametrize("pruner", ["magnitude", "wanda", "sparsegpt"])
def test_gpt2_conv1d_and_fused_qkv(pruner):
    model = tiny_gpt2()
    targets = find_targets(model, ["c_attn", "c_proj", "c_fc"])
    splits = {n: (32, 32, 32) for n in targets if n.endswith("c_attn")}
    result = prune_model(model, PruneSpec(pruner, 0.5, blocksize=16), targets, "transformer.h", samples(), 4, splits)
    for name, mod in targets.items():
        w = mod.weight.t()  # Conv1D stores (in, out)
        assert torch.equal(w == 0, ~result.masks[name]), name
        if name.endswith("c_attn"):
            for part in w.split(32, dim=0):  # q, k and v each half pruned
                assert int((part == 0).sum()) == part.numel() // 2
    assert result.sparsity() == pytest.approx(0.5)
