"""One-shot post-training pruning of a model's target matrices: magnitude, Wanda, SparseGPT or DSnoT.

Wanda, SparseGPT and DSnoT go block by block through the decoder (`model.decoder_layers`): capture the inputs
of block 0, then for every block (1) run the calibration samples through it with hooks on its target
matrices collecting statistics, (2) prune those matrices, (3) run the samples through the *pruned*
block to get the next block's inputs. Magnitude needs no data and prunes each matrix alone.

`prune_for_method(model, cfg, ctx)` is the glue the SPP / LoRA* methods call: pruner = `salience.name`,
sparsity / pattern from the method config, pruner settings from `salience.options`:
    calibration: {source, nsamples, seqlen, seed, sampling, text_field, batch_size, max_batches}
    percdamp: 0.01, blocksize: 128      (SparseGPT; percdamp also for DSnoT with base=sparsegpt)
    base, max_cycles, update_threshold, gamma, same_sign, layers      (DSnoT, see dsnot.py)
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..bars import bar
from ..method_schemas import DSNOT_DEFAULTS, DSNOT_SHARED_KEYS, PRUNERS
from ..targets import find_targets, fused_splits, set_weight_out_in, weight_out_in
from .calibration import (
    BlockInputs,
    CalibrationSettings,
    calibration_samples,
    capture_block_inputs,
    get_decoder_layers,
    run_block,
)
from .dsnot import DEVIATIONS as DSNOT_DEVIATIONS
from .dsnot import DSnoTSettings, dsnot_prune
from .dsnot_stats import DSnoTStats
from .magnitude import magnitude_mask, parse_keep_pattern, pattern_sparsity
from .sparsegpt import HessianStats, sparsegpt_prune
from .wanda import InputNormStats, wanda_mask

CALIBRATED = ("wanda", "sparsegpt", "dsnot")
OPTION_KEYS = {"magnitude": set(), "wanda": {"calibration"}, "sparsegpt": {"calibration", "percdamp", "blocksize"},
               "dsnot": {*DSNOT_DEFAULTS, *DSNOT_SHARED_KEYS}}


@dataclass
class PruneSpec:
    pruner: str
    sparsity: float  # fraction of zeros; 1 - N/M for N:M
    pattern: str = "unstructured"
    blocksize: int = 128
    percdamp: float = 0.01
    dsnot: DSnoTSettings | None = None  # DSnoT only; None = its defaults (these need attention_modules)

    def __post_init__(self):
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown post-training pruner {self.pruner!r}; valid options: {', '.join(PRUNERS)}")
        self.sparsity = pattern_sparsity(self.pattern, self.sparsity)
        if int(self.blocksize) < 1 or not (0.0 <= float(self.percdamp)):
            raise ValueError(f"SparseGPT needs blocksize >= 1 and percdamp >= 0, got {self.blocksize}, {self.percdamp}")
        if self.pruner == "dsnot" and self.dsnot is None:
            self.dsnot = DSnoTSettings()

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_keep_pattern(self.pattern)

    def record(self) -> dict:
        out = asdict(self)
        uses_hessian = self.pruner == "sparsegpt" or (self.dsnot is not None and self.dsnot.base == "sparsegpt")
        if self.pruner != "sparsegpt":
            out.pop("blocksize")
        if not uses_hessian:
            out.pop("percdamp")
        out.pop("dsnot")
        if self.pruner == "dsnot":
            # the sign check in effect: same_sign=null follows the reference (off unstructured, on N:M)
            out["dsnot"] = {**self.dsnot.record(), "sign_check": self.dsnot.sign_check(self.nm)}
        return out


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor]  # qualified module name -> keep mask (out x in)
    layers: dict[str, dict]  # per matrix: zeros, numel
    spec: PruneSpec
    seconds: float = 0.0
    calibration: dict | None = None
    deviations: list[str] = field(default_factory=list)

    def sparsity(self) -> float:
        zeros = sum(v["zeros"] for v in self.layers.values())
        return zeros / max(sum(v["numel"] for v in self.layers.values()), 1)

    def record(self) -> dict:
        out = {
            **self.spec.record(),
            "achieved_sparsity": self.sparsity(),
            "seconds": round(self.seconds, 3),
            "calibration": self.calibration,
            "reference_deviations": self.deviations,
            "per_matrix_sparsity": {n: v["zeros"] / v["numel"] for n, v in self.layers.items()},
        }
        if self.spec.pruner == "dsnot":
            refined = {n: v["dsnot"] for n, v in self.layers.items() if v["dsnot"]["refined"]}
            out["dsnot_swaps"] = {
                "total": sum(v["swaps"] for v in refined.values()),
                "refined_matrices": len(refined),
                "base_mask_only_matrices": len(self.layers) - len(refined),
                "per_matrix": refined,
            }
        return out


DEVIATIONS = {
    "magnitude": "exact floor(numel*s) zeros per matrix (reference prunes |W| <= threshold: one more plus ties)",
    "sparsegpt": "exact floor(numel*s) zeros per matrix split over the blocksize-column blocks (reference: <= threshold per block)",
    "wanda": "calibration buffer sized to nsamples (reference hard-codes 128 rows)",
    "nm": "N:M = N kept of every M (reference scripts prune N of M; identical for 2:4 and 4:8)",
    "dsnot": DSNOT_DEVIATIONS,
}


# ---- the pruning loop ------------------------------------------------------------------------------
def prune_model(
    model: nn.Module,
    spec: PruneSpec,
    targets: Mapping[str, nn.Module],
    decoder_layers: str | None = None,
    samples: torch.Tensor | None = None,
    batch_size: int = 8,
    splits: Mapping[str, tuple[int, ...]] | None = None,
) -> PruneResult:
    """Prune `targets` (qualified name -> Linear/Conv1D) in place and return their keep-masks."""
    start = time.perf_counter()
    splits = dict(splits or {})
    details: dict[str, dict] = {}  # per matrix: what the pruner reports (DSnoT: swaps)
    was_training = model.training
    model.eval()
    try:
        if spec.pruner == "magnitude":
            masks = {name: _prune_magnitude(mod, spec, splits.get(name)) for name, mod in targets.items()}
        else:
            if samples is None:
                raise ValueError(f"{spec.pruner} needs calibration samples")
            masks = _prune_sequential(model, spec, targets, decoder_layers, samples, batch_size, splits, details)
    finally:
        model.train(was_training)
    layers = {}
    for name, mod in targets.items():
        w = weight_out_in(mod)
        layers[name] = {"zeros": int((w == 0).sum()), "numel": w.numel(), **details.get(name, {})}
    own = DEVIATIONS[spec.pruner]
    deviations = (own if isinstance(own, list) else [own]) + ([DEVIATIONS["nm"]] if spec.nm else [])
    return PruneResult(masks, layers, spec, time.perf_counter() - start, deviations=deviations)


@torch.no_grad()
def _prune_magnitude(module: nn.Module, spec: PruneSpec, groups: tuple[int, ...] | None) -> torch.Tensor:
    w = weight_out_in(module)
    # fused matrices (q|k|v) are ranked per block, as separate matrices would be
    parts = torch.split(w, list(groups), dim=0) if groups else [w]
    mask = torch.cat([magnitude_mask(p, spec.sparsity, spec.nm) for p in parts], dim=0)
    set_weight_out_in(module, w * mask)
    return mask


def _prune_sequential(model, spec, targets, decoder_layers, samples, batch_size, splits, details) -> dict[str, torch.Tensor]:
    layers = get_decoder_layers(model, decoder_layers)
    per_block = _targets_by_block(targets, decoder_layers, len(layers))
    inputs = capture_block_inputs(model, layers[0], samples, batch_size)
    masks: dict[str, torch.Tensor] = {}
    for index, block in enumerate(bar(layers, f"{spec.pruner} pruning", unit="block")):
        block_targets = per_block.get(index, {})
        if block_targets:
            stats = _collect_stats(block, block_targets, inputs, spec)
            for name, mod in block_targets.items():
                masks[name], info = _prune_with_stats(name, mod, stats[name], spec, splits.get(name))
                if info:
                    details[name] = {spec.pruner: info}
            del stats
        inputs = run_block(block, inputs)  # the next block sees the outputs of the pruned block
    return masks


def _targets_by_block(targets, decoder_layers, n_blocks) -> dict[int, dict[str, nn.Module]]:
    out: dict[int, dict[str, nn.Module]] = {}
    prefix = decoder_layers + "."
    outside = []
    for name, mod in targets.items():
        index = name[len(prefix) :].split(".", 1)[0] if name.startswith(prefix) else ""
        if not index.isdigit() or int(index) >= n_blocks:
            outside.append(name)
            continue
        out.setdefault(int(index), {})[name] = mod
    if outside:
        raise ValueError(
            f"post-training pruners only prune matrices inside the decoder blocks ({decoder_layers}.N); "
            f"these targets are outside: {outside[:5]}: adjust model.target_modules / exclude_modules"
        )
    return out


def _new_stats(spec: PruneSpec, columns: int, device: torch.device):
    if spec.pruner == "dsnot":
        return DSnoTStats(columns, device, hessian=spec.dsnot.base == "sparsegpt")
    return (InputNormStats if spec.pruner == "wanda" else HessianStats)(columns, device)


def _collect_stats(block: nn.Module, targets: dict[str, nn.Module], inputs: BlockInputs, spec: PruneSpec) -> dict:
    stats, handles = {}, []
    for name, mod in targets.items():
        w = weight_out_in(mod)
        stats[name] = _new_stats(spec, w.shape[1], w.device)
        handles.append(mod.register_forward_hook(lambda m, args, out, s=stats[name]: s.add_batch(args[0])))
    try:
        run_block(block, inputs)
    finally:
        for h in handles:
            h.remove()
    return stats


@torch.no_grad()
def _prune_with_stats(name, module, stats, spec: PruneSpec, groups) -> tuple[torch.Tensor, dict]:
    """Keep-mask of one matrix (its weight updated in place) and what the pruner reports about it."""
    w = weight_out_in(module)
    if spec.pruner == "wanda":
        mask = wanda_mask(w, stats.mean_sq_norm(), spec.sparsity, spec.nm)
        set_weight_out_in(module, w * mask)
        return mask, {}
    if spec.pruner == "dsnot":  # per-row comparison groups: fused row blocks need no special case
        mask, info = dsnot_prune(w, stats, spec.sparsity, spec.nm, spec.dsnot, spec.dsnot.refines(name),
                                 float(spec.percdamp), name)
        set_weight_out_in(module, w * mask)
        return mask, info
    new_w, mask = sparsegpt_prune(
        w, stats.hessian(), spec.sparsity, spec.nm, int(spec.blocksize), float(spec.percdamp),
        row_groups=list(groups) if groups else None, name=name,
    )
    set_weight_out_in(module, new_w)
    return mask, {}


# ---- glue for methods ------------------------------------------------------------------------------
def spec_from_config(cfg) -> PruneSpec:
    pruner = str(cfg.salience.name)
    if pruner not in PRUNERS:
        raise ValueError(f"{cfg.method.name} prunes with salience={pruner!r}; valid options: {', '.join(PRUNERS)}")
    options = _plain(cfg.salience.get("options", {}) or {})
    unknown = sorted(set(options) - OPTION_KEYS[pruner]) if pruner != "magnitude" else []
    if unknown:
        raise ValueError(f"unknown salience.options {unknown} for {pruner}; allowed: {sorted(OPTION_KEYS[pruner])}")
    extra = {}
    if pruner == "sparsegpt":
        extra = {k: options[k] for k in ("percdamp", "blocksize") if k in options}
    elif pruner == "dsnot":  # percdamp: for base=sparsegpt
        extra = {k: options[k] for k in ("percdamp",) if k in options}
        own = {k: v for k, v in options.items() if k in DSNOT_DEFAULTS}
        extra["dsnot"] = DSnoTSettings.from_options(own, cfg.model.get("attention_modules") or ())
    return PruneSpec(pruner, cfg.method.get("sparsity"), str(cfg.method.get("pattern", "unstructured")), **extra)


def calibration_from_config(cfg) -> CalibrationSettings:
    options = _plain(cfg.salience.get("options", {}) or {})
    return CalibrationSettings.from_options(options.get("calibration"))


def validate_oneshot(cfg) -> PruneSpec:
    """The checks of a SPP / LoRA* config beyond its schema's (OneShotPruneConfig.check): pruner options,
    calibration settings; returns the pruning spec."""
    spec = spec_from_config(cfg)
    if spec.pruner in CALIBRATED and cfg.method.get("prune", True):
        calibration_from_config(cfg)
        if not cfg.model.get("decoder_layers"):
            raise ValueError(f"{spec.pruner} needs model.decoder_layers (attribute path of the decoder blocks)")
    return spec


def prune_for_method(model: nn.Module, cfg, ctx, suffixes: list[str]) -> PruneResult:
    """Prune `model` in place as the config says; calibration from the training batches or a file."""
    spec = spec_from_config(cfg)
    targets = find_targets(model, suffixes, cfg.model.get("exclude_modules", []) or [])
    fused = cfg.model.get("fused_modules")
    splits = {n: s for n, m in targets.items() if (s := fused_splits(n, weight_out_in(m).shape[0], fused))}
    samples, calibration = None, None
    if spec.pruner in CALIBRATED:
        settings = calibration_from_config(cfg)
        samples = calibration_samples(settings, ctx.tokenizer, ctx.batches)
        calibration = settings.record()
        batch_size = settings.batch_size
    else:
        batch_size = 1
    result = prune_model(model, spec, targets, cfg.model.get("decoder_layers"), samples, batch_size, splits)
    result.calibration = calibration
    return result


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
