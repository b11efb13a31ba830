import pytest
import torch

from sparsetune.divergence import Diverged
from sparsetune.masks import _topk_select, global_topk_masks, nm_mask, num_pruned, parse_pattern, row_mask, topk_mask


def test_topk_prunes_floor_of_numel_times_sparsity():
    s = torch.tensor([[0.5, 0.1, 0.9], [0.3, 0.7, 0.2]])
    m = topk_mask(s, 0.5)  # floor(6*0.5)=3 pruned: 0.1, 0.2, 0.3
    assert m.tolist() == [[True, False, True], [False, True, False]]
    assert num_pruned(10, 0.25) == 2  # floor, not round
    assert topk_mask(torch.rand(7, 9), 0.9).sum() == 63 - 56


def test_global_ranking_spans_matrices():
    a = torch.tensor([1.0, 2.0, 3.0])
    b = torch.tensor([10.0, 20.0, 30.0])
    m = global_topk_masks({"a": a, "b": b}, 0.5)
    assert m["a"].tolist() == [False, False, False] and m["b"].tolist() == [True, True, True]


def test_row_mask_is_per_output_row():
    s = torch.tensor([[1.0, 2.0, 3.0, 4.0], [40.0, 30.0, 20.0, 10.0]])
    assert row_mask(s, 0.5).tolist() == [[False, False, True, True], [True, True, False, False]]


def test_nm_mask_keeps_n_of_every_m_consecutive():
    s = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.4, 0.3, 0.2]])
    m = nm_mask(s, 2, 4)
    assert m.tolist() == [[True, False, True, False, False, True, True, False]]
    assert (m.reshape(-1, 4).sum(1) == 2).all()
    # 1:4 keeps one (the largest) per group: 75 % sparse, as 2:8 is in the SPP paper
    assert nm_mask(s, 1, 4).tolist() == [[True, False, False, False, False, True, False, False]]


@pytest.mark.parametrize("bad", ["2-4", "4:2", "0:4", "dense"])
def test_bad_patterns_say_what_is_allowed(bad):
    with pytest.raises(ValueError, match="N:M|unstructured"):
        parse_pattern(bad)


def test_sparsity_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        topk_mask(torch.rand(4), 1.0)


# ---- the exact top-k selection (every mask update of MaP, MvP and PST) ----------------------------------------

@pytest.mark.parametrize("shape", [(7, 5), (300, 200), (96, 1000)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.97])
def test_binarizer_keeps_exactly_the_largest(shape, sparsity):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(*shape, generator=g) + torch.linspace(0, 2, shape[1])  # column structure, like R + C
    expected = sorted_reference_keep(scores.reshape(-1), num_pruned(scores.numel(), sparsity)).view(shape)
    assert torch.equal(topk_mask(scores, sparsity), expected)
    assert torch.equal(_topk_select(scores.reshape(-1), num_pruned(scores.numel(), sparsity)).view(shape), expected)


def test_binarizer_breaks_ties_exactly_and_deterministically():
    scores = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask = topk_mask(scores, 0.5)  # 3 pruned among five tied zeros: the last ones in index order
    assert mask.tolist() == [[True, True, False], [False, True, False]]
    assert int((~topk_mask(torch.zeros(40, 40), 0.333)).sum()) == num_pruned(1600, 0.333)


def sorted_reference_keep(flat: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Prune the n_prune smallest by a full sort, ties ranked so the last in index order go first."""
    order = torch.sort(flat.flip(0), stable=True).indices  # among equal values, higher original index first
    mask = torch.ones(flat.numel(), dtype=torch.bool)
    mask[flat.numel() - 1 - order[:n_prune]] = False
    return mask


def test_cpu_binarizer_equals_a_full_sort():
    g = torch.Generator().manual_seed(1)
    flat = torch.randn(100_000, generator=g)
    skewed = torch.cat([torch.zeros(60_000), torch.randn(40_000, generator=g)])  # threshold inside a tie block
    for scores in (flat, skewed, flat.double(), flat.to(torch.bfloat16), flat.half()):
        for n_prune in (1, 77, 50_000, 59_000, 90_000, 99_999):
            fast = topk_mask(scores, n_prune / scores.numel() + 1e-9)
            assert int((~fast).sum()) == n_prune
            assert torch.equal(fast, sorted_reference_keep(scores.float(), n_prune)), (scores.dtype, n_prune)


def test_binarizer_rejects_nan_scores():
    with pytest.raises(Diverged, match="NaN"):
        topk_mask(torch.tensor([1.0, float("nan"), 0.5, 2.0]), 0.5)


def test_selection_with_a_block_of_equal_scores_matches_the_full_sort():
    """MaP's pruned weights are exact zeros: the tie-block path gives the same mask as the plain one."""
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(50_000, generator=g).abs()
    scores[torch.randperm(50_000, generator=g)[:30_000]] = 0.0
    scores[:10] = -0.0  # compares equal to +0.0
    for n_prune in (5, 29_999, 30_000, 30_001, 45_000):
        mask = topk_mask(scores, n_prune / scores.numel() + 1e-9)
        assert torch.equal(mask, sorted_reference_keep(scores, n_prune)), n_prune
    with pytest.raises(Diverged, match="NaN"):
        topk_mask(torch.cat([torch.zeros(1000), torch.tensor([float("nan")])]), 0.5)
