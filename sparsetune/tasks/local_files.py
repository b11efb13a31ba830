"""Where a causal-LM task's raw rows come from: task.data_files, task.data_dir, or the hub (offline-first).

Files are read with the standard library (json / jsonl / csv) so quirks stay visible: csv is read with
newline="" (quoted fields, CRLF line ends) and utf-8-sig (a BOM in the header is dropped).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
from datasets import Dataset

from ..hub import require_hub

READABLE = (".json", ".jsonl", ".csv", ".parquet")


def read_records(path: str | Path) -> list[dict] | dict:
    """Rows of a .jsonl / .csv / .parquet file; a .json file's top level as is (a list of rows, or a dict
    such as WebNLG's {"entries": [...]})."""
    path = Path(path).expanduser()
    if path.suffix not in READABLE:
        raise ValueError(f"{path}: {path.suffix!r} files are not supported; use one of {list(READABLE)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8-sig"))
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    return Dataset.from_parquet(str(path)).to_list()


def local_paths(task, layout: dict[str, str]) -> dict[str, Path] | None:
    """{split: file} from task.data_files, else task.data_dir + the task's file names, else None (= hub).
    Splits whose file is absent from data_dir are left out; the caller says which ones it needs."""
    if task.data_files:
        return {split: Path(p).expanduser() for split, p in task.data_files.items()}
    if task.data_dir:
        root = Path(task.data_dir).expanduser()
        return {split: root / name for split, name in layout.items() if (root / name).is_file()}
    return None


def require_splits(paths: dict[str, Path], splits: list[str], task, layout: dict[str, str]) -> None:
    missing = [s for s in splits if s not in paths]
    if missing:
        where = f"task.data_files (it has {sorted(paths)})" if task.data_files else \
            f"task.data_dir={task.data_dir} (expected file names: {dict((s, layout.get(s)) for s in missing)})"
        raise ValueError(f"task {task.name!r} needs split(s) {missing}; not found in {where}")


def hub_splits(hub_id: str, hub_config: str | None, splits: list[str], local_option: str,
               revision: str | None = None) -> dict[str, Dataset]:
    """The named splits from the hub (a cached copy works offline); fails fast naming the local option.
    `revision` picks e.g. the hub's parquet conversion (refs/convert/parquet) of a script-only dataset,
    which datasets >= 4 can no longer run."""
    try:
        ds = datasets.load_dataset(hub_id, hub_config, revision=revision)
    except Exception:
        require_hub(f"dataset {hub_id}" + (f"/{hub_config}" if hub_config else ""), local_option)
        raise
    missing = [s for s in splits if s not in ds]
    if missing:
        raise ValueError(f"hub dataset {hub_id} has no split(s) {missing}; it has {sorted(ds)}")
    return {s: ds[s] for s in splits}
