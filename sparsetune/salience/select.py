"""From scores to index sets: the exact k largest entries, over one tensor or many together.

Global SPEFT ranks every target matrix at once (up to billions of entries), so the k-th largest score is
found by bisection on the order-preserving integer image of the float32 scores (32 counting passes, no
concatenated copy, no sort). Ties at the threshold are taken in a fixed order (earlier tensor, then lower
flat index), so the selection is deterministic and its size is exactly k.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def order_keys(scores: torch.Tensor) -> torch.Tensor:
    """int32 keys with key(a) < key(b) iff a < b for float32 a, b (-0.0 just below +0.0)."""
    x = scores.detach().float().contiguous().reshape(-1)
    if torch.isnan(x).any():
        raise ValueError("salience scores contain NaN")
    bits = x.view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def topk_indices(scores: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Sorted int64 flat indices, one tensor per input, of the k largest entries over all inputs together."""
    sizes = [s.numel() for s in scores]
    if not 0 <= k <= sum(sizes):
        raise ValueError(f"cannot select {k} entries out of {sum(sizes)}")
    if k == 0 or k == sum(sizes):
        return [torch.arange(n if k else 0, device=s.device) for s, n in zip(scores, sizes)]
    keys = [order_keys(s) for s in scores if s.numel()]

    def count_at_least(t: int) -> int:
        return int(torch.stack([(key >= t).sum() for key in keys]).sum())

    lo = min(int(key.min()) for key in keys)  # count_at_least(lo) = total >= k
    hi = max(int(key.max()) for key in keys)
    while lo < hi:  # largest t with count_at_least(t) >= k
        mid = (lo + hi + 1) // 2
        if count_at_least(mid) >= k:
            lo = mid
        else:
            hi = mid - 1
    threshold = lo
    ties_left = k - count_at_least(threshold + 1)
    out, it = [], iter(keys)
    for s in scores:
        if not s.numel():
            out.append(torch.zeros(0, dtype=torch.long, device=s.device))
            continue
        key = next(it)
        chosen = key > threshold
        if ties_left > 0:
            ties = (key == threshold).nonzero().squeeze(1)[:ties_left]
            chosen[ties] = True
            ties_left -= ties.numel()
        out.append(chosen.nonzero().squeeze(1))
    return out


def split_budget(total: int, sizes: Sequence[int]) -> list[int]:
    """Split `total` over parts proportionally to `sizes` (largest remainder), each part <= its size."""
    whole = sum(sizes)
    if not 0 <= total <= whole:
        raise ValueError(f"budget {total} does not fit in {whole} entries")
    if whole == 0:
        return [0 for _ in sizes]
    shares = [total * n / whole for n in sizes]
    parts = [min(math.floor(s), n) for s, n in zip(shares, sizes)]
    order = sorted(range(len(sizes)), key=lambda i: (parts[i] - shares[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts
