"""Runs as the tables see them: results.json files, their flattened settings, and the runs not to average.

Every setting is a dotted key of the recorded resolved `config`. The run's seed and run bookkeeping (paths,
resume / overwrite, loggers, threads, save / logging intervals, eval batch sizes) are not settings: they never
split a row (nor does a safety switch such as eval.allow_code_execution: it changes no number, only whether code
tasks may run, and records from before it existed lack it). Records of scripts/prune_ppl.py (no `config`) get one
built from their top-level fields.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..method_schemas import METHOD_SCHEMAS

# Keys that never distinguish two runs (fnmatch patterns over the flattened config).
BOOKKEEPING = (
    "seed", "dry_run", "resume", "overwrite", "force_resume", "export", "objective", "run_dir",
    "paths.*", "logger.*", "hydra.*",
    "hardware.num_threads", "hardware.dataloader_workers",
    "train.save_steps", "train.save_total_limit", "train.logging_steps", "train.eval_batch_size",
    "eval.batch_size", "eval.work_dir", "eval.allow_code_execution", "eval.data_dir", "eval.files", "eval.files.*",
    "eval.perplexity.data_file", "eval.perplexity.batch_size",
    "task.data_dir", "task.data_files", "task.data_files.*", "model.path", "salience.options.calibration.source",
)
MISSING = "—"  # shown for a setting a run does not have
OPTIONAL_GROUPS = ("salience", "mask_schedule")  # composed into every run, read only by some methods


@dataclass
class Run:
    path: Path
    record: dict
    settings: dict = field(default_factory=dict)  # flattened config minus bookkeeping
    seed: int | None = None
    task: str | None = None
    mtime: float = 0.0
    unread: tuple[str, ...] = ()  # config groups its method never reads (left out of `settings`)

    def reads(self, key: str) -> bool:
        """Whether this run's method reads the setting `key` (a salience key of a LoRA run: no)."""
        return key.split(".", 1)[0] not in self.unread

    @property
    def config(self) -> dict:
        return self.record.get("config") or {}


@dataclass
class NotAveraged:
    """A run listed apart: failed, diverged, interrupted, a dry run, unreadable, or killed before its record."""
    path: Path
    status: str
    detail: str = ""
    run: Run | None = None


def is_bookkeeping(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in BOOKKEEPING)


def flatten(node, prefix: str = "") -> dict:
    """{"a": {"b": 1, "c": [1, 2]}} -> {"a.b": 1, "a.c": (1, 2)}; an empty dict stays one value."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: freeze(node)}


def freeze(value):
    """Hashable, comparable form of a config value (lists -> tuples, dicts -> sorted item tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


def legacy_config(record: dict) -> dict:
    """A config for records written without one (scripts/prune_ppl.py): model, pruner, pattern, calibration."""
    prune = record.get("prune") or {}
    calibration = {k: v for k, v in (record.get("calibration") or {}).items() if k != "source"}
    return {
        "model": {"name": (record.get("model") or {}).get("name")},
        "method": {"name": "prune_only", "pattern": record.get("pattern"), "sparsity": prune.get("sparsity")},
        "salience": {"name": record.get("pruner"), "calibration": calibration},
        "train": {"max_steps": 0},
        "task": {"name": None},
    }


def unread_groups(method: str | None) -> tuple[str, ...]:
    """Config groups a run composes by default but its method never reads (LoRA's salience metric)."""
    schema = METHOD_SCHEMAS.get(method)
    return tuple(g for g in OPTIONAL_GROUPS if g not in schema.reads) if schema else ()


def make_run(path: Path, record: dict) -> Run:
    if "config" not in record:
        record = {**record, "config": legacy_config(record)}
    cfg = record["config"]
    flat = {k: v for k, v in flatten(cfg).items() if not is_bookkeeping(k)}
    if (record.get("method") or {}).get("sparsity_note"):  # a method that prunes nothing ignored method.sparsity
        flat.pop("method.sparsity", None)
    task = (cfg.get("task") or {}).get("name")
    seed = cfg.get("seed", (record.get("env") or {}).get("seed"))
    run = Run(path=path, record=record, seed=seed, task=task, mtime=path.stat().st_mtime,
              unread=unread_groups((cfg.get("method") or {}).get("name")))
    run.settings = {k: v for k, v in flat.items() if run.reads(k)}
    return run


def find_records(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """results.json files under the given dirs (or given directly), and Hydra job dirs that have none."""
    files, orphans = [], []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(p.rglob("results.json"))
            orphans += sorted(d.parent for d in p.rglob(".hydra") if not (d.parent / "results.json").exists())
    return files, orphans


def load_runs(paths: list[str]) -> tuple[list[Run], list[NotAveraged]]:
    """Completed runs, and everything else listed apart (never averaged)."""
    files, orphans = find_records(paths)
    done, apart = [], [NotAveraged(d, "no record", "no results.json: killed before it was written?") for d in orphans]
    for f in files:
        try:
            record = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            apart.append(NotAveraged(f, "unreadable", f"{type(e).__name__}: {e}"))
            continue
        if not isinstance(record, dict):
            apart.append(NotAveraged(f, "unreadable", "not a results.json object"))
            continue
        run = make_run(f, record)
        status = record.get("status", "unknown")
        if record.get("dry_run"):
            apart.append(NotAveraged(f, "dry run", "parameter counts only, no metrics", run))
        elif status == "completed":
            done.append(run)
        else:
            label = "interrupted" if status == "running" else status
            detail = str(record.get("error") or "").strip().splitlines()
            apart.append(NotAveraged(f, label, detail[0][:200] if detail else "", run))
    return done, apart
