"""results.json: one machine-readable record per run, written atomically (tmp file + rename)."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import torch

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


def env_record(seed: int, device: str) -> dict:
    return {
        "git_sha": git_sha(), "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": versions(), "device": device, "seed": seed, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }


def memory_record() -> dict:
    rec = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.cuda.is_available():
        rec["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return rec


def _default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_results(run_dir: str | Path, results: dict) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".results.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2, default=_default)
    final = run_dir / "results.json"
    os.replace(tmp, final)
    return final
