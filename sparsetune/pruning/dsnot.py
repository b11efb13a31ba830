"""DSnoT (Zhang et al. 2024, "Dynamic Sparse No Training"): refine a base mask (Wanda, SparseGPT or
magnitude, per output row) by training-free grow/prune swaps that shrink each row's expected output error.

Per row i, with d_ij = W_ij * E[x_j] (signed; E[x_j] at the reference's scale, see dsnot_stats.py):
    eps_i = sum_{j pruned} d_ij                     (the expected change of output i caused by pruning)
Up to `max_cycles` cycles; in each, every still-active row makes one swap:
- grow: the pruned entries are ranked by d_ij / Var[x_j]^gamma; take the largest if eps_i > 0, the
  smallest otherwise (walking inwards from that end, one step per cycle);
- prune, unstructured: the retained entries ordered by Wanda score (lowest first) are split by the sign
  of d: negative d from the front, positive d from the back (lowest Wanda score first at both ends). The
  front is used when eps_i >= 0, the back when eps_i < 0, so the pruned weight moves eps_i towards 0;
- prune, N:M: the retained entry with the lowest base score in the grown weight's own M-block (grown
  weights are never pruned again), so every block keeps exactly N;
- a row stops for good at the first cycle where |eps_i| <= update_threshold, its candidate list is
  exhausted, or (sign check on) the swap would flip the sign eps_i started with. The row's count of
  pruned weights never changes.
The loop is vectorised over rows: each cycle is a handful of gathers/scatters over all rows at once.

The sign check: the reference's `--without_same_sign` is argparse `type=bool, default=True`, so its
unstructured branch never checks signs; its N:M branch always does. `same_sign: null` (default)
reproduces that; true / false force the check on / off for both patterns.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..method_schemas import DSNOT_DEFAULTS, check_dsnot_options
from .magnitude import select_mask
from .sparsegpt import upper_cholesky_of_inverse
from .wanda import wanda_scores

DEVIATIONS = [
    "dsnot: Var[x_j] is the variance over all calibration tokens (reference: token-weighted mean of the "
    "per-forward variances, i.e. without the spread between sequences)",
    "dsnot: grow candidates are the pruned entries only and a row stops when a candidate list is exhausted "
    "(reference: its grow list also holds retained entries at metric 0, whose 'regrowth' changes the row's sparsity; "
    "its stopped rows keep moving their pointers and pruning, and it fails with an index error once a pointer passes "
    "the end of its list)",
    "dsnot: Var[x_j] == 0 is clamped, so a dead input column's regrow key is 0 (reference: 0/0 = NaN sorts last, so "
    "those weights are regrown first)",
    "dsnot: retained entries with d == 0 sit between the negative and positive ends of the prune order "
    "(reference's index arithmetic duplicates column 0 when some d == 0)",
    "dsnot: N:M - a grow whose M-block has no prunable weight left (possible above 50 % sparsity) is skipped "
    "and the row goes on (reference prunes an arbitrary entry of the block)",
    "dsnot: same_sign=null reproduces the reference (unstructured: no sign check, since without_same_sign is "
    "argparse type=bool default True; N:M: always checked); true/false force it",
    "dsnot: base masks are chosen per output row for all three bases (reference); base=sparsegpt is SparseGPT's "
    "score w^2/[U]_ii^2 without the OBS weight update (reference), base=magnitude is |W| per row",
    "dsnot: the update_threshold is in units of the per-sequence token sum (reference scale), so it scales "
    "with calibration seqlen (reference: 2048)",
]


@dataclass
class DSnoTSettings:
    base: str = DSNOT_DEFAULTS["base"]
    max_cycles: int = DSNOT_DEFAULTS["max_cycles"]
    update_threshold: float = DSNOT_DEFAULTS["update_threshold"]
    gamma: float = DSNOT_DEFAULTS["gamma"]
    same_sign: bool | None = DSNOT_DEFAULTS["same_sign"]
    layers: str = DSNOT_DEFAULTS["layers"]
    # name suffixes of attention matrices (model config `attention_modules`): layers=attention refines
    # only these, the rest (MLP) keep the base mask, like the reference's skip_layer="mlp"
    attention_modules: tuple = field(default_factory=tuple)

    def __post_init__(self):
        for key, value in check_dsnot_options({k: getattr(self, k) for k in DSNOT_DEFAULTS}).items():
            setattr(self, key, value)
        self.attention_modules = tuple(self.attention_modules or ())
        if self.layers == "attention" and not self.attention_modules:
            raise ValueError("dsnot with layers=attention needs the attention matrices' name suffixes "
                             "(model.attention_modules), or layers=all")

    @classmethod
    def from_options(cls, options, attention_modules=()) -> DSnoTSettings:
        return cls(**check_dsnot_options(options), attention_modules=tuple(attention_modules or ()))

    def refines(self, name: str) -> bool:
        """Whether matrix `name` is refined (attention by suffix, as targets are found) or keeps its base mask."""
        if self.layers == "all":
            return True
        return any(name == s or name.endswith("." + s) for s in self.attention_modules)

    def sign_check(self, nm) -> bool:
        return (nm is not None) if self.same_sign is None else bool(self.same_sign)

    def record(self) -> dict:
        out = asdict(self)
        out["attention_modules"] = list(self.attention_modules)
        return out


# ---- base masks -------------------------------------------------------------------------------------
def sparsegpt_scores(weight: torch.Tensor, hessian: torch.Tensor, percdamp: float, name: str) -> torch.Tensor:
    """SparseGPT's saliency w^2 / [U]_ii^2 (U: upper Cholesky factor of the damped H^-1), no weight update."""
    w = weight.detach().float().clone()
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(percdamp * torch.mean(torch.diag(h)))
    u = upper_cholesky_of_inverse(h, name, percdamp)
    return w.pow(2) / torch.diag(u).pow(2).unsqueeze(0)


