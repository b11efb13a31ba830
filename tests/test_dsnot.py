"""DSnoT: the vectorised grow/prune cycles against a plain per-row, per-cycle loop written here, its
invariants (row sparsity, N:M pattern, the sign check), its statistics, its options, and whole runs
(prune_model on a tiny LLaMA, method=spp evaluate-only, method=lora_star)."""
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sparsetune.method_schemas import check_dsnot_options
from sparsetune.pruning import DSnoTSettings, PruneSpec, prune_model
from sparsetune.pruning.dsnot import dsnot_refine
from sparsetune.pruning.dsnot_stats import DSnoTStats
from sparsetune.pruning.magnitude import select_mask
from sparsetune.targets import find_targets

torch.set_num_threads(1)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTENTION = TARGETS[:4]


# ---- the plain reference ------------------------------------------------------------------------
def sign(x):
    return (x > 0) - (x < 0)


def loop_refine(keep, d, regrow_key, scores, nm, max_cycles, threshold, same_sign):
    """DSnoT row by row, cycle by cycle, with Python lists (the algorithm as dsnot.py's docstring states)."""
    keep = keep.tolist()
    d, regrow_key, scores = d.tolist(), regrow_key.tolist(), scores.tolist()
    swaps, errors = [], []
    for i, row in enumerate(keep):
        cols = range(len(row))
        grow = sorted((j for j in cols if not row[j]), key=lambda j: (regrow_key[i][j], j))
        retained = sorted((j for j in cols if row[j]), key=lambda j: (scores[i][j], j))
        prune = ([j for j in retained if d[i][j] < 0] + [j for j in retained if d[i][j] == 0]
                 + [j for j in reversed(retained) if d[i][j] > 0])
        originally_kept = set(retained)
        eps = sum(d[i][j] for j in cols if not row[j])
        sign0 = sign(eps)
        g_lo, g_hi, p_lo, p_hi, n = 0, len(grow) - 1, 0, len(prune) - 1, 0
        for _ in range(max_cycles):
            if abs(eps) <= threshold or g_lo > g_hi or (nm is None and p_lo > p_hi):
                break
            if eps > 0:
                g, g_hi = grow[g_hi], g_hi - 1
            else:
                g, g_lo = grow[g_lo], g_lo + 1
            if nm is None:
                if eps < 0:
                    p, p_hi = prune[p_hi], p_hi - 1
                else:
                    p, p_lo = prune[p_lo], p_lo + 1
            else:
                start = g - g % nm[1]
                block = [j for j in range(start, start + nm[1]) if row[j] and j in originally_kept]
                if not block:  # nothing left to prune in this M-block: skip this candidate
                    continue
                p = min(block, key=lambda j: (scores[i][j], j))
            after = eps + d[i][p] - d[i][g]
            if same_sign and sign(after) != sign0:
                break
            row[g], row[p], eps, n = True, False, after, n + 1
        swaps.append(n)
        errors.append(eps)
    return torch.tensor(keep), swaps, errors


def random_problem(rows, cols, sparsity, nm, seed, zero_column=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    mean = torch.randn(cols, generator=g, dtype=torch.float64)
    if zero_column:
        mean[3] = 0.0  # d == 0 for a whole column: the middle of the prune order
    var = torch.rand(cols, generator=g, dtype=torch.float64) + 0.1
    norm = torch.rand(cols, generator=g, dtype=torch.float64) + 0.05
    scores = w.abs() * norm.sqrt()
    keep = select_mask(scores, sparsity, nm, granularity="row")
    d = w * mean
    return keep, d, d / var, scores


def pruned_per_row(keep):
    return (~keep).sum(dim=1)


# ---- the algorithm against the reference --------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sparsity,threshold", [(0.5, 0.1), (0.75, 0.0), (0.3, 0.5)])
@pytest.mark.parametrize("same_sign", [False, True])
def test_unstructured_matches_the_loop_reference(seed, sparsity, threshold, same_sign):
    keep0, d, key, scores = random_problem(16, 32, sparsity, None, seed)
    res = dsnot_refine(keep0, d, key, scores, None, 50, threshold, same_sign)
    keep, swaps, errors = loop_refine(keep0, d, key, scores, None, 50, threshold, same_sign)
    assert torch.equal(res.keep, keep)
    assert res.swaps.tolist() == swaps and sum(swaps) > 0
    assert res.error_after.tolist() == pytest.approx(errors, abs=1e-9)
    assert torch.equal(pruned_per_row(res.keep), pruned_per_row(keep0))  # per-row sparsity unchanged
    # eps is what it claims: the sum of d over the pruned entries of the new mask
    assert torch.allclose(res.error_after, (d * ~res.keep).sum(dim=1), atol=1e-9)
    assert res.keep.ne(keep0).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("nm", [(2, 4), (2, 8), (1, 4)])
@pytest.mark.parametrize("same_sign", [False, True])
def test_nm_matches_the_loop_reference_and_keeps_the_pattern(seed, nm, same_sign):
    keep0, d, key, scores = random_problem(9, 32, 1 - nm[0] / nm[1], nm, seed)
    res = dsnot_refine(keep0, d, key, scores, nm, 50, 0.05, same_sign)
    keep, swaps, errors = loop_refine(keep0, d, key, scores, nm, 50, 0.05, same_sign)
    assert torch.equal(res.keep, keep) and res.swaps.tolist() == swaps and sum(swaps) > 0
    assert res.error_after.tolist() == pytest.approx(errors, abs=1e-9)
    kept_per_block = res.keep.reshape(9, -1, nm[1]).sum(dim=2)
    assert torch.all(kept_per_block == nm[0])  # every M-block still keeps exactly N


def test_sign_check_keeps_the_sign_and_never_raises_the_error():
    keep0, d, key, scores = random_problem(16, 64, 0.5, None, seed=5)
    before = dsnot_refine(keep0, d, key, scores, None, 1, 0.0, True).error_before
    previous = before.abs()
    for cycles in range(1, 25):  # the state after c cycles = a run with max_cycles = c
        eps = dsnot_refine(keep0, d, key, scores, None, cycles, 0.0, True).error_after
        assert torch.all(eps.abs() <= previous + 1e-12), cycles
        assert torch.all((torch.sign(eps) == torch.sign(before)) | (eps == 0))
        previous = eps.abs()
    assert float(previous.mean()) < 0.5 * float(before.abs().mean())


def test_without_sign_check_most_rows_reach_the_threshold():
    # the reference's behaviour: swaps may overshoot and flip eps (a few rows can end worse), but a row
    # stops as soon as |eps| <= threshold, which most rows reach
    keep0, d, key, scores = random_problem(16, 64, 0.5, None, seed=6)
    res = dsnot_refine(keep0, d, key, scores, None, 50, 0.1, False)
    assert int((res.error_after.abs() <= 0.1).sum()) >= 12 > int((res.error_before.abs() <= 0.1).sum())
    assert float(res.error_after.abs().median()) < 0.1 * float(res.error_before.abs().median())
    huge = dsnot_refine(keep0, d, key, scores, None, 50, 1e9, False)
    assert torch.equal(huge.keep, keep0) and int(huge.swaps.sum()) == 0
    one = dsnot_refine(keep0, d, key, scores, None, 1, 0.0, False)
    assert one.cycles == 1 and int(one.swaps.max()) == 1


def test_hand_example_grows_the_largest_and_prunes_the_negative_front():
    # one row, eps = 3 + 1 = 4 > 0: grow the pruned entry with the largest d/var (column 0, d=3), prune from
    # the front of the prune order: the negative d with the lowest Wanda score (column 3)
    keep = torch.tensor([[False, False, True, True, True]])
    d = torch.tensor([[3.0, 1.0, 2.0, -0.5, -1.0]], dtype=torch.float64)
    scores = torch.tensor([[0.0, 0.0, 1.0, 0.2, 0.3]], dtype=torch.float64)
    res = dsnot_refine(keep, d, d.clone(), scores, None, 1, 0.1, False)
    assert res.keep.tolist() == [[True, False, True, False, True]]
    assert res.error_after.tolist() == [pytest.approx(4 - 3 - 0.5)]


# ---- statistics ------------------------------------------------------------------------------------
def test_stats_are_exact_over_all_tokens_whatever_the_micro_batches():
    x = torch.randn(6, 10, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    one, split = DSnoTStats(5, "cpu"), DSnoTStats(5, "cpu", hessian=True)
    one.add_batch(x)
    for part in (x[:1], x[1:4], x[4:]):
        split.add_batch(part)
    tokens = x.reshape(-1, 5)
    for s in (one, split):
        assert torch.allclose(s.token_sum_per_sequence(), (tokens.sum(0) / 6).float(), atol=1e-5)
        assert torch.allclose(s.variance(), tokens.var(0, unbiased=False).float(), atol=1e-5)
        assert torch.allclose(s.mean_sq_norm(), (tokens.pow(2).sum(0) / 6).float(), atol=1e-4)
    assert torch.allclose(split.hessian(), (2 / 6 * tokens.t() @ tokens).float(), atol=1e-3)
    with pytest.raises(RuntimeError, match="without the Hessian"):
        one.hessian()
    with pytest.raises(RuntimeError, match="empty"):
        DSnoTStats(5, "cpu").variance()


# ---- options -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options,match", [
    ({"max_cycle": 5}, r"unknown salience.options \['max_cycle'\] for dsnot; allowed: \['base', 'calibration'"),
    ({"max_cycles": 0}, "max_cycles must be an integer >= 1"),
    ({"max_cycles": 2.5}, "max_cycles must be an integer >= 1"),
    ({"update_threshold": -0.1}, "update_threshold must be a finite number >= 0"),
    ({"gamma": float("inf")}, "gamma must be a finite number >= 0"),
    ({"base": "snip"}, r"base \(dsnot's initial mask\) must be one of \['wanda', 'sparsegpt', 'magnitude'\]"),
    ({"layers": "mlp"}, r"must be one of \['attention', 'all'\]"),
    ({"same_sign": "yes"}, "same_sign must be null"),
])
def test_bad_options_fail_with_one_line(options, match):
    with pytest.raises(ValueError, match=match) as err:
        check_dsnot_options(options)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=match):
        DSnoTSettings.from_options(options, ATTENTION)


