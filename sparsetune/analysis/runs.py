"""The runs a figure compares: completed runs with an exported model/, all from one base model.

Target matrices: the names each run's results.json lists under sparsity.per_layer (what the run itself measured
as its target matrices, after method.targets and model exclusions; fused-block entries `name[i]` dropped),
those common to every run, read as `<name>.weight` from the exported state dict. This follows the record rather
than guessing "every 2-D matrix that has zeros", which would also pick up embeddings with zero rows and miss
the targets of a dense baseline whose matrices have no zeros.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .weights import ExportedWeights, has_export

PAPER_NAMES = {"magnitude": "MaP", "movement": "MvP", "pst": "PST"}  # the PST paper's names for its Fig. 4/5 methods


@dataclass
class AnalysisRun:
    path: Path
    record: dict
    weights: ExportedWeights
    label: str = ""

    @property
    def method(self) -> str:
        return str((self.record.get("config") or {}).get("method", {}).get("name", "?"))

    @property
    def sparsity(self) -> float | None:
        target = (self.record.get("sparsity") or {}).get("target")
        if target is None:
            target = (self.record.get("config") or {}).get("method", {}).get("sparsity")
        return None if target is None else float(target)

    @property
    def base_model(self) -> str:
        """The model the run started from: the model config's name, and model.path where one was given (a local
        dir may hold any checkpoint). Not the loaded location: an embedded model's site-packages path differs
        between environments although the weights are the same."""
        cfg_model = (self.record.get("config") or {}).get("model") or {}
        name = cfg_model.get("name") or (self.record.get("model") or {}).get("name")
        return f"{name} (model.path={cfg_model['path']})" if cfg_model.get("path") else str(name)

    @property
    def model_name(self) -> str:
        """The base model's short name, for titles."""
        return str((self.record.get("model") or {}).get("name") or (self.record.get("config") or {}).get("model", {}).get("name"))

    def target_names(self) -> list[str]:
        per_layer = (self.record.get("sparsity") or {}).get("per_layer") or {}
        return [n for n in per_layer if "[" not in n]


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Each path: a run dir (holds results.json), a results.json file, or a directory searched for results.json."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == "results.json":
            found = [p.parent]
        elif (p / "results.json").is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(f.parent for f in p.rglob("results.json"))
        else:
            raise ConfigError(f"{p}: not a run dir, results.json or directory")
        if not found:
            raise ConfigError(f"{p}: no results.json under it")
        dirs += [d for d in found if d not in dirs]
    return dirs


def _config_value(record: dict, dotted: str):
    node = record.get("config") or {}
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _equal(value, wanted: str) -> bool:
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == wanted


def select_dirs(dirs: list[Path], where: list[str] = (), best_of: str | None = None) -> list[Path]:
    """The run dirs whose config matches every `key=value` of `where` (e.g. method.sparsity=0.9, task.name=sst2);
    with `best_of` (e.g. lr) only each setting's best searched point, as the paper tables pick it."""
    conditions = []
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--where takes KEY=VALUE (a dotted config key), got {item!r}")
        conditions.append((key, value))
    records = {}
    for d in dirs:
        try:
            records[d] = json.loads((d / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            records[d] = {}  # refused later, with the reason
    kept = [d for d in dirs if all(_equal(_config_value(records[d], k), v) for k, v in conditions)]
    if not kept:
        raise ConfigError(f"no run matches --where {' '.join(where)} among {len(dirs)} run(s)")
    if best_of:
        from ..tables.report import best_of_search

        best = {id(r) for r in best_of_search([records[d] for d in kept if records[d].get("status") == "completed"], best_of)}
        kept = [d for d in kept if id(records[d]) in best]
    return kept


def _refusal(run_dir: Path) -> str | None:
    """Why a run dir cannot be analysed, or None."""
    try:
        record = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{run_dir} (unreadable results.json: {type(e).__name__})"
    status = record.get("status", "unknown") if isinstance(record, dict) else "not a record"
    if status != "completed" or record.get("dry_run"):
        return f"{run_dir} (status {'dry run' if status == 'completed' else status})"
    if not has_export(run_dir / "model"):
        return f"{run_dir} (no exported model/)"
    if not [n for n in (record.get("sparsity") or {}).get("per_layer") or {} if "[" not in n]:
        return f"{run_dir} (results.json lists no target matrices under sparsity.per_layer)"
    return None


def _labels(runs: list[AnalysisRun]) -> None:
    """method (paper name) and sparsity; the run dir's name (then its parent's too) added where runs would read the same."""
    base = []
    for r in runs:
        paper = PAPER_NAMES.get(r.method)
        p = f" p={r.sparsity:.0%}" if r.sparsity is not None else ""
        base.append(f"{paper} ({r.method}){p}" if paper else f"{r.method}{p}")
    named = [f"{b} [{r.path.name}]" if base.count(b) > 1 else b for b, r in zip(base, runs)]
    for r, b, n in zip(runs, base, named):
        r.label = f"{b} [{r.path.parent.name}/{r.path.name}]" if named.count(n) > 1 else n


def load_runs(paths: list[str | Path], where: list[str] = (), best_of: str | None = None) -> list[AnalysisRun]:
    """The runs under `paths` (selected by `where` / `best_of`, see select_dirs); ConfigError naming every
    unusable run, or when base models differ."""
    dirs = select_dirs(find_run_dirs(paths), where, best_of) if where or best_of else find_run_dirs(paths)
    refused = [why for why in map(_refusal, dirs) if why]
    if refused:
        raise ConfigError("cannot analyse: " + "; ".join(refused) + " (needs status completed and an exported model/)")
    runs = [AnalysisRun(d, json.loads((d / "results.json").read_text(encoding="utf-8")), ExportedWeights(d / "model"))
            for d in dirs]
    bases = {r.base_model for r in runs}
    if len(bases) > 1:
        raise ConfigError("runs start from different base models: " + "; ".join(f"{r.path}: {r.base_model}" for r in runs))
    _labels(runs)
    return runs


def target_matrices(runs: list[AnalysisRun]) -> list[str]:
    """State-dict keys of the target matrices common to every run (first run's order); checked present, 2-D and
    of one shape in every export."""
    common = set.intersection(*(set(r.target_names()) for r in runs))
    keys = [f"{n}.weight" for n in runs[0].target_names() if n in common]
    if not keys:
        raise ConfigError("the runs have no target matrix in common: " +
                          "; ".join(f"{r.path}: {', '.join(r.target_names()[:3])}, ..." for r in runs))
    for key in keys:
        shapes = {}
        for r in runs:
            if key not in r.weights:
                raise ConfigError(f"{r.path}/model has no tensor {key} although results.json lists it as a target")
            shapes[r.path] = r.weights.shape(key)
        if len(set(shapes.values())) > 1 or len(next(iter(shapes.values()))) != 2:
            raise ConfigError(f"{key}: shapes differ between runs or are not 2-D: " +
                              "; ".join(f"{p}: {s}" for p, s in shapes.items()))
    return keys
