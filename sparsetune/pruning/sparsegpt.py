"""SparseGPT (Frantar & Alistarh 2023): prune columns left to right, each time compensating the error
on the not-yet-processed columns with the OBS update, using H = 2/N sum X X^T of the layer input.

Math, per column i with the upper Cholesky factor U of H^-1 (so U_ii^2 plays the role of [H^-1]_ii):
    q = w_i with pruned rows set to 0,  err = (w_i - q) / U_ii,  W[:, j>=i] -= err * U[i, j>=i].
Columns are processed in blocks of `blocksize`; the update of later blocks is applied lazily once per
block (mathematically identical to updating after every column). The mask is chosen adaptively:
unstructured - at the start of every block, on the already-updated weights, by w^2 / U_ii^2;
N:M - at the first column of every group of M, for the next M columns.

Deviation from the reference (fixed): the reference prunes `score <= value at sorted index
floor(n*s)` inside each block (one entry too many, plus ties). Here each block prunes exactly
floor(R*i2*s) - floor(R*i1*s) entries of its row group (columns [i1, i2), R rows), so a matrix ends
with exactly floor(numel*s) zeros chosen per block, as adaptive as the reference.
"""
from __future__ import annotations

import torch

from ..masks import num_pruned

CHOLESKY_HELP = (
    "the damped Hessian of {name} is not positive definite (Cholesky failed): raise "
    "salience.options.percdamp (now {percdamp}) or use more calibration samples / longer seqlen"
)


class HessianStats:
    """Running X X^T of a layer's input (fp32); the Hessian is 2/N of it, N = number of sequences."""

    def __init__(self, columns: int, device: torch.device):
        self.xxt = torch.zeros(columns, columns, dtype=torch.float32, device=device)
        self.nsequences = 0

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        sequences = x.shape[0] if x.dim() == 3 else 1
        flat = x.reshape(-1, x.shape[-1]).float()
        self.xxt.addmm_(flat.t(), flat)
        self.nsequences += sequences

    def hessian(self) -> torch.Tensor:
        if self.nsequences == 0:
            raise RuntimeError("SparseGPT statistics are empty: the layer never saw calibration data")
        return self.xxt * (2.0 / self.nsequences)


def upper_cholesky_of_inverse(h: torch.Tensor, name: str = "a layer", percdamp: float = 0.01) -> torch.Tensor:
    """U with U^T U = H^-1 (H = L L^T, H^-1 from L, then the upper factor of H^-1)."""
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info) == 0:
        inverse = torch.cholesky_inverse(lower)
        upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
    if int(info) != 0:
        raise ValueError(CHOLESKY_HELP.format(name=name, percdamp=percdamp))
    return upper


def _block_prune_unstructured(
    scores: torch.Tensor, sparsity: float, i1: int, i2: int, row_groups: list[int]
) -> torch.Tensor:
    """Prune mask of one column block: per row group, its exact share of floor(numel*s)."""
    prune = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    start = 0
    for rows in row_groups:
        k = num_pruned(rows * i2, sparsity) - num_pruned(rows * i1, sparsity)
        if k > 0:
            part = scores[start : start + rows].reshape(-1)
            idx = torch.topk(part, k, largest=False, sorted=False).indices
            prune[start : start + rows].view(-1)[idx] = True
        start += rows
    return prune


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    row_groups: list[int] | None = None,
    name: str = "a layer",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (updated fp32 weight with pruned entries at 0, keep-mask); weight in (out, in) layout.

    `nm` = (kept, group) for N:M; `row_groups` splits the rows of fused matrices (q|k|v) so the
    unstructured count is per block of rows; the OBS update is row-independent anyway.
    """
    # row-major copies whatever the input's strides (Conv1D weights arrive transposed)
    w = weight.detach().float().clone(memory_format=torch.contiguous_format)
    h = hessian.detach().float().clone(memory_format=torch.contiguous_format)
    rows, cols = w.shape
    if h.shape != (cols, cols):
        raise ValueError(f"Hessian of shape {tuple(h.shape)} does not match {cols} input columns")
    if blocksize < 1:
        raise ValueError(f"SparseGPT blocksize must be >= 1, got {blocksize}")
    if nm is not None and (cols % nm[1] or blocksize % nm[1]):
        raise ValueError(f"N:M with M={nm[1]} needs M to divide the input dim ({cols}) and blocksize ({blocksize})")
    row_groups = list(row_groups or [rows])
    if sum(row_groups) != rows:
        raise ValueError(f"row_groups {row_groups} do not add up to {rows} rows")

    dead = torch.diag(h) == 0  # inputs that are always zero: their weights are irrelevant
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(percdamp * torch.mean(torch.diag(h)))
    hinv = upper_cholesky_of_inverse(h, name, percdamp)

    prune = torch.zeros(w.shape, dtype=torch.bool, device=w.device)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = torch.diag(hinv1)
        if nm is None:
            prune1 = _block_prune_unstructured(w1.pow(2) / d.pow(2).unsqueeze(0), sparsity, i1, i2, row_groups)
        else:
            prune1 = torch.zeros_like(w1, dtype=torch.bool)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                keep, group = nm
                scores = w1[:, i : i + group].pow(2) / d[i : i + group].pow(2).unsqueeze(0)
                idx = torch.topk(scores, group - keep, dim=1, largest=False).indices
                prune1.scatter_(1, i + idx, True)
            col = w1[:, i]
            q = col.masked_fill(prune1[:, i], 0.0)
            err = (col - q) / d[i]
            w1[:, i:] -= err.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            q1[:, i] = q
            err1[:, i] = err
        w[:, i1:i2] = q1
        prune[:, i1:i2] = prune1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w, ~prune