def base_scores(weight, stats, base: str, percdamp: float = 0.01, name: str = "a layer") -> torch.Tensor:
    if base == "wanda":
        return wanda_scores(weight, stats.mean_sq_norm())
    if base == "magnitude":
        return weight.detach().float().abs()
    return sparsegpt_scores(weight, stats.hessian(), percdamp, name)


# ---- the refinement ---------------------------------------------------------------------------------
def _selected_sorted(select: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Per row, the column indices where `select` is True, ordered by `key` ascending (stable).
    Every row must select the same number of columns."""
    counts = select.sum(dim=1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise ValueError("dsnot needs the same number of pruned weights in every row of the base mask")
    k = int(counts[0]) if counts.numel() else 0
    order = torch.argsort(key, dim=1, stable=True)
    picked_first = torch.argsort((~select.gather(1, order)).to(torch.uint8), dim=1, stable=True)
    return order.gather(1, picked_first)[:, :k]


def _prune_order(retained: torch.Tensor, d: torch.Tensor, wanda: torch.Tensor) -> torch.Tensor:
    """Retained columns by Wanda score, then: negative d (lowest score first), d == 0, positive d
    (lowest score last), so the front lowers eps when pruned and the back raises it."""
    by_score = _selected_sorted(retained, wanda)
    n = by_score.shape[1]
    rank = torch.arange(n, device=d.device).expand_as(by_score)
    dv = d.gather(1, by_score)
    key = torch.where(dv < 0, rank, torch.where(dv == 0, n + rank, 3 * n - 1 - rank))
    return by_score.gather(1, torch.argsort(key, dim=1))


@dataclass
class RefineResult:
    keep: torch.Tensor
    swaps: torch.Tensor  # per row
    cycles: int
    error_before: torch.Tensor  # eps per row
    error_after: torch.Tensor


@torch.no_grad()
def dsnot_refine(
    keep: torch.Tensor,
    d: torch.Tensor,
    regrow_key: torch.Tensor,
    prune_scores: torch.Tensor,
    nm: tuple[int, int] | None,
    max_cycles: int,
    update_threshold: float,
    same_sign: bool,
) -> RefineResult:
    """Grow/prune cycles on a keep-mask (out x in). `d` = W * E[x]; `regrow_key` = d / Var^gamma;
    `prune_scores` = Wanda scores (unstructured: prune order) or base scores (N:M: lowest in the block)."""
    keep = keep.clone()
    rows = torch.arange(keep.shape[0], device=keep.device)
    eps = (d.double() * (~keep)).sum(dim=1)
    before, sign0 = eps.clone(), torch.sign(eps)
    grow = _selected_sorted(~keep, regrow_key)
    k = grow.shape[1]
    if nm is None:
        prune_list = _prune_order(keep, d, prune_scores)
        block_scores = None
    else:
        prune_list = None
        block_scores = prune_scores.double().masked_fill(~keep, float("inf"))  # pruned: not prunable
    r = prune_list.shape[1] if prune_list is not None else 1
    swaps = torch.zeros_like(rows)
    active = torch.full_like(rows, k > 0 and r > 0, dtype=torch.bool)
    g_lo, g_hi = torch.zeros_like(rows), torch.full_like(rows, k - 1)
    p_lo, p_hi = torch.zeros_like(rows), torch.full_like(rows, r - 1)
    cycles = 0
    while cycles < max_cycles and bool(active.any()):
        cycles += 1
        grow_hi = eps > 0
        gi = torch.where(grow_hi, g_hi, g_lo)
        go_on = active & (eps.abs() > update_threshold) & (g_lo <= g_hi)
        g = grow.gather(1, gi.clamp(0, k - 1).unsqueeze(1)).squeeze(1)
        if nm is None:
            prune_hi = eps < 0
            pi = torch.where(prune_hi, p_hi, p_lo)
            go_on &= p_lo <= p_hi
            p = prune_list.gather(1, pi.clamp(0, r - 1).unsqueeze(1)).squeeze(1)
            has_p = torch.ones_like(go_on)
        else:
            m = nm[1]
            start = g - g % m
            block = block_scores.gather(1, start.unsqueeze(1) + torch.arange(m, device=g.device))
            lowest, offset = block.min(dim=1)  # first minimum
            p, has_p = start + offset, torch.isfinite(lowest)
        after = eps + d[rows, p].double() - d[rows, g].double()
        if same_sign:
            go_on &= ~has_p | (torch.sign(after) == sign0)
        swap = go_on & has_p
        keep[rows[swap], g[swap]] = True
        keep[rows[swap], p[swap]] = False
        if block_scores is not None:
            block_scores[rows[swap], p[swap]] = float("inf")
        eps = torch.where(swap, after, eps)
        swaps += swap.long()
        active = go_on
        # every row walks one step inwards on the ends it used
        g_hi -= grow_hi.long()
        g_lo += (~grow_hi).long()
        if nm is None:
            p_hi -= prune_hi.long()
            p_lo += (~prune_hi).long()
    return RefineResult(keep, swaps, cycles, before, eps)


@torch.no_grad()
def dsnot_prune(
    weight: torch.Tensor,
    stats,
    sparsity: float,
    nm: tuple[int, int] | None,
    settings: DSnoTSettings,
    refine: bool = True,
    percdamp: float = 0.01,
    name: str = "a layer",
) -> tuple[torch.Tensor, dict]:
    """Keep-mask of `weight` (out x in): the base mask, refined by DSnoT when `refine`; and a record."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    w = weight.detach().to(dtype)
    base = base_scores(w, stats, settings.base, percdamp, name)
    keep = select_mask(base, sparsity, nm, granularity="row")
    if not refine:
        return keep, {"refined": False, "swaps": 0}
    d = w * stats.token_sum_per_sequence().to(dtype).unsqueeze(0)
    var = stats.variance().to(dtype).clamp_min(torch.finfo(torch.float32).tiny)
    regrow_key = d / var.pow(settings.gamma).unsqueeze(0) if settings.gamma else d
    # the reference offers retained weights for pruning by Wanda score (unstructured) or by the base score
    # within the M-block (N:M)
    prune_scores = base if nm is not None or settings.base == "wanda" else wanda_scores(w, stats.mean_sq_norm())
    res = dsnot_refine(keep, d, regrow_key, prune_scores, nm, settings.max_cycles, settings.update_threshold,
                       settings.sign_check(nm))
    return res.keep, {
        "refined": True,
        "swaps": int(res.swaps.sum()),
        "cycles": res.cycles,
        "mean_abs_error_before": float(res.error_before.abs().mean()),
        "mean_abs_error_after": float(res.error_after.abs().mean()),
    }