def test_settings_defaults_and_which_matrices_are_refined():
    s = DSnoTSettings.from_options({}, ATTENTION)
    assert (s.base, s.max_cycles, s.update_threshold, s.gamma, s.same_sign, s.layers) == (
        "wanda", 50, 0.1, 1.0, None, "attention")
    assert s.refines("model.layers.0.self_attn.q_proj") and not s.refines("model.layers.0.mlp.up_proj")
    assert not s.refines("model.layers.0.self_attn.q_proj_extra")  # whole-name suffixes only
    assert DSnoTSettings(layers="all").refines("model.layers.0.mlp.up_proj")
    assert s.sign_check(None) is False and s.sign_check((2, 4)) is True  # the reference's behaviour
    assert DSnoTSettings(layers="all", same_sign=True).sign_check(None) is True
    with pytest.raises(ValueError, match="attention_modules"):
        PruneSpec("dsnot", 0.5)  # attention-only needs to know which matrices are attention


def test_composed_config_checks_dsnot_options_before_anything_runs():
    from conftest import compose_cfg

    from sparsetune.validate import check

    base = ["model=tiny-llama", "method=spp", "salience=dsnot"]
    cfg = compose_cfg(base)
    check(cfg)
    assert cfg.salience.options.max_cycles == 50 and cfg.salience.options.same_sign is None
    for extra, match in [("salience.options.max_cycles=0", "max_cycles"),
                         ("+salience.options.pow=2", "allowed"),
                         ("salience.options.base=movement", "base")]:
        with pytest.raises(Exception, match=match):
            check(compose_cfg([*base, extra]))


# ---- whole runs --------------------------------------------------------------------------------
def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).double().eval()


