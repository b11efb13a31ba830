"""Compressed export: the merged sparse model in compressed-tensors' format beside the dense model/.

The target matrices are stored with compressed-tensors' own sparsity compressors (`sparse-bitmask`, or
`sparse-24-bitmask` when every target is 2:4), everything else stays dense, and the library writes its
`quantization_config.sparsity_config` into config.json. The dir is then decompressed with the library and
compared tensor by tensor with the dense export. Written to a temp dir and renamed, like model/.
"""
from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file
from torch import nn

from . import run_dir as run_dirs
from .errors import ConfigError
from .methods.base import model_targets

log = logging.getLogger("sparsetune")

FINAL = "model-compressed"
PARTIAL = ".model-compressed.partial"
BITMASK, BITMASK_24 = "sparse-bitmask", "sparse-24-bitmask"
# the newest compressed-tensors with the sparsity compressors (0.15 removed them) and no transformers<5 pin
LIBRARY_HINT = "pip install compressed-tensors==0.13.0 --no-deps (plus loguru)"


def skip_reason(cfg: DictConfig, target_sparsity: float) -> str | None:
    """Why no compressed export is written (None: write it). auto and true both need a sparse method;
    true also insists on the library."""
    mode = cfg.get("export_compressed", "auto")
    if mode is False:
        return "export_compressed=false"
    if not target_sparsity > 0:
        return (f"method={cfg.method.name} exports a dense model (target sparsity {target_sparsity:g}): "
                "nothing to compress")
    problem = library_problem()
    if problem and mode is True:
        raise ConfigError(f"export_compressed=true: {problem}")
    return problem


def library_problem() -> str | None:
    """None when compressed-tensors with its sparsity compressors is importable (0.15 and later dropped them)."""
    if importlib.util.find_spec("compressed_tensors") is None:
        return f"compressed-tensors is not installed ({LIBRARY_HINT})"
    try:
        import compressed_tensors.compressors.sparse_compressors  # noqa: F401
    except ImportError:
        return f"compressed-tensors {_version()} has no sparsity compressors ({LIBRARY_HINT})"
    return None


def export_compressed(model: nn.Module, tokenizer, cfg: DictConfig, run_dir: Path, dense_dir: Path,
                      target_sparsity: float) -> dict:
    """Write <run dir>/model-compressed/ (or record why not) and verify it against the dense export in dense_dir."""
    partial, final = run_dir / PARTIAL, run_dir / FINAL
    shutil.rmtree(final, ignore_errors=True)  # an earlier attempt's: it would not match this run's model/
    reason = skip_reason(cfg, target_sparsity)
    if reason:
        return {"skipped": reason}
    rec = run_dirs.write_dir_atomically(partial, final, lambda d: _write_and_verify(model, tokenizer, cfg, d, dense_dir))
    if not rec["roundtrip_bit_identical"]:
        log.warning("compressed export %s does not decompress to the dense export: %s", final, rec["roundtrip_mismatch"])
    return {"dir": str(final), **rec}


def is_2_4(weight: torch.Tensor) -> bool:
    """At most 2 non-zeros in every 4 consecutive stored elements: what sparse-24-bitmask stores losslessly
    (it keeps the 2 largest of each group of the flattened tensor)."""
    return weight.dim() == 2 and weight.numel() % 4 == 0 and bool(((weight.reshape(-1, 4) != 0).sum(1) <= 2).all())


def choose_format(cfg: DictConfig, weights: dict[str, torch.Tensor]) -> tuple[str, str | None]:
    """(format, note): 2:4 when the method declares it and every target really is 2:4; else bitmask. An
    unstructured mask that happens to be 2:4 still gets bitmask (it stores fewer bytes beyond 50 % sparsity)."""
    if str(cfg.method.get("pattern", "unstructured")) != "2:4":
        return BITMASK, None
    bad = [n for n, w in weights.items() if not is_2_4(w)]
    if bad:
        return BITMASK, f"method.pattern=2:4 but {len(bad)} target(s) are not 2:4 (e.g. {bad[0]}): stored as {BITMASK}"
    return BITMASK_24, None


