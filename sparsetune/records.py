"""results.json: one machine-readable record per run, written atomically (tmp file + rename).

Always valid JSON: NaN/inf become null, and the record says which fields they were (`non_finite`)."""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

PACKAGES = ["torch", "transformers", "datasets", "peft", "accelerate", "hydra-core", "omegaconf", "lm_eval",
            "scikit-learn", "scipy", "safetensors", "tokenizers", "sparsetune"]


def git_sha() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def env_record(seed: int, device: str, started_at_sha: str | None) -> dict:
    """`started_at_sha`: git_sha() when the attempt started. The checkout can move under a long job; then the
    record also says where it stood at the end (`git_sha_at_end`)."""
    import torch  # here, not at the top: the CLI writes records of bad input before torch loads

    now = git_sha()
    return {
        "git_sha": started_at_sha, **({"git_sha_at_end": now} if now != started_at_sha else {}),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": versions(), "device": device, "seed": seed, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }


def launch_record(batch_size: int, grad_accum: int) -> dict:
    """How the run was launched: processes and the global batch (per-device batch x grad_accum x world size)."""
    from .distributed import launch

    info = launch()
    return {"launcher": info.launcher, "world_size": info.world_size, "per_device_batch_size": batch_size,
            "grad_accum": grad_accum, "global_batch_size": batch_size * grad_accum * info.world_size}


def memory_record() -> dict:
    import torch

    rec = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.cuda.is_available():
        rec["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


def _plain(o, path: str, non_finite: list[str]):
    """A JSON-ready copy of `o`: tensors/numpy scalars as numbers, paths as strings, NaN/inf as None."""
    if isinstance(o, dict):
        return {str(k): _plain(v, f"{path}.{k}" if path else str(k), non_finite) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v, f"{path}[{i}]", non_finite) for i, v in enumerate(o)]
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        non_finite.append(f"{path} ({o})")
        return None
    return o


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_results(run_dir: str | Path, results: dict) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    non_finite: list[str] = []
    record = _plain(results, "", non_finite)
    record.pop("non_finite", None)
    if non_finite:
        record["non_finite"] = {"note": "these values were NaN or infinite and are written as null", "fields": non_finite}
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".results.", suffix=".json")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a record is as readable as any other file
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        final = run_dir / "results.json"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # a full disk must not leave a 0-byte temp file behind
        raise
    return final

