"""What bench_pruning.py's workers share: reading the calibration ids, timing the prune call, and handing the pruned
decoder-block weights back. Imports torch only: each worker runs in another side's venv, without sparsetune."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch


def load_calibration_ids(path: Path) -> torch.Tensor:
    ids = torch.load(path)
    if ids.dim() != 2 or ids.dtype != torch.long:
        raise SystemExit(f"{path}: expected an (nsamples, seqlen) int64 tensor, got {tuple(ids.shape)} {ids.dtype}")
    return ids


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and this process's CPU seconds of one call."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def save_decoder_weights(model: torch.nn.Module, out: Path) -> None:
    """<out>/pruned_weights.pt: every 2-D weight inside the decoder blocks, fp32, by parameter name."""
    out.mkdir(parents=True, exist_ok=True)
    weights = {n: p.detach().float().clone() for n, p in model.named_parameters()
               if n.startswith("model.layers.") and p.dim() == 2}
    torch.save(weights, out / "pruned_weights.pt")
