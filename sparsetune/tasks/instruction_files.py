"""task=alpaca's local files (task.data_files, or alpaca_data.json in task.data_dir) and the row check, with
the standard library only: the loader (instruction.py) and the CLI's data preflight (preflight.py) share them."""
from __future__ import annotations

from ..errors import ConfigError
from .errors import DataError
from .local_files import local_paths, read_records
from .rows import require_columns

LAYOUT = {"train": "alpaca_data.json", "validation": "alpaca_val.json"}


def local_splits(task) -> tuple[dict, str] | None:
    """Every local split's rows and where they came from; None: the hub."""
    paths = local_paths(task, LAYOUT)
    if paths is None:
        return None
    if task.train_split not in paths:
        raise ConfigError(f"task.data_files / task.data_dir must provide the train split {task.train_split!r} "
                          f"(data_dir file name: {LAYOUT['train']})")
    return {split: read_records(p) for split, p in paths.items()}, f"files {({k: str(v) for k, v in paths.items()})}"


def check_rows(rows, source: str = "") -> None:
    """A non-empty list of rows with instruction / output (and optionally input) texts; else a DataError naming the row."""
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{getattr(rows, 'path', source) or 'Alpaca data'}: expected a non-empty list of rows with "
                        "'instruction', 'output' and optionally 'input'")
    require_columns(rows, ["instruction", "output"], optional=("input",), source=source)


def check_local(task) -> None:
    """The data preflight: the local splits the loader uses (train, and the eval split when it has a file)."""
    local = local_splits(task)
    if local is None:
        return
    raw, source = local
    for split in dict.fromkeys([task.train_split, *task.eval_splits]):
        if split in raw:
            check_rows(raw[split], source)