def samples(n=6, seqlen=12, seed=1):
    return torch.randint(0, 64, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def pruned(pruner, pattern, sparsity, **dsnot):
    model = tiny_llama()
    targets = find_targets(model, TARGETS)
    settings = DSnoTSettings(**{"attention_modules": ATTENTION, **dsnot}) if pruner == "dsnot" else None
    spec = PruneSpec(pruner, sparsity, pattern, dsnot=settings)
    return targets, prune_model(model, spec, targets, "model.layers", samples(), batch_size=4)


@pytest.mark.parametrize("base", ["wanda", "sparsegpt", "magnitude"])
@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("2:4", None)])
def test_prune_model_exact_sparsity_and_record(base, pattern, sparsity):
    targets, result = pruned("dsnot", pattern, sparsity, base=base, layers="all", update_threshold=0.0)
    for name, mod in targets.items():
        w, mask = mod.weight, result.masks[name]
        assert torch.equal(w == 0, ~mask), name
        if pattern == "unstructured":
            assert torch.all(pruned_per_row(mask) == w.shape[1] // 2), name
        else:
            assert torch.all(mask.reshape(w.shape[0], -1, 4).sum(dim=2) == 2), name
    rec = result.record()
    assert rec["pruner"] == "dsnot" and rec["achieved_sparsity"] == 0.5
    assert rec["dsnot"]["base"] == base and rec["dsnot"]["max_cycles"] == 50
    assert ("percdamp" in rec) == (base == "sparsegpt")
    assert rec["dsnot"]["same_sign"] is None and rec["dsnot"]["sign_check"] == (pattern == "2:4")
    swaps = rec["dsnot_swaps"]
    assert swaps["refined_matrices"] == 14 and swaps["total"] > 0
    assert swaps["total"] == sum(v["swaps"] for v in swaps["per_matrix"].values())
    assert any("without_same_sign" in d for d in rec["reference_deviations"])


def test_attention_only_leaves_mlp_with_the_base_mask():
    # block 0's statistics come from the unpruned block, so its MLP masks must equal Wanda's exactly
    _, wanda = pruned("wanda", "unstructured", 0.5)
    _, attention = pruned("dsnot", "unstructured", 0.5, update_threshold=0.0)
    _, every = pruned("dsnot", "unstructured", 0.5, layers="all", update_threshold=0.0)
    mlp0 = [f"model.layers.0.mlp.{n}" for n in ("gate_proj", "up_proj", "down_proj")]
    assert all(torch.equal(attention.masks[n], wanda.masks[n]) for n in mlp0)
    assert not all(torch.equal(every.masks[n], wanda.masks[n]) for n in mlp0)
    q0 = "model.layers.0.self_attn.q_proj"
    assert not torch.equal(attention.masks[q0], wanda.masks[q0])
    swaps = attention.record()["dsnot_swaps"]
    assert swaps["refined_matrices"] == 8 and swaps["base_mask_only_matrices"] == 6
    assert all(".self_attn." in n for n in swaps["per_matrix"])


def test_spp_evaluate_only_with_dsnot(tiny_cfg, tmp_path):
    from sparsetune.run import run

    res = run(tiny_cfg("model=tiny-llama", "method=spp", "salience=dsnot", "method.sparsity=0.5",
                       "salience.options.calibration.nsamples=4", "salience.options.calibration.seqlen=16",
                       "salience.options.calibration.batch_size=2", "salience.options.update_threshold=0.0",
                       "train.max_steps=0"), tmp_path)
    assert res["status"] == "completed" and res["timing"]["steps"] == 0
    s = res["sparsity"]
    assert s["achieved"] == pytest.approx(s["target"], abs=1e-3) and s["max_abs_count_error_per_matrix"] <= 1
    prune = res["method"]["pruning"]
    assert prune["pruner"] == "dsnot" and prune["dsnot"]["layers"] == "attention"
    assert prune["dsnot"]["attention_modules"] == ATTENTION and prune["dsnot_swaps"]["total"] > 0


def test_lora_star_prunes_with_dsnot_2_4():
    from omegaconf import OmegaConf

    from sparsetune.methods.base import MethodContext
    from sparsetune.methods.lora_star import LoraStar, LoraStarConfig

    arch = dict(model_type="llama", vocab_size=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg = OmegaConf.create({
        "method": OmegaConf.merge(OmegaConf.structured(LoraStarConfig),
                                  {"name": "lora_star", "pattern": "2:4", "sparsity": None}),
        "model": {"name": "tiny-llama", "arch": arch, "target_modules": TARGETS, "attention_modules": ATTENTION,
                  "exclude_modules": [], "fused_modules": {}, "decoder_layers": "model.layers", "head_modules": ["score"]},
        "salience": {"name": "dsnot", "options": {"same_sign": True, "calibration": {
            "source": "train", "nsamples": 4, "seqlen": 8, "seed": 0, "batch_size": 2}}},
        "mask_schedule": {"name": "oneshot"},
        "task": {"kind": "causal_lm"},
    })
    method = LoraStar(cfg)
    method.validate(cfg)
    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(3))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    model = tiny_llama().float()
    method.apply(model, MethodContext(cfg, total_steps=3, batches=lambda n: iter([batch] * n)))
    rec = method.record()["pruning"]
    assert rec["pruner"] == "dsnot" and rec["pattern"] == "2:4" and rec["dsnot"]["same_sign"] is True
    for name, layer in method.lora_layers.items():
        w = layer.get_base_layer().weight
        assert torch.all((w != 0).reshape(w.shape[0], -1, 4).sum(dim=2) == 2), name
    assert math.isclose(rec["achieved_sparsity"], 0.5)