def _safetensors_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.glob("*.safetensors"))


def _load_dir(d: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _global_sparsity(state: dict[str, torch.Tensor]) -> float:
    """Zeros over every stored floating-point tensor: compressed-tensors' `global_sparsity` (whole model)."""
    floats = [t for t in state.values() if t.is_floating_point()]
    return sum(int((t == 0).sum()) for t in floats) / max(sum(t.numel() for t in floats), 1)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@torch.no_grad()
def _write_and_verify(model: nn.Module, tokenizer, cfg: DictConfig, out_dir: Path, dense_dir: Path) -> dict:
    from compressed_tensors import ModelCompressor, SparsityCompressionConfig

    targets = sorted(model_targets(model, cfg))
    state = model.state_dict()
    weights = {n: state[f"{n}.weight"] for n in targets}
    fmt, note = choose_format(cfg, weights)
    sparsity_config = SparsityCompressionConfig.load_from_registry(
        fmt, targets=targets, global_sparsity=_global_sparsity(state),
        sparsity_structure="2:4" if fmt == BITMASK_24 else "unstructured")
    compressor = ModelCompressor.from_pretrained_model(model, sparsity_config_or_format=sparsity_config)
    compressed = compressor.compress(model, state_dict=dict(state))
    names = compressor.sparsity_compressor.compression_param_names
    target_bytes = sum(_nbytes(compressed[f"{n}.{p}"]) for n in targets for p in names)
    target_dense_bytes = sum(_nbytes(w) for w in weights.values())
    model.save_pretrained(out_dir, state_dict=compressed)  # (empties `compressed` as it writes)
    tokenizer.save_pretrained(out_dir)
    compressor.update_config(str(out_dir))  # writes quantization_config: {quant_method, version, sparsity_config}

    size, dense_size = _safetensors_bytes(out_dir), _safetensors_bytes(dense_dir)
    rec = {"format": fmt, "library": f"compressed-tensors {_version()}", "bytes": size, "dense_bytes": dense_size,
           "ratio": size / dense_size, "target_bytes": target_bytes, "target_dense_bytes": target_dense_bytes,
           "target_ratio": target_bytes / target_dense_bytes, "targets": targets,
           "sparsity_structure": sparsity_config.sparsity_structure, "global_sparsity": sparsity_config.global_sparsity}
    if note:
        rec["format_note"] = note
    return {**rec, **roundtrip(out_dir, dense_dir)}


def roundtrip(compressed_dir: Path, dense_dir: Path) -> dict:
    """Decompress compressed_dir with compressed-tensors (reading its config.json) and compare every tensor with
    the dense export bit for bit: torch.equal treats -0.0 as 0.0, so zero signs are compared too (the dense
    export stores +0.0 in the targets; a bitmask cannot store a zero's sign)."""
    from compressed_tensors import ModelCompressor

    compressor = ModelCompressor.from_pretrained(str(compressed_dir))
    restored = dict(compressor.sparsity_compressor.decompress(str(compressed_dir)))
    dense = _load_dir(dense_dir)
    mismatch = []
    if restored.keys() != dense.keys():
        mismatch.append(f"tensor names differ: only compressed {sorted(restored.keys() - dense.keys())[:3]}, "
                        f"only dense {sorted(dense.keys() - restored.keys())[:3]}")
    signed_zeros = 0
    for name in sorted(restored.keys() & dense.keys()):
        a, b = restored[name], dense[name]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            mismatch.append(f"{name}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        elif b.is_floating_point():
            signed_zeros += int(((b == 0) & (torch.signbit(b) != torch.signbit(a))).sum())
    if signed_zeros:
        mismatch.append(f"{signed_zeros} zeros differ in sign")
    return {"roundtrip_bit_identical": not mismatch, "roundtrip_tensors": len(dense),
            "roundtrip_zero_sign_differences": signed_zeros, "roundtrip_mismatch": mismatch[:5]}


def _version() -> str:
    from importlib.metadata import version

    return version("compressed-tensors")
