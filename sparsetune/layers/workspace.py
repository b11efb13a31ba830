"""Reusable full-size scratch buffers for per-step dense temporaries on CPU.

PST rebuilds dense (out x in) matrices in every forward, backward and mask update. On accelerators
the caching allocator recycles them for free; on CPU every fresh matrix of a few MB is new memory from
the OS (glibc maps large blocks and returns them on free), so first-touch page faults cost as much as
the arithmetic. One buffer per (thread, role, dtype), sized to the largest request, removes them.

A buffer is valid until the next request for the same role on the same thread: callers use it inside
one forward / backward / mask update and never return it.
"""
from __future__ import annotations

import threading

import torch

_buffers: dict[tuple, torch.Tensor] = {}


def scratch(role: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of `shape`: a view of the role's reused buffer on CPU, fresh elsewhere."""
    if torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    numel = 1
    for n in shape:
        numel *= n
    key = (threading.get_ident(), role, dtype)
    buf = _buffers.get(key)
    if buf is None or buf.numel() < numel:
        buf = _buffers[key] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)


def release() -> None:
    """Free every buffer (for tests, or a long-lived process done with PST training; run() does not)."""
    _buffers.clear()
