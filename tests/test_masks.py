import pytest
import torch

from sparsetune.masks import global_topk_masks, nm_mask, num_pruned, parse_pattern, row_mask, topk_mask


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
